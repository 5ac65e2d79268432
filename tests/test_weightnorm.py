# amaranth: UnusedElaboratable=no
"""WeightNormUnit against model.kernels.weight_norm: bit-exact, stalls, cycle model, parameter checks.

A failing simulation test names its seed; ``WAVEFABRIC_VCD=DIR pytest tests/test_weightnorm.py -k NAME`` writes
its trace to ``DIR``.
"""

import numpy as np
import pytest

from wavefabric.model.fixed import QFormat, bit_length, shift_round
from wavefabric.model.kernels import RsqrtFormat, weight_norm
from wavefabric.model.perf import weightnorm_cycles, weightnorm_latency
from wavefabric.rtl.weightnorm import WeightNormUnit
from wavefabric.sim.streams import run_streams, vcd_hint
from wavefabric.sim.weightnorm import (
    relative_error,
    run_weightnorm,
    simulate_weightnorm,
    weightnorm_beats,
    weightnorm_operands,
    weightnorm_result,
)

G_FMT = QFormat(16, 12)
OUT_FMT = QFormat(16, 14)


def check(unit: WeightNormUnit, v, g, *, seed: int, name: str, p_valid: float = 1.0, p_ready: float = 1.0,
          backend: str = "amaranth"):
    """Run ``(v, g)`` through ``unit`` and assert bit-exactness, framing, the zero flag and (unstalled) cycles."""
    v = np.asarray(v, dtype=np.int64)
    g = np.asarray(g, dtype=np.int64)
    run = run_weightnorm(unit, v, g, seed=seed, p_valid=p_valid, p_ready=p_ready, name=name, backend=backend)
    expected, zero_rows = weight_norm(v, g, unit.g_fmt, unit.out_fmt, unit.rsqrt_fmt)
    where = f"seed {seed}; {vcd_hint(name)}"
    assert np.array_equal(run.result, expected), f"w differs from the model in rows " \
        f"{np.flatnonzero((run.result != expected).any(axis=1)).tolist()} ({where})"
    assert run.framing_ok, f"first/last or padding lanes wrong ({where})"
    assert run.zero_row == bool(zero_rows.any()), f"zero_row flag {run.zero_row} ({where})"
    if p_valid == 1 and p_ready == 1:
        model = weightnorm_cycles(v.shape[0], v.shape[1], unit.lanes, unit.rsqrt_fmt.newton_steps)
        assert run.cycles == model, f"{run.cycles} cycles, model {model} ({where})"
    return run


def test_random_rows_each_with_its_own_norm():
    """Every row has a different norm: a sum of squares taken over the wrong index (the HLS bug) fails this."""
    seed = 11
    v, g = weightnorm_operands(16, 48, seed)
    norms = np.sum(v * v, axis=1)
    assert len(set(norms.tolist())) == len(norms)
    check(WeightNormUnit(48, 4), v, g, seed=seed, name="weightnorm_random")
    # Each row's result depends on its own norm: dividing by a neighbour's norm (the HLS bug) changes every row.
    w, _ = weight_norm(v, g, G_FMT, OUT_FMT)
    norms = np.sqrt(np.sum(v.astype(np.float64) ** 2, axis=1))
    wrong = OUT_FMT.quantize(g[:, None] * G_FMT.lsb * v / np.roll(norms, 1)[:, None])
    assert (wrong != w).any(axis=1).all()


def edge_rows(cols: int) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = -(1 << 15), (1 << 15) - 1
    rows, gains = [], []

    def row(values, g):
        r = np.zeros(cols, dtype=np.int64)
        r[:len(values)] = values
        rows.append(r)
        gains.append(g)

    row([lo] * cols, 4096)                  # full scale, every element -32768
    row([hi] * cols, -4096)
    row([lo] * cols, G_FMT.min_int)         # |w| = 8 / sqrt(cols) saturates Q2.14 for short rows
    row([0] * (cols - 1) + [lo], G_FMT.max_int)   # one non-zero element: w = g, saturated
    row([lo], 5000)
    row([1], 4096)                          # tiny norms at the format's floor
    row([-1], -7000)
    row([1, -1, 1], 3000)
    row([0, 0, 2], 1)                       # smallest non-zero g
    row([0] * cols, 4096)                   # zero rows: zeros and the sticky flag
    row([hi, 1, lo, 0, 3], 0)               # zero gain
    row([0] * cols, -100)
    return np.array(rows), np.array(gains)


def test_edge_rows(backend):
    v, g = edge_rows(9)
    run = check(WeightNormUnit(9, 4), v, g, seed=5, name="weightnorm_edges", backend=backend)
    assert run.zero_row
    assert not run.result[[9, 11]].any()


@pytest.mark.parametrize("max_row_length, lanes, cols", [
    (1, 1, 1),      # the smallest unit
    (9, 1, 9),      # one lane, longest row
    (9, 1, 1),      # one lane, shortest row
    (9, 9, 9),      # lanes = max_row_length: a row per beat
    (9, 9, 2),
    (10, 3, 10),    # lanes not dividing the row: a partial last beat
    (10, 3, 7),
    (64, 16, 64),
])
def test_row_lengths_and_lanes(max_row_length, lanes, cols):
    seed = max_row_length * 100 + lanes * 10 + cols
    v, g = weightnorm_operands(7, cols, seed)
    v[3] = 0
    check(WeightNormUnit(max_row_length, lanes), v, g, seed=seed,
          name=f"weightnorm_{max_row_length}_{lanes}_{cols}")


@pytest.mark.parametrize("seed, max_row_length, lanes, cols, rows, p_valid, p_ready", [
    (1, 12, 3, 10, 9, 0.5, 0.45),
    (2, 12, 3, 12, 9, 0.7, 0.6),
    (3, 5, 1, 5, 8, 0.5, 0.5),
    (4, 12, 3, 10, 24, 0.9, 0.15),   # w mostly stalled: the row buffer fills and holds v back
    (5, 4, 4, 3, 40, 0.9, 0.15),     # one-beat rows, w mostly stalled: the scale queue fills and holds v back
    (6, 64, 16, 64, 6, 0.6, 0.6),
])
def test_random_stalls_on_every_stream(seed, max_row_length, lanes, cols, rows, p_valid, p_ready, backend):
    """Random gaps on v and g and random stalls on w: nothing lost, duplicated or reordered."""
    v, g = weightnorm_operands(rows, cols, seed)
    v[seed % rows] = 0
    check(WeightNormUnit(max_row_length, lanes), v, g, seed=seed, p_valid=p_valid, p_ready=p_ready,
          name=f"weightnorm_stalls_{seed}", backend=backend)


@pytest.mark.parametrize("rsqrt_fmt", [
    RsqrtFormat(newton_steps=0),
    RsqrtFormat(mant_bits=12, seed_bits=4, frac=10, newton_steps=1),
    RsqrtFormat(mant_bits=8, seed_bits=3, frac=5, newton_steps=3),   # frac < 6: the scale is shifted left
    RsqrtFormat(mant_bits=32, seed_bits=8, frac=20, newton_steps=2),
])
def test_rsqrt_formats(rsqrt_fmt):
    v, g = weightnorm_operands(10, 6, 7)
    unit = WeightNormUnit(8, 2, rsqrt_fmt=rsqrt_fmt)
    assert unit.latency == weightnorm_latency(rsqrt_fmt.newton_steps)
    check(unit, v, g, seed=7, name=f"weightnorm_rsqrt_{rsqrt_fmt.newton_steps}")


def test_other_formats():
    """Narrow v, a 17-bit g with many fractional bits, an output with few."""
    g_fmt, out_fmt = QFormat(17, 16), QFormat(12, 6)
    v, g = weightnorm_operands(8, 5, 3, v_width=8, g_fmt=g_fmt)
    check(WeightNormUnit(5, 2, v_width=8, g_fmt=g_fmt, out_fmt=out_fmt), v, g, seed=3, name="weightnorm_formats")


def test_back_to_back_tensors_and_clear():
    """Two tensors of different row lengths follow each other at once (``row_length`` changes a cycle before the
    second's first beat); the zero flag of the first holds to the end, unless ``clear`` rises once the first
    tensor's rows are out."""
    unit = WeightNormUnit(8, 3)
    (v1, g1), (v2, g2) = weightnorm_operands(5, 8, 1), weightnorm_operands(6, 2, 2)
    v1[2] = 0
    beats = [weightnorm_beats(v, unit.lanes, np.random.default_rng(0)) for v in (v1, v2)]
    second = len(beats[0])
    for clear in (False, True):
        name = f"weightnorm_back_to_back_clear{int(clear)}"
        changes = {"row_length": [("v", second, v2.shape[1])]}
        waits = None
        if clear:
            changes["clear"] = [("v", second, 1)]
            waits = {"v": [(second, "w", 5 * 3)]}
        run = run_streams(unit, {"v": beats[0] + beats[1], "g": g1.tolist() + g2.tolist()}, {"w": 5 * 3 + 6 * 1},
                          {"row_length": v1.shape[1]}, waits=waits, changes=changes, name=name)
        got = run.outputs["w"]
        for part, v, g in ((got[:15], v1, g1), (got[15:], v2, g2)):
            w, framing_ok = weightnorm_result(part, *v.shape, unit.lanes)
            assert np.array_equal(w, weight_norm(v, g, G_FMT, OUT_FMT)[0]) and framing_ok, vcd_hint(name)
        assert run.flags["zero_row"] == (not clear), vcd_hint(name)


def test_simulate_weightnorm_report():
    report = simulate_weightnorm(6, 20, 4, seed=9)
    assert report["bit_exact"] and report["cycles"] == report["model_cycles"]
    assert 0 < report["max_rel_error"] < 1e-4
    assert set(report) >= {"cycles", "model_cycles", "bit_exact", "max_rel_error"}


def test_float_relative_error_documented():
    """The error figure quoted in WeightNormUnit's docstring (the model's; the RTL is bit-exact with it)."""
    worst = 0.0
    for cols in range(1, 65):
        v, g = weightnorm_operands(500, cols, cols)
        w, _ = weight_norm(v, g, G_FMT, OUT_FMT)
        worst = max(worst, relative_error(w, v, g, G_FMT, OUT_FMT))
    assert 6e-5 < worst < 7e-5


@pytest.mark.parametrize("fmt", [RsqrtFormat(), RsqrtFormat(mant_bits=12, seed_bits=4, frac=10, newton_steps=1),
                                 RsqrtFormat(mant_bits=8, seed_bits=3, frac=5, newton_steps=3)])
def test_rsqrt_register_widths_every_mantissa(fmt):
    """The unsigned widths of the RTL's Newton registers hold every intermediate, for every mantissa."""
    f, mant = fmt.frac, fmt.mant_bits
    m = np.arange(1 << (mant - 2), 1 << mant, dtype=np.int64)
    y = fmt.seed_table[m >> (mant - fmt.seed_bits)]
    assert y.max() < 1 << (f + 1)
    for _ in range(fmt.newton_steps):
        y2 = shift_round(y * y, f)
        my2 = shift_round(m * y2, mant)
        assert y2.max() < 1 << (f + 3)
        assert 0 < (3 << f) - my2.max() and (3 << f) - my2.min() < 1 << (f + 2)
        y = shift_round(y * ((3 << f) - my2), f + 1)
        assert 0 < y.min() and y.max() <= (2 << f) + 2


def test_sum_of_squares_cannot_overflow():
    """The accumulator holds a full-scale row of the longest length; the normalising shift covers it."""
    unit = WeightNormUnit(4096, 16)
    full = 4096 * (1 << 30)
    assert full < 1 << unit.ss_width
    assert unit.max_half_k == (int(bit_length(full)) + 1) // 2
    assert unit.buffer_depth >= unit.beats_per_row_max + unit.latency - 3


@pytest.mark.parametrize("kwargs, match", [
    ({"max_row_length": 0}, "max_row_length"),
    ({"max_row_length": 2.5}, "max_row_length"),
    ({"max_row_length": 1 << 40}, "max_row_length"),
    ({"max_row_length": 8, "lanes": 0}, "lanes"),
    ({"max_row_length": 8, "lanes": 9}, "lanes"),
    ({"max_row_length": 8, "v_width": 19}, "v_width"),
    ({"max_row_length": 8, "v_width": 1}, "v_width"),
    ({"max_row_length": 8, "g_fmt": QFormat(18, 12)}, "g_fmt"),
    ({"max_row_length": 8, "g_fmt": (16, 12)}, "g_fmt"),
    ({"max_row_length": 8, "g_fmt": QFormat(16, 8), "out_fmt": QFormat(16, 14)}, "out_fmt"),
    ({"max_row_length": 8, "rsqrt_fmt": 16}, "rsqrt_fmt"),
])
def test_parameter_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WeightNormUnit(**kwargs)


def test_cycle_model():
    assert weightnorm_latency() == 16
    assert weightnorm_cycles(64, 64, 16) == 64 * 4 + 4 + 16 - 1
    assert weightnorm_cycles(3, 7, 3, newton_steps=0) == 3 * 3 + 3 + 10 - 1
    for bad in ({"rows": 0}, {"cols": 0}, {"lanes": True}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            weightnorm_cycles(**{"rows": 1, "cols": 1, "lanes": 1, **bad})
    with pytest.raises(ValueError, match="newton_steps"):
        weightnorm_latency(-1)


def test_run_time_g_format():
    """With ``g_frac_max`` each row's g format comes from the ``g_frac`` port: bit-exact row by row, back to back."""
    seed, rows, cols, lanes = 17, 12, 7, 3
    unit = WeightNormUnit(cols, lanes, g_fmt=QFormat(16, 9), g_frac_max=32)
    rng = np.random.default_rng(seed)
    v, g = weightnorm_operands(rows, cols, seed)
    fracs = rng.integers(9, 33, rows)
    fracs[:3] = [9, 32, 14]
    beats = weightnorm_beats(v, lanes, rng)
    # g_frac belongs to the g beat being offered (the unit samples it with the beat): each beat changes it.
    run = run_streams(unit, {"v": beats, "g": g.tolist()}, {"w": len(beats)}, {"row_length": cols},
                      changes={"g_frac": [("g", r, int(frac)) for r, frac in enumerate(fracs)]},
                      name="weightnorm_g_frac")
    result, framing_ok = weightnorm_result(run.outputs["w"], rows, cols, lanes)
    expected = np.concatenate([weight_norm(v[r:r + 1], g[r:r + 1], QFormat(16, int(fracs[r])), OUT_FMT)[0]
                               for r in range(rows)])
    assert framing_ok and np.array_equal(result, expected), f"seed {seed}; {vcd_hint('weightnorm_g_frac')}"
    with pytest.raises(ValueError, match="g_frac_max must be None or an integer from g_fmt.frac = 9 to 73"):
        WeightNormUnit(cols, lanes, g_fmt=QFormat(16, 9), g_frac_max=8)
