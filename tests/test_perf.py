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
    # Aux 1x1s at frame rate, polyphase stages (3 MACs per output) on their 30 x 128 outputs, no last out 1x1.
    config = pwg.PWGConfig()
    package, hardware = perf.pwg_macs(config, hardware_order=False), perf.pwg_macs(config)
    assert hardware.layers["aux_1x1"] == 30 * 128 * 80 / 256 == 1200
    stages = sum(v for k, v in hardware.layers.items() if k.startswith("upsample.stage"))
    assert stages == 30 * 128 * 3 * (4 + 16 + 64 + 256) / 256  # ~4 MACs per channel per sample
    assert hardware.layers["residual_layers"] == package.layers["residual_layers"] - 30 * 80 * 128 - 64 * 64
    assert hardware.total == 999_793
    assert 1 - hardware.total / package.total == pytest.approx(0.228, abs=1e-3)


# ---------------------------------------------------------------------------------------------------------------
# ParallelWaveGAN residual-layer engine and whole generator
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rows, cols", [(8, 8), (8, 16), (16, 16), (13, 16)])
@pytest.mark.parametrize("dilation", [1, 512])
def test_pwg_layer_utilization_at_ljspeech_sizes(rows, cols, dilation):
    for frames in (4, 16):  # T = 1024 and 4096 at hop 256; the upsampling table's 5 taps in the gate GEMM
        ideal = perf.pwg_layer_ideal_cycles(rows, cols, frames * 256, aux=5)
        utilization = ideal / perf.pwg_layer_cycles(rows, cols, frames, 256, dilation)
        assert utilization >= 0.95 * (128 / (rows * -(-128 // rows)))  # rows not dividing G waste tile rows


def test_pwg_layer_cycles_validates():
    with pytest.raises(ValueError, match="dilation must be an integer >= 1"):
        perf.pwg_layer_cycles(8, 8, 2, 16, 0)
    with pytest.raises(ValueError, match="loads must be an integer >= 0"):
        perf.pwg_layer_cycles(8, 8, 2, 16, 1, loads=-1)
    with pytest.raises(ValueError, match="the gate unit cannot keep up"):
        perf.pwg_gate_lanes(4, 8, 1, 8, 1, 1, 3)


def test_pwg_layer_traffic_counts_every_stream():
    traffic = perf.pwg_layer_traffic(100, 8)
    assert traffic["x"] == traffic["x_next"] == 100 * 64 * 2 and traffic["c"] == 100 * 80 * 2
    assert traffic["skip_in"] == traffic["skip_out"] == 100 * 64 * 4
    assert traffic["weights"] == (16 * 272 + 16 * 64) * 8 * 2 + 256 * 2
    assert traffic["total"] == sum(v for k, v in traffic.items() if k != "total")
    applied = perf.pwg_layer_traffic(100, 8, aux_applied=True)  # reads the 128-channel aux term, K_g = 192
    assert applied["c"] == 100 * 128 * 2 and applied["weights"] == (16 * 192 + 16 * 64) * 8 * 2 + 256 * 2


def test_estimate_pwg_real_time_figures():
    config = pwg.PWGConfig()
    small = perf.estimate_pwg(8, 8, 100e6)
    assert small["dsp48e1"] == 64 and small["fits_dsp"]
    assert small["cycles"]["total"] == sum(v for k, v in small["cycles"].items() if k != "total")
    assert small["real_time_factor"] == pytest.approx(100e6 / small["cycles_per_sample"] / 22050)
    assert 0.9 < small["utilization"] < 1 and small["residual_utilization"] > 0.99
    assert small["macs_per_sample"] == perf.pwg_macs(config).total
    big = perf.estimate_pwg(16, 16, 200e6)
    packed = perf.estimate_pwg(16, 16, 200e6, int8_pack=True)
    assert not big["fits_dsp"] and packed["fits_dsp"] and packed["dsp48e1"] == 128
    assert packed["real_time_factor"] == big["real_time_factor"] > 1
    assert packed["ddr_bandwidth_needed"] < big["ddr_bandwidth_needed"] < perf.PYNQ_Z1_DDR_BYTES_PER_S


def test_estimate_pwg_recommended_configuration():
    # 13x16 (cols a power of two, as the engine needs) is the 16-bit array within 220 DSP48E1 that reaches real
    # time at the lowest clock, 115.5 MHz by the cycle models; the default clock leaves a few percent.
    figures = perf.estimate_pwg()
    assert (figures["rows"], figures["cols"], figures["clock_hz"]) == (13, 16, 120e6)
    assert figures["fits_dsp"] and not figures["int8_pack"] and figures["hardware_order"]
    assert 1.0 < figures["real_time_factor"] < 1.05
    package = perf.estimate_pwg(hardware_order=False)
    assert package["real_time_factor"] < 0.9 and package["macs_per_sample"] == pytest.approx(1.2955e6, rel=1e-4)


def test_pwg_upsample_cycles_use_the_best_block():
    # s = 4 on 16x16: blocks of 16 outputs from 6 frames, one 16-cycle tile per 16 x 16 outputs; 344 outputs
    # per channel are 22 blocks.
    assert perf.pwg_upsample_cycles(16, 16, 3840, 86, 4) == perf.gemm_cycles(16, 16, 16, 3840 * 22, 6)
    # 13 rows: blocks of 52 outputs (4 tiles of 13 rows, 15 frames) beat one tile of 12 rows.
    assert perf.pwg_upsample_cycles(13, 16, 3840, 86, 4) == perf.gemm_cycles(13, 16, 52, 3840 * 7, 15)


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
