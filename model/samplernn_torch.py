"""samplernn-pytorch's SampleRNN as ``torch.nn`` modules, and a short seeded training run on a synthetic tone.

The modules have samplernn-pytorch's state-dict names (with PyTorch's newer weight-norm parametrizations), so
:meth:`~wavefabric.model.samplernn.SampleRNNParams.from_state_dict` reads them. They serve as the float
reference of the tests and as a source of *trained-like* networks: a network trained for a few seconds on a
tone has the ranges of a trained one (sharp next-sample distributions, large logits, weights beyond the random
initialisation's), which random weights do not.

torch is a test extra: it is imported inside the functions here, never at module level.
"""

from __future__ import annotations

import numpy as np

from .samplernn import SampleRNNConfig, state_dict_shapes

__all__ = ["torch_samplernn", "numpy_state_dict", "tone", "train_tone"]


def torch_samplernn(config: SampleRNNConfig, state_dict=None):
    """samplernn-pytorch's SampleRNN rebuilt from ``torch.nn`` modules (float32, or float64 when the given
    ``state_dict`` holds float64 arrays), loaded strictly from ``state_dict`` (NumPy arrays with
    :func:`~wavefabric.model.samplernn.state_dict_shapes`' names) when one is given.

    The modules: ``frame_level_rnns[k](frames, cond, hidden)`` with frames ``(B, F, nfs)`` of tier inputs
    returns the upsampled conditioning ``(B, F * fs, dim)`` and the GRU state; ``sample_level_mlp(prev, cond)``
    with ``prev`` ``(B, L + fs0 - 1)`` codes and ``cond`` ``(B, L, dim)`` returns log-probabilities ``(B, L, q)``.
    """
    import torch

    nn = torch.nn
    weight_norm = torch.nn.utils.parametrizations.weight_norm
    dim, q, fs0 = config.dim, config.q_levels, config.frame_sizes[0]

    def normed(module):
        return weight_norm(module, dim=0) if config.weight_norm else module

    class Upsampling(nn.Module):
        def __init__(self, fs):
            super().__init__()
            self.conv_t = normed(nn.ConvTranspose1d(dim, dim, fs, stride=fs, bias=False))
            self.bias = nn.Parameter(torch.zeros(dim, fs))

        def forward(self, x):  # (B, dim, L) -> (B, dim, L * fs); bias[d, j] at every position t * fs + j
            return self.conv_t(x) + self.bias.repeat(1, x.shape[2])[None]

    class Tier(nn.Module):
        def __init__(self, fs, nfs):
            super().__init__()
            self.h0 = nn.Parameter(torch.zeros(config.n_rnn, dim))
            self.input_expand = normed(nn.Conv1d(nfs, dim, 1))
            self.rnn = nn.GRU(dim, dim, config.n_rnn, batch_first=True)
            self.upsampling = Upsampling(fs)

        def forward(self, frames, cond, hidden):
            x = self.input_expand(frames.permute(0, 2, 1)).permute(0, 2, 1)
            if cond is not None:
                x = x + cond
            if hidden is None:
                hidden = self.h0[:, None].expand(-1, frames.shape[0], -1).contiguous()
            out, hidden = self.rnn(x, hidden)
            return self.upsampling(out.permute(0, 2, 1)).permute(0, 2, 1), hidden

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(q, q)
            self.input = normed(nn.Conv1d(q, dim, fs0, bias=False))
            self.hidden = normed(nn.Conv1d(dim, dim, 1))
            self.output = normed(nn.Conv1d(dim, q, 1))

        def forward(self, prev, cond):
            x = self.embedding(prev).permute(0, 2, 1)
            x = torch.relu(self.input(x) + cond.permute(0, 2, 1))
            x = torch.relu(self.hidden(x))
            return torch.log_softmax(self.output(x).permute(0, 2, 1), dim=-1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.frame_level_rnns = nn.ModuleList(
                Tier(fs, nfs) for fs, nfs in zip(config.frame_sizes, config.n_frame_samples, strict=True))
            self.sample_level_mlp = MLP()

        def forward(self, seq):
            """Log-probabilities ``(B, L, q)`` of ``seq[:, lookback:]`` given the samples before each."""
            lookback = config.lookback
            n = seq.shape[1] - lookback
            value = 2 * (seq.to(self.sample_level_mlp.embedding.weight.dtype) / (q / 2) - 1)
            cond = None
            for tier, nfs in reversed(list(zip(self.frame_level_rnns, config.n_frame_samples, strict=True))):
                frames = value[:, lookback - nfs:lookback - nfs + n].reshape(seq.shape[0], -1, nfs)
                cond, _ = tier(frames, cond, None)
            return self.sample_level_mlp(seq[:, lookback - fs0:-1], cond)

    if state_dict is None:
        return Net()
    net = Net().double() if next(iter(state_dict.values())).dtype == np.float64 else Net()
    renamed = {name.replace(".weight_g", ".parametrizations.weight.original0")
               .replace(".weight_v", ".parametrizations.weight.original1"): torch.from_numpy(np.array(value))
               for name, value in state_dict.items()}
    net.load_state_dict(renamed, strict=True)
    return net.eval()


def numpy_state_dict(net, config: SampleRNNConfig) -> dict[str, np.ndarray]:
    """A :func:`torch_samplernn` module's parameters as a float32 state dict with samplernn-pytorch's names."""
    sd = {name.replace(".parametrizations.weight.original0", ".weight_g")
          .replace(".parametrizations.weight.original1", ".weight_v"): value.detach().float().numpy().copy()
          for name, value in net.state_dict().items()}
    return {name: sd[name] for name in state_dict_shapes(config)}


def tone(n_samples: int, q_levels: int, seed: int, sample_rate: int = 16_000) -> np.ndarray:
    """Synthetic audio as linear sample codes: a tone gliding from 220 to 660 Hz and back, its octave at a
    third of its level, and a little noise (seeded); peaks at 0.8 of full scale."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / sample_rate
    freq = 440 + 220 * np.sin(2 * np.pi * 0.5 * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(freq) / sample_rate
    x = 0.6 * np.sin(phase) + 0.2 * np.sin(2 * phase) + 0.01 * rng.standard_normal(n_samples)
    return np.clip(np.floor((x + 1) / 2 * q_levels), 0, q_levels - 1).astype(np.int64)


def train_tone(config: SampleRNNConfig, seed: int = 0, steps: int = 200, batch: int = 8, length: int | None = None,
               lr: float = 3e-3) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Train a SampleRNN for ``steps`` Adam steps on :func:`tone` audio (teacher forced, negative log-likelihood).

    Returns the float32 state dict and the audio it was trained on (sample codes). Seeded: the same arguments
    give the same network on the same machine. Windows of ``length`` samples (default 4 top-tier frames) after
    the ``lookback`` samples they are predicted from are drawn at random from 2 s of audio.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread is faster, and the same on every machine
    try:
        return _train(torch, config, seed, steps, batch, length, lr)
    finally:
        torch.set_num_threads(threads)


def _train(torch, config: SampleRNNConfig, seed: int, steps: int, batch: int, length: int | None, lr: float):
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = torch_samplernn(config)
    audio = tone(32_000, config.q_levels, seed)
    lookback = config.lookback
    length = length or 4 * lookback
    if length % lookback:
        raise ValueError(f"length must be a multiple of the lookback {lookback}, not {length}")
    codes = torch.from_numpy(audio)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        start = torch.randint(0, len(audio) - lookback - length, (batch,), generator=generator)
        seq = torch.stack([codes[s:s + lookback + length] for s in start.tolist()])
        log_p = net(seq)
        loss = torch.nn.functional.nll_loss(log_p.reshape(-1, config.q_levels), seq[:, lookback:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
    return numpy_state_dict(net, config), audio
