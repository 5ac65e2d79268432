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
    report = perf.pwg_macs(config)
    assert report.total == pytest.approx(total)
    if not overrides:
        assert report.total == pytest.approx(1.2955e6, rel=1e-4)
        assert report.macs_per_second == pytest.approx(28.57e9, rel=1e-3)
