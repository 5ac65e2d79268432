"""Per-layer number formats chosen from a checkpoint: the choice rule, the profile of a tensor, the formats JSON.

Storage widths are fixed by the hardware (16 bits); what a checkpoint chooses is where the binary point sits in
each tensor: its ``frac``. A product of an activation at ``frac_a`` and a weight at ``frac_w`` lands at
``frac_a + frac_w``, so narrowing it to an output at ``frac_o`` drops ``frac_a + frac_w - frac_o`` bits: the
*shift* that the accelerators take at run time. Biases are stored at the output's ``frac`` and enter the
accumulator shifted left by the same amount.

**The rule** (:func:`frac_for`): the most fractional bits for which the tensor's peak magnitude times a
headroom factor still fits.

* Weights: headroom :data:`WEIGHT_HEADROOM` (1): the checkpoint's weights are known exactly, so the format only
  has to hold the largest of them.
* Activations (:func:`act_frac`): their peak and root-mean-square value are measured by running the float model
  on calibration input, and other input goes further. The format holds :data:`ACT_HEADROOM` (1.125) times the
  peak and :data:`ACT_RMS_SPAN` (5) times the rms: a whole bit of headroom over the peak would cost a bit of
  precision in every value (0.6 dB of waveform SNR on a PWG generator with random weights, where the residual
  stream's peak is 5 rms), while a peak found on a short calibration input can be too low (a white mel drives
  conv_in 50% past a smooth one's peak, at 5 rms). A run that does saturate says so (``generate --fixed``,
  ``sim``, the accelerators' flags), and profiling on one's own input (``wavefabric profile --mel``) moves the
  formats.

A tensor's profile (:class:`TensorProfile`) counts the values that saturate (beyond the format's range) and the
nonzero values that lose all precision (they round to zero).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from .files import atomic_write
from .fixed import QFormat

__all__ = [
    "WEIGHT_HEADROOM",
    "ACT_HEADROOM",
    "FormatsError",
    "frac_for",
    "act_frac",
    "ACT_RMS_SPAN",
    "TensorProfile",
    "percentiles",
    "profile_table",
    "save_formats",
    "load_formats",
]

#: Headroom over a weight tensor's largest magnitude (the checkpoint's weights are exact).
WEIGHT_HEADROOM = 1.0
#: Headroom over an activation's measured peak, for input beyond the calibration data.
ACT_HEADROOM = 1.125
#: An activation's format holds at least this many of its root-mean-square values (a short calibration input
#: understates the peaks of longer or other input; the values are roughly Gaussian).
ACT_RMS_SPAN = 5.0


class FormatsError(ValueError):
    """A formats JSON that cannot serve this checkpoint or this hardware (the message is one line)."""


def act_frac(peak: float, rms: float, width: int, lo: int, hi: int) -> int:
    """An activation's ``frac`` (:func:`frac_for`) from its measured peak and root-mean-square value: it holds
    :data:`ACT_HEADROOM` times the peak and :data:`ACT_RMS_SPAN` times the rms."""
    return frac_for(max(peak * ACT_HEADROOM, rms * ACT_RMS_SPAN), width, 1.0, lo, hi)


def frac_for(peak: float, width: int, headroom: float, lo: int, hi: int) -> int:
    """The most fractional bits in ``[lo, hi]`` for which ``peak * headroom`` fits a signed ``width``-bit
    format (``hi`` for a tensor that is all zero)."""
    need = float(peak) * headroom
    if need <= 0.0:
        return hi
    frac = math.floor(math.log2(((1 << (width - 1)) - 1) / need))
    return max(lo, min(hi, frac))


@dataclass(frozen=True)
class TensorProfile:
    """The range of one tensor against its format.

    ``stats`` are the minimum, the 1st, 25th, 50th, 75th and 99th percentiles and the maximum of the real values,
    ``magnitudes`` the 1st, 25th, 50th, 75th and 99th percentiles of the nonzero values' magnitudes (a box plot's
    on a log scale);
    ``saturated`` counts values beyond ``fmt``'s range, ``lost`` the nonzero values that round to zero in it.
    ``note`` says why a saturation is harmless (a tanh/sigmoid input, for example), or is empty.
    """

    name: str
    kind: str
    fmt: QFormat
    stats: tuple[float, ...]
    magnitudes: tuple[float, ...]
    count: int
    saturated: int
    lost: int
    note: str = ""

    @classmethod
    def measure(cls, name: str, kind: str, values, fmt: QFormat, note: str = "") -> TensorProfile:
        """Profile the real ``values`` of one tensor (any shape) against ``fmt``."""
        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size == 0:
            raise ValueError(f"tensor {name} has no values to profile")
        scaled = np.floor(v * 2.0**fmt.frac + 0.5)
        saturated = int(np.count_nonzero((scaled < fmt.min_int) | (scaled > fmt.max_int)))
        lost = int(np.count_nonzero((scaled == 0) & (v != 0)))
        return cls(name, kind, fmt, *percentiles(v, float(v.min()), float(v.max())), int(v.size), saturated, lost,
                   note)

    @property
    def peak(self) -> float:
        return max(abs(self.stats[0]), abs(self.stats[-1]))


def percentiles(sample: np.ndarray, lo: float, hi: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """:class:`TensorProfile`'s ``stats`` and ``magnitudes`` of a sample of a tensor whose extremes are ``lo`` and
    ``hi``."""
    inner = np.percentile(sample, [1, 25, 50, 75, 99])
    nonzero = np.abs(sample[sample != 0])  # a log scale has no zero: the magnitudes are of the nonzero values
    magnitudes = np.percentile(nonzero, [1, 25, 50, 75, 99]) if nonzero.size else np.zeros(5)
    return (lo, *(float(p) for p in inner), hi), tuple(float(p) for p in magnitudes)


def profile_table(rows: Iterable[TensorProfile]) -> str:
    """The profile as a text table: one line per tensor."""
    head = f"{'tensor':<24} {'kind':<6} {'min':>9} {'max':>9} {'format':>7} {'range':>9} {'saturated':>11} {'lost':>11}"
    lines = [head]
    for r in rows:
        sat = f"{r.saturated / r.count:.2%}" if r.saturated else "0"
        lost = f"{r.lost / r.count:.2%}" if r.lost else "0"
        lines.append(f"{r.name:<24} {r.kind:<6} {r.stats[0]:>9.4g} {r.stats[-1]:>9.4g} {str(r.fmt):>7} "
                     f"{r.fmt.max_value:>9.4g} {sat:>11} {lost:>11}" + (f"  ({r.note})" if r.note else ""))
    return "\n".join(lines)


def save_formats(path: str | os.PathLike, network: str, width: int, fracs: Mapping[str, int]) -> None:
    """Write the formats JSON (atomically): the network, the storage width and every tensor's ``frac``."""
    text = json.dumps({"network": network, "width": width, "frac": dict(fracs)}, indent=1) + "\n"
    with atomic_write(path) as f:
        f.write(text)


def load_formats(path: str | os.PathLike, network: str, width: int, names: Iterable[str],
                 lo: int, hi: int) -> dict[str, int]:
    """Read a formats JSON for ``network`` on hardware of ``width``-bit storage.

    Every name in ``names`` must be present, no other, each ``frac`` an integer in ``[lo, hi]``.

    Raises
    ------
    FormatsError
        With one line naming the file and what does not match.
    """
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError as error:
        raise FormatsError(f"{path}: cannot read the formats ({error.strerror or error})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FormatsError(f"{path}: not a formats JSON ({error})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("frac"), dict):
        raise FormatsError(f"{path}: not a formats JSON (no 'frac' table)")
    if doc.get("network") != network:
        raise FormatsError(f"{path}: formats for {doc.get('network')!r}, not {network!r}")
    if doc.get("width") != width:
        raise FormatsError(f"{path}: formats for {doc.get('width')!r}-bit storage; this hardware stores {width} bits")
    fracs, names = doc["frac"], list(names)
    missing = [n for n in names if n not in fracs]
    if missing:
        raise FormatsError(f"{path}: no format for {', '.join(missing[:4])}"
                           + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
                           + " (formats of another checkpoint's sizes?)")
    unknown = sorted(set(fracs) - set(names))
    if unknown:
        raise FormatsError(f"{path}: unknown tensor {unknown[0]!r} (formats of another checkpoint's sizes?)")
    for name in names:
        value = fracs[name]
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise FormatsError(f"{path}: {name}'s frac must be an integer from {lo} to {hi}, not {value!r}")
    return {name: fracs[name] for name in names}
