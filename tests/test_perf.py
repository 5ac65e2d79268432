import math

import pytest

from wavefabric.model import perf, pwg, samplernn


def test_samplernn_seed_config():
    config = samplernn.SampleRNNConfig(frame_sizes=(16, 4), n_rnn=2, dim=64)
    assert perf.samplernn_macs(config).total == 290944
    assert perf.samplernn_macs(config, fold_embedding=True).total == 28800
    assert perf.samplernn_macs(config).layers["mlp.input"] / 290944 == pytest.approx(0.90, abs=0.01)


@pytest.mark.parametrize("frame_sizes, n_rnn, dim, q", [((16, 4), 2, 64, 256), ((8,), 1, 32, 16),
                                                         ((4, 4, 2), 3, 16, 64)])
def test_samplernn_matches_checkpoint_shapes(frame_sizes, n_rnn, dim, q):
    """An independent count: every weight tensor's size, times how often it is used per output sample."""
    config = samplernn.SampleRNNConfig(frame_sizes=frame_sizes, n_rnn=n_rnn, dim=dim, q_levels=q)
    total = 0.0
    for name, shape in samplernn.state_dict_shapes(config).items():
        if not (name.endswith(("weight_v", "weight")) or ".rnn.weight_" in name) or "embedding" in name:
            continue
        tier = name.split(".")[1] if name.startswith("frame_level_rnns") else None
        per_sample = 1 if tier is None else 1 / config.n_frame_samples[int(tier)]
        total += math.prod(shape) * per_sample
    assert perf.samplernn_macs(config).total == pytest.approx(total)


@pytest.mark.parametrize("overrides", [{}, {"layers": 6, "stacks": 2, "residual_channels": 8, "gate_channels": 16,
                                            "skip_channels": 8, "aux_channels": 4, "upsample_scales": (2, 3)}])
def test_pwg_matches_checkpoint_shapes(overrides):
    config = pwg.PWGConfig(**overrides)
    hop = math.prod(config.upsample_scales)
    total = 0.0
    for module, (shape, _) in config.conv_shapes().items():
        if module == "upsample_net.conv_in":
            total += math.prod(shape) / hop
        elif module.startswith("upsample_net.upsample.up_layers."):
            stage = (int(module.rsplit(".", 1)[1]) - 1) // 2
            rate = math.prod(config.upsample_scales[:stage + 1]) / hop
            total += math.prod(shape) * config.aux_channels * rate
        else:
            total += math.prod(shape)
    report = perf.pwg_macs(config, hardware_order=False)
    assert report.total == pytest.approx(total)
    if not overrides:
        assert report.total == pytest.approx(1.2955e6, rel=1e-4)
        assert report.macs_per_second == pytest.approx(28.57e9, rel=1e-3)


def test_pwg_macs_in_the_hardware_order():
    # Aux 1x1s at frame rate, the upsampling table's 5 taps per gate channel and sample, no last out 1x1.
    config = pwg.PWGConfig()
    package, hardware = perf.pwg_macs(config, hardware_order=False), perf.pwg_macs(config)
    assert hardware.layers["aux_1x1"] == 30 * 128 * 80 / 256 == 1200
    assert hardware.layers["upsample.table"] == 30 * 128 * 5
    assert not any(k.startswith("upsample.stage") for k in hardware.layers)
    assert hardware.layers["residual_layers"] == package.layers["residual_layers"] - 30 * 80 * 128 - 64 * 64
    assert hardware.total == 1_003_693
    assert 1 - hardware.total / package.total == pytest.approx(0.225, abs=1e-3)


def test_estimate_pwg_real_time_figures():
    config = pwg.PWGConfig()
    small = perf.estimate_pwg(8, 8, 100e6)
    assert small["dsp48e1"] == 65 and small["fits_dsp"]  # the array and the front end's multiplier
    assert small["cycles"]["total"] == small["cycles"]["front_end"] + small["cycles"]["layers"]
    assert small["cycles"]["total"] == perf.pwg_engine_cycles(config, 8, 8, 87)
    assert small["real_time_factor"] == pytest.approx(100e6 / small["cycles_per_sample"] / 22050)
    assert small["clock_hz_for_real_time"] == pytest.approx(small["cycles_per_sample"] * 22050)
    assert 0.9 < small["utilization"] < 1
    assert small["macs_per_sample"] == perf.pwg_macs(config).total
    big = perf.estimate_pwg(16, 16, 200e6)
    packed = perf.estimate_pwg(16, 16, 200e6, int8_pack=True)
    assert not big["fits_dsp"] and packed["fits_dsp"] and packed["dsp48e1"] == 129
    assert packed["real_time_factor"] == big["real_time_factor"] > 1
    # A second of activations is far beyond the xc7z020's 140 block RAMs (x and the 21-bit skip sums).
    assert small["activation_bram36"] == -(-22272 * 64 * (16 + 21) // (36 * 1024))


def test_estimate_pwg_recommended_configuration():
    # 13x16 (cols a power of two, as the engine needs) is the 16-bit array within 220 DSP48E1 that reaches real
    # time at the lowest clock, 115.7 MHz by the engine's cycle model; the default clock leaves a few percent.
    figures = perf.estimate_pwg()
    assert (figures["rows"], figures["cols"], figures["clock_hz"]) == (13, 16, 120e6)
    assert figures["fits_dsp"] and not figures["int8_pack"] and figures["dsp48e1"] == 209
    assert 1.0 < figures["real_time_factor"] < 1.05
    assert figures["clock_hz_for_real_time"] == pytest.approx(115.7e6, rel=1e-3)


def test_gru_lanes_per_tier():
    from wavefabric.model.perf import gru_lanes_per_tier

    assert gru_lanes_per_tier(2) == (8, 4) and gru_lanes_per_tier(3, 2) == (2, 2, 2)
    assert gru_lanes_per_tier(2, [6, 3]) == (6, 3)
    with pytest.raises(ValueError, match="one lane count per tier"):
        gru_lanes_per_tier(2, (8,))
    with pytest.raises(ValueError, match="gru_lanes"):
        gru_lanes_per_tier(2, (8, 0))


def test_samplernn_timing_seed_figures():
    """The seed configuration's schedule (the simulation tests check these cycles exactly)."""
    from wavefabric.model.perf import samplernn_dsp48e1, samplernn_timing
    from wavefabric.model.samplernn import SampleRNNConfig

    config = SampleRNNConfig()
    timing = samplernn_timing(config)
    assert (timing.mlp, timing.tiers, timing.fetch) == (380, (1971, 1969), 282)
    assert timing.cycles_per_sample == 380 + 1971 / 16 + 1969 / 64
    assert timing.ddr_bytes_per_sample == 15 * 128
    assert 11.7 < timing.real_time_factor(100e6, 16000) < 11.8
    assert samplernn_dsp48e1(config, 8, 8) == 64 + 96 + 1 + 29
