"""Closed-form work and cycle models.

Work is counted in multiply-accumulates (MACs) per output audio sample, layer by layer, so that the CLI, the
benchmarks and the design-space figures all come from one place. Cycle models of the engines live here too:
simulation tests assert that the RTL takes exactly the cycles these functions give.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["WorkReport", "samplernn_macs", "pwg_macs"]


@dataclass
class WorkReport:
    """MACs per output sample of one network, by layer.

    Attributes
    ----------
    name : str
        Network name.
    sample_rate : int
        Output samples per second.
    layers : dict[str, float]
        Layer name to MACs per output sample (layers that run at a frame rate are divided by their frame).
    """

    name: str
    sample_rate: int
    layers: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.layers.values())

    @property
    def macs_per_second(self) -> float:
        """MACs per second of real-time audio."""
        return self.total * self.sample_rate

    def as_dict(self) -> dict:
        return {"name": self.name, "sample_rate": self.sample_rate, "macs_per_sample": self.total,
                "macs_per_second": self.macs_per_second, "layers": dict(self.layers)}


def samplernn_macs(config, fold_embedding: bool = False, sample_rate: int = 16000) -> WorkReport:
    """MACs per output sample of SampleRNN (samplernn-pytorch structure) for ``config``.

    Tier ``t`` runs once per ``n_frame_samples[t]`` samples: its input expansion (``n_frame_samples -> dim``),
    its ``n_rnn`` GRU layers (``3 * (dim*dim + dim*dim)`` each) and its learned upsampling (``dim * dim *
    frame_size``). The sample-level MLP runs every sample: the input convolution over the embedded previous
    ``frame_sizes[0]`` samples (``q * dim * frame_sizes[0]``), the hidden and output 1x1 convolutions. With
    ``fold_embedding`` the input convolution becomes ``frame_sizes[0]`` table lookups (no MACs).

    The seed configuration (frame sizes 16 4, 2 GRU layers, dim 64, 256 levels) gives 290,944 (28,800
    folded).
    """
    report = WorkReport("samplernn", sample_rate)
    dim, q = config.dim, config.q_levels
    n_frame_samples = 1
    for tier, frame_size in enumerate(config.frame_sizes):
        n_frame_samples *= frame_size
        report.layers[f"tier{tier}.input_expand"] = n_frame_samples * dim / n_frame_samples
        report.layers[f"tier{tier}.gru"] = config.n_rnn * 3 * 2 * dim * dim / n_frame_samples
        report.layers[f"tier{tier}.upsampling"] = dim * dim * frame_size / n_frame_samples
    report.layers["mlp.input"] = 0 if fold_embedding else q * dim * config.frame_sizes[0]
    report.layers["mlp.hidden"] = dim * dim
    report.layers["mlp.output"] = dim * q
    return report


def pwg_macs(config) -> WorkReport:
    """MACs per output sample of the ParallelWaveGAN generator (``parallel-wavegan`` structure).

    Per residual layer and sample: the dilated convolution (``residual * gate * kernel``), the aux 1x1
    (``aux * gate``), the skip and output 1x1s (``gate/2 * skip`` and ``gate/2 * residual``). Plus the first 1x1,
    the two output 1x1s, and the upsampler: ``conv_in`` at the frame rate and one ``2s+1``-tap filter per aux
    channel at each upsampling stage's rate. The ljspeech v1 configuration gives about 1.30 M.
    """
    report = WorkReport("pwg", config.sample_rate)
    hop = 1
    for scale in config.upsample_scales:
        hop *= scale
    aux = config.aux_channels
    report.layers["upsample.conv_in"] = aux * aux * (2 * config.aux_context_window + 1) / hop
    rate = 1
    for stage, scale in enumerate(config.upsample_scales):
        rate *= scale
        report.layers[f"upsample.stage{stage}"] = aux * (2 * scale + 1) * rate / hop
    res, gate, skip = config.residual_channels, config.gate_channels, config.skip_channels
    report.layers["first_conv"] = config.in_channels * res
    per_layer = res * gate * config.kernel_size + aux * gate + gate // 2 * skip + gate // 2 * res
    report.layers["residual_layers"] = config.layers * per_layer
    report.layers["last_conv"] = skip * skip + skip * config.out_channels
    return report
