"""The hardware sampler's twin: Gumbel-max sampling from fixed-point logits with an xorshift32 generator.

The sampler draws each sample's code from its logits exactly as the hardware does, so that generation is
bit-exact for a given state:

* **Random bits.** Marsaglia's xorshift32 (shifts 13, 17, 5) on a nonzero 32-bit state, one step per draw.
  Software turns a user seed into the first state with :func:`seed_state`; the hardware is given the state.
* **Draw order.** For each generated sample in order, for each level ``v = 0 .. q-1`` in order: ``state =
  xorshift32(state)``, ``u = state >> (32 - bits)``, ``g_v = table[u]``.
* **Noise table.** ``table[k] = logits.quantize(-log(-log((k + 1/2) / 2**bits)))``: standard Gumbel noise at
  the midpoints of ``2**bits`` equal steps of the uniform, in the logits' format (round half up, saturate).
* **Temperature.** An unsigned integer ``tq = temperature_int(T)`` with :data:`TEMPERATURE_FRAC` fractional
  bits scales the noise: ``score_v = logit_v + shift_round(tq * g_v, 12)``, exact (no saturation).
  ``argmax(logits + T g)`` is ``argmax(logits / T + g)``: sampling from ``softmax(logits / T)``.
* **Code.** The first index of the largest score (the hardware replaces its running maximum only on a
  strictly greater score), as ``np.argmax``.
* **Output.** :func:`pcm16` maps each code to the 16-bit PCM sample streamed with it.

xorshift32 is linear over GF(2): one step is a 32 x 32 bit matrix ``A``, and ``A**k`` applied to a state is
the XOR of four byte tables (the images under ``A**k`` of each byte value at each byte position). With tables
for many powers at once, :func:`xorshift32_states` computes a whole stream of states in a few NumPy gathers
instead of a Python loop per draw.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from .checks import check_int
from .fixed import QFormat, shift_round

__all__ = [
    "xorshift32",
    "xorshift32_states",
    "seed_state",
    "TEMPERATURE_FRAC",
    "temperature_int",
    "GumbelSampler",
    "pcm16",
]

_MASK32 = 0xFFFFFFFF

#: Fractional bits of the integer temperature ``tq`` (unsigned, 16 bits: T from 1/4096 to 65535/4096).
TEMPERATURE_FRAC = 12

#: States per jump in :func:`xorshift32_states`: byte tables exist for ``A**1 .. A**_BLOCK`` and for
#: ``A**(_BLOCK * k)``, ``k = 1 .. _BLOCK`` (256 * 4 * 256 uint32 each, 1 MiB).
_BLOCK = 256


def _check_state(state) -> int:
    return check_int("state", state, 1, _MASK32)


def xorshift32(x: int) -> int:
    """One step of Marsaglia's xorshift32 (13, 17, 5) on a 32-bit state.

    Parameters
    ----------
    x : int
        State, 0 to ``2**32 - 1`` (0 maps to itself, so real states are nonzero).

    Returns
    -------
    int
        The next state.
    """
    x = check_int("x", x, 0, _MASK32)
    x ^= (x << 13) & _MASK32
    x ^= x >> 17
    x ^= (x << 5) & _MASK32
    return x


def seed_state(seed: int) -> int:
    """A nonzero xorshift32 state from any seed: splitmix64's finaliser on ``seed + 0x9E3779B97F4A7C15``.

    Only software computes this; the hardware is given the state. The finaliser spreads neighbouring seeds
    over the whole state space (raw small seeds would start xorshift32 in a long run of near-zero states).

    Parameters
    ----------
    seed : int
        Any integer >= 0.

    Returns
    -------
    int
        The low 32 bits of the finalised value, or 1 if they are zero.
    """
    seed = check_int("seed", seed, 0)
    z = (seed + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    z ^= z >> 31
    return (z & _MASK32) or 1


def _apply(columns: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A GF(2) matrix given by its 32 columns (images of bits 0..31, uint32) applied to states ``x``."""
    bits = (x[..., None] >> np.arange(32, dtype=np.uint32)) & np.uint32(1)
    return np.bitwise_xor.reduce(np.where(bits == 1, columns, np.uint32(0)), axis=-1)


def _power(exponent: int) -> np.ndarray:
    """The columns of ``A**exponent`` (square and multiply)."""
    result = np.uint32(1) << np.arange(32, dtype=np.uint32)
    # The columns of A: one xorshift32 step of each basis state (uint32 shifts drop the high bits).
    base = result ^ (result << np.uint32(13))
    base ^= base >> np.uint32(17)
    base ^= base << np.uint32(5)
    while exponent:
        if exponent & 1:
            result = _apply(base, result)
        base = _apply(base, base)
        exponent >>= 1
    return result


@functools.cache
def _jump_tables(stride: int) -> np.ndarray:
    """Byte tables of ``A**(stride * k)`` for ``k = 1 .. _BLOCK``, shape ``(4, 256, _BLOCK)`` uint32.

    ``t[i, v, k - 1]`` is the image under ``A**(stride * k)`` of byte value ``v`` at byte position ``i``,
    so ``t[0, x & 255] ^ t[1, (x >> 8) & 255] ^ ...`` gives the ``_BLOCK`` states after ``x`` (in steps of
    ``stride``) as one row.
    """
    step = _power(stride)
    columns = np.empty((_BLOCK, 32), dtype=np.uint32)
    columns[0] = step
    for k in range(1, _BLOCK):
        columns[k] = _apply(step, columns[k - 1])
    by_byte = columns.reshape(_BLOCK, 4, 8)
    tables = np.zeros((4, 256, _BLOCK), dtype=np.uint32)
    # A linear map's table: the image of v is the image of v without its lowest set bit, XOR that bit's column.
    for v in range(1, 256):
        low = v & -v
        tables[:, v] = tables[:, v ^ low] ^ by_byte[:, :, low.bit_length() - 1].T
    tables.setflags(write=False)
    return tables


def _jump(tables: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Rows of states after each of the states ``x`` (shape ``(len(x), _BLOCK)``), by four byte gathers."""
    return (tables[0][x & 255] ^ tables[1][(x >> 8) & 255] ^ tables[2][(x >> 16) & 255]
            ^ tables[3][x >> 24])


def xorshift32_states(state: int, n: int) -> np.ndarray:
    """The ``n`` xorshift32 states that follow ``state``, computed by jump tables instead of ``n`` steps.

    Equal to ``s_k = xorshift32(s_{k-1})`` for ``k = 1 .. n`` from ``s_0 = state``. Up to 256 states take one
    jump (four gathers); more take one jump per 65,536 states for the block starts, then one for all blocks.

    Parameters
    ----------
    state : int
        Nonzero 32-bit state ``s_0``, 1 to ``2**32 - 1``.
    n : int
        Number of states, >= 0.

    Returns
    -------
    (n,) uint32 array
        ``s_1 .. s_n``; the last is the state to continue from.
    """
    state = _check_state(state)
    n = check_int("n", n, 0)
    blocks = -(-n // _BLOCK)
    starts = np.empty(blocks, dtype=np.uint32)
    starts[:1] = state
    far = _jump_tables(_BLOCK)
    for b in range(0, blocks - 1, _BLOCK):
        # The starts of up to _BLOCK following blocks, from the start of block b.
        count = min(_BLOCK, blocks - 1 - b)
        starts[b + 1:b + 1 + count] = _jump(far, starts[b:b + 1])[0, :count]
    return _jump(_jump_tables(1), starts).reshape(-1)[:n]


def temperature_int(temperature: float) -> int:
    """The sampler's integer temperature: ``floor(T * 2**TEMPERATURE_FRAC + 1/2)``.

    Raises
    ------
    ValueError
        Unless ``temperature`` is a finite number > 0 whose integer lies in 1 .. 65535 (T from about
        1.2e-4 to 16).
    """
    legal = f"a finite number > 0 that rounds to 1..65535 in units of 2**-{TEMPERATURE_FRAC} " \
            f"(about {0.5 / (1 << TEMPERATURE_FRAC):.2g} to {65535.5 / (1 << TEMPERATURE_FRAC):.4g})"
    if isinstance(temperature, bool) or not isinstance(temperature, int | float | np.integer | np.floating):
        raise ValueError(f"temperature must be {legal}, not {temperature!r}")
    t = float(temperature)
    tq = math.floor(t * (1 << TEMPERATURE_FRAC) + 0.5) if math.isfinite(t) and t > 0 else 0
    if not 1 <= tq <= 0xFFFF:
        raise ValueError(f"temperature must be {legal}, not {temperature!r}")
    return tq


@dataclass(frozen=True)
class GumbelSampler:
    """Gumbel-max sampling on fixed-point logits, as the hardware does it (see the module docstring).

    Parameters
    ----------
    logits : QFormat
        Format of the logits and of the noise table. At most 45 bits wide, so that ``tq * g`` and the scores
        are exact in ``int64``.
    bits : int
        Uniform bits per draw, 4 to 16: the table has ``2**bits`` entries. Fewer bits truncate the noise's
        tails (its largest value is about ``log(2**(bits + 1))``), which biases flat distributions: 12 is the
        SampleRNN default (:class:`~wavefabric.model.samplernn.SampleRNNConfig`, ``gumbel_bits``).

    Attributes
    ----------
    table : (2**bits,) int64 array
        ``logits.quantize(-log(-log((k + 1/2) / 2**bits)))``, increasing in ``k``.

    Raises
    ------
    ValueError
        For a parameter out of range, naming it.
    """

    logits: QFormat
    bits: int = 12
    table: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not isinstance(self.logits, QFormat) or self.logits.width > 45:
            raise ValueError(f"logits must be a QFormat at most 45 bits wide, not {self.logits!r}")
        check_int("bits", self.bits, 4, 16)
        u = (np.arange(1 << self.bits) + 0.5) / (1 << self.bits)
        table = self.logits.quantize(-np.log(-np.log(u)))
        table.setflags(write=False)
        object.__setattr__(self, "table", table)

    def noise(self, state: int, n_samples: int, q_levels: int, tq: int) -> tuple[np.ndarray, int]:
        """The temperature-scaled noise terms of ``n_samples`` consecutive samples.

        Noise does not depend on the logits, so generation computes it a block of samples ahead and only the
        additions and the argmax remain per sample; one sample's noise alone (``n_samples = 1``) is one jump.

        Parameters
        ----------
        state : int
            xorshift32 state before the first draw, 1 to ``2**32 - 1``.
        n_samples : int
            Samples, >= 0.
        q_levels : int
            Levels per sample, >= 2.
        tq : int
            Integer temperature (:func:`temperature_int`), 1 to 65535.

        Returns
        -------
        noise : (n_samples, q_levels) int64 array
            ``shift_round(tq * table[u], TEMPERATURE_FRAC)``, to be added to the logits.
        state : int
            The state after the last draw.
        """
        state = _check_state(state)
        n_samples = check_int("n_samples", n_samples, 0)
        q_levels = check_int("q_levels", q_levels, 2)
        tq = check_int("tq", tq, 1, 0xFFFF)
        states = xorshift32_states(state, n_samples * q_levels)
        g = self.table[states >> np.uint32(32 - self.bits)]
        noise = shift_round(tq * g, TEMPERATURE_FRAC).reshape(n_samples, q_levels)
        return noise, int(states[-1]) if len(states) else state

    def sample(self, logits_int, state: int, tq: int) -> tuple[np.ndarray, int]:
        """Draw one code per row of logits.

        Parameters
        ----------
        logits_int : (n, q) int array
            Logits in the ``logits`` format, one row per sample in generation order.
        state : int
            xorshift32 state before the first draw, 1 to ``2**32 - 1``.
        tq : int
            Integer temperature (:func:`temperature_int`), 1 to 65535.

        Returns
        -------
        codes : (n,) int64 array
            ``argmax(logits_int + noise, axis=1)``, the first maximum on ties.
        state : int
            The state after the last draw, for the next sample.
        """
        logits_int = np.asarray(logits_int)
        if (logits_int.ndim != 2 or logits_int.shape[1] < 2 or not np.issubdtype(logits_int.dtype, np.integer)
                or not self.logits.contains(logits_int)):
            raise ValueError(f"logits_int must be an (n, q >= 2) integer array in [{self.logits.min_int}, "
                             f"{self.logits.max_int}] ({self.logits}), not {logits_int.dtype} {logits_int.shape}")
        noise, state = self.noise(state, logits_int.shape[0], logits_int.shape[1], tq)
        return np.argmax(logits_int.astype(np.int64) + noise, axis=1), state

    def probabilities(self, logits_int, tq: int) -> np.ndarray:
        """The exact distribution of the code this sampler draws from one row of logits, for ideal random bits.

        With every table index equally likely and independent across levels, code ``k`` wins when its score
        beats every earlier level strictly and every later level or ties it, so::

            P(k) = mean over x in noise of  prod_{j<k} P(l_j + n < l_k + x) * prod_{j>k} P(l_j + n <= l_k + x)

        with ``noise = shift_round(tq * table, 12)`` and ``n`` one uniformly chosen entry of it. This is what
        the sampler's draws converge to; against ``softmax(logits / T)`` it measures the bias of the finite
        table alone, free of sampling noise.

        Parameters
        ----------
        logits_int : (q,) int array
            Logits in the ``logits`` format.
        tq : int
            Integer temperature (:func:`temperature_int`), 1 to 65535.

        Returns
        -------
        (q,) float64 array summing to 1.
        """
        logits_int = np.asarray(logits_int)
        if logits_int.ndim != 1 or len(logits_int) < 2 or not np.issubdtype(logits_int.dtype, np.integer):
            raise ValueError(f"logits_int must be a (q >= 2,) integer array, not {logits_int.dtype} "
                             f"{logits_int.shape}")
        tq = check_int("tq", tq, 1, 0xFFFF)
        noise = shift_round(tq * self.table, TEMPERATURE_FRAC)  # non-decreasing, as the table is
        lo, hi = int(noise[0]), int(noise[-1])
        # at_most[t - lo] = P(n <= t) for t in [lo, hi] (0 below, 1 above).
        at_most = np.cumsum(np.bincount(noise - lo, minlength=hi - lo + 1)) / len(noise)

        def cdf(t: np.ndarray) -> np.ndarray:
            return np.where(t < lo, 0.0, at_most[np.clip(t - lo, 0, hi - lo)])

        logits = logits_int.astype(np.int64)
        # Only levels whose best score reaches the top level's worst can win; for every score where one of
        # them does, the other levels are certainly below it, so they drop out of the products too.
        live = np.flatnonzero(logits + hi >= logits.max() + lo)
        p = np.zeros(len(logits))
        for i, k in enumerate(live):
            gap = (logits[k] + noise)[:, None] - logits[live][None, :]  # (entries, live levels)
            below = np.concatenate([cdf(gap[:, :i] - 1), cdf(gap[:, i + 1:])], axis=1)
            p[k] = np.prod(below, axis=1).mean()
        return p


def pcm16(codes, q_levels: int) -> np.ndarray:
    """Sample codes to the 16-bit PCM the hardware streams: ``floor((2 code - q) * 32768 / q)``.

    Linear like samplernn-pytorch's dequantisation (code ``q/2`` is 0); for ``q = 256`` it is ``(code - 128) *
    256``. Every code in ``[0, q)`` maps into ``[-32768, 32767]``.

    Parameters
    ----------
    codes : int array
        Codes in ``[0, q_levels)``.
    q_levels : int
        Levels, 2 to 65536.

    Returns
    -------
    int16 array of the shape of ``codes``.
    """
    q_levels = check_int("q_levels", q_levels, 2, 1 << 16)
    codes = np.asarray(codes)
    if not np.issubdtype(codes.dtype, np.integer) or (codes.size and (codes.min() < 0 or codes.max() >= q_levels)):
        raise ValueError(f"codes must be integers in [0, {q_levels}), not {codes.dtype} "
                         f"{'' if codes.size == 0 else f'in [{codes.min()}, {codes.max()}]'}")
    return ((2 * codes.astype(np.int64) - q_levels) * 32768 // q_levels).astype(np.int16)
