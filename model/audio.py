"""WAV input and output (16-bit PCM, mono) with the standard library's ``wave`` module."""

from __future__ import annotations

import os
import wave
from collections.abc import Iterable

import numpy as np

from .files import atomic_write

__all__ = ["write_wav", "write_wav_blocks", "read_wav"]


def _pcm(samples) -> np.ndarray:
    samples = np.asarray(samples).reshape(-1)
    if np.issubdtype(samples.dtype, np.integer):
        # 16-bit PCM already (what the accelerators stream): written as it is.
        if samples.size and (samples.min() < -32768 or samples.max() > 32767):
            raise ValueError("integer audio must be 16-bit PCM, in [-32768, 32767]: nothing was written")
        return samples.astype("<i2")
    samples = samples.astype(np.float64)
    if np.isnan(samples).any():
        raise ValueError("the audio has NaN samples: nothing was written")
    return np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")


def write_wav_blocks(path: str | os.PathLike, blocks: Iterable, n_samples: int, sample_rate: int) -> None:
    """Write ``n_samples`` samples, given as consecutive blocks, as 16-bit mono PCM.

    A float block holds samples in [-1, 1] (scaled by 32767 and rounded; values outside are clipped); an
    integer block holds 16-bit PCM, written as it is.

    The file is written as :func:`~.files.atomic_write` describes, one block at a time, so memory does not
    grow with the length; the header is written first (so a FIFO or device can be written too).

    Raises
    ------
    ValueError
        If ``sample_rate`` is not a positive integer or ``n_samples`` is negative, a block holds NaN or
        integers outside 16 bits, or the blocks do not hold ``n_samples`` samples; nothing is left at ``path``
        (a FIFO or device may have been written to).
    """
    if not isinstance(sample_rate, int) or sample_rate < 1:
        raise ValueError(f"sample_rate must be a positive integer, not {sample_rate!r}")
    if not isinstance(n_samples, int) or n_samples < 0:
        raise ValueError(f"n_samples must be an integer >= 0, not {n_samples!r}")
    with atomic_write(path, "wb") as f, wave.open(f, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.setnframes(n_samples)
        written = 0
        for block in blocks:
            pcm = _pcm(block)
            written += len(pcm)
            if written > n_samples:
                break
            w.writeframesraw(pcm.tobytes())
        if written != n_samples:
            raise ValueError(f"the audio has {'more' if written > n_samples else 'fewer'} than {n_samples} samples")


def write_wav(path: str | os.PathLike, samples, sample_rate: int) -> None:
    """Write samples (floats in [-1, 1], or 16-bit PCM integers) as 16-bit mono PCM, atomically (see
    :func:`write_wav_blocks`)."""
    samples = np.asarray(samples).reshape(-1)
    write_wav_blocks(path, [samples], len(samples), sample_rate)


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV file: (float samples in [-1, 1) of the first channel, sample rate).

    Raises ``ValueError`` (one line naming the file) for a file that is not a 16-bit PCM WAV.
    """
    try:
        with wave.open(os.fspath(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise ValueError(f"{path}: only 16-bit PCM is supported, not {8 * w.getsampwidth()}-bit")
            data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, w.getnchannels())
            return data[:, 0].astype(np.float64) / 32768, w.getframerate()
    except (wave.Error, EOFError) as error:
        raise ValueError(f"{path}: not a WAV file ({str(error) or 'truncated'})") from None
