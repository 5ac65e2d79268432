# amaranth: UnusedElaboratable=no
"""rtl/samplernn.py: whole-generator runs against SampleRNNFixed.generate, cycles against perf.samplernn_timing."""

import numpy as np
import pytest

from wavefabric.model.fixed import QFormat
from wavefabric.model.formats import FormatsError
from wavefabric.model.perf import samplernn_timing, weightnorm_latency
from wavefabric.model.samplernn import (
    FRAC_MIN,
    SampleRNNConfig,
    SampleRNNFixed,
    SampleRNNFormats,
    SampleRNNParams,
    random_state_dict,
)
from wavefabric.rtl.samplernn import LoadRegion, SampleRNNEngine
from wavefabric.sim.samplernn import job_beat, load_frames, run_samplernn, table_image
from wavefabric.sim.streams import AxiReadMemory, run_streams, vcd_hint

SMALL = SampleRNNConfig(frame_sizes=(4, 2), n_rnn=1, dim=8, q_levels=16)
SMALL_UNIT = dict(lanes=2, simd=4, gru_lanes=2)


def fixed_model(config: SampleRNNConfig, seed: int, scale: float = 1.0) -> SampleRNNFixed:
    state = {name: value * (scale if name.endswith(("weight", "weight_g")) else 1.0)
             for name, value in random_state_dict(config, seed).items()}
    return SampleRNNFixed(SampleRNNParams.from_state_dict(config, state))


def check(run, message: str) -> None:
    assert run.bit_exact, (f"{message}: codes {run.codes.tolist()} expected {run.expected.tolist()}; "
                           f"{vcd_hint('samplernn')}")


@pytest.mark.parametrize("latency, n", [(40, 17), (150, 9)])
def test_small_bit_exact_and_cycles(latency, n):
    """Two tiers over two top frames; with latency 150 the DDR fetch is on the critical path."""
    model = fixed_model(SMALL, 0)
    run = run_samplernn(SampleRNNEngine(SMALL, **SMALL_UNIT), model, n, seed=3, latency=latency)
    check(run, f"latency {latency}")
    timing = samplernn_timing(SMALL, **SMALL_UNIT, latency=latency)
    assert (timing.fetch > timing.mlp) == (latency == 150)
    assert run.cycles == timing.total_cycles(n, SMALL.n_frame_samples)
    assert run.ddr_bytes == n * timing.ddr_bytes_per_sample


@pytest.mark.parametrize("seed", [1, 2])
def test_three_tiers_with_stalls_everywhere(seed):
    """Three tiers, two GRU layers, dim 6 (not a multiple of any lane count), 3 lanes; every stream stalls."""
    config = SampleRNNConfig(frame_sizes=(2, 2, 2), n_rnn=2, dim=6, q_levels=8)
    run = run_samplernn(SampleRNNEngine(config, lanes=3, simd=4, gru_lanes=2), fixed_model(config, seed), 20,
                        seed=seed, temperature=0.7, latency=7, stall_seed=seed, p_valid=0.6, p_ready=0.5)
    check(run, f"seed {seed}")


@pytest.mark.parametrize("name, config, temperature, scale", [
    # Two levels, one tier, a table row of one 64-bit word (the partial sums' read-modify-write every cycle).
    ("smallest", SampleRNNConfig(frame_sizes=(2,), n_rnn=1, dim=3, q_levels=2), 1.0, 1.0),
    # Weights eight times their range: activations and logits saturate.
    ("saturation", SMALL, 1.0, 8.0),
    ("coldest", SMALL, 1 / 4096, 1.0),
    ("hottest", SMALL, 65535 / 4096, 1.0),
])
def test_edge_cases(name, config, temperature, scale):
    run = run_samplernn(SampleRNNEngine(config, **SMALL_UNIT), fixed_model(config, 5, scale), 10, seed=7,
                        temperature=temperature)
    check(run, name)
    assert any(run.saturated.values()) == (name == "saturation")


def random_formats(config: SampleRNNConfig, rng: np.random.Generator) -> SampleRNNFormats:
    """Legal per-layer formats drawn at random: every frac uniform over its range, redrawn until every shift is
    one the hardware takes."""
    while True:
        frac = {name: int(rng.integers(FRAC_MIN, 16)) for name in SampleRNNFormats.names(config)}
        frac.update({f"tier{k}.upsampling": config.numerics.act.frac for k in range(1, config.n_tiers)})
        try:
            return SampleRNNFormats(config, frac)
        except FormatsError:
            continue


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_run_time_formats(seed):
    """Per-layer formats as run-time configuration: random legal formats (one bitstream for all of them; of 40
    draws, the one whose shifts spread widest), bit-exact with the model built with them, saturation flags
    included, every stream stalling."""
    rng = np.random.default_rng(seed)
    params = SampleRNNParams.from_state_dict(SMALL, random_state_dict(SMALL, seed))
    engine = SampleRNNEngine(SMALL, **SMALL_UNIT)
    formats = [random_formats(SMALL, rng) for _ in range(40)]
    shifts = [f.shifts() for f in formats]
    spread = [max(s.values()) - min(s.values()) for s in shifts]
    model = SampleRNNFixed(params, formats=formats[int(np.argmax(spread))])
    run = run_samplernn(engine, model, 9, seed=seed, temperature=0.8, p_valid=0.7, p_ready=0.7, stall_seed=seed)
    check(run, f"seed {seed}, formats {dict(model.formats.frac)}")


def test_jobs_restart_from_h0():
    """A second job starts afresh (h0, history, sampler state): it equals a fresh generation."""
    model = fixed_model(SMALL, 4)
    engine = SampleRNNEngine(SMALL, **SMALL_UNIT)
    jobs = [(5, 1, 1.0), (11, 2, 0.5)]
    run = run_streams(engine, {"load": load_frames(engine, model), "cmd": [job_beat(*job) for job in jobs]},
                      {"out": 16}, waits={"cmd": (0, "load")},
                      memories={"ddr": AxiReadMemory(table_image(engine.layout, model))}, max_cycles=100_000)
    codes = [beat["code"] for beat in run.outputs["out"]]
    assert codes == np.concatenate([model.generate(*job) for job in jobs]).tolist()
    assert [beat["last"] for beat in run.outputs["out"]].count(1) == 2
    assert not run.flags["error"]


def test_load_framing_error_is_sticky():
    model = fixed_model(SMALL, 0)
    engine = SampleRNNEngine(SMALL, **SMALL_UNIT)
    load = load_frames(engine, model)
    h0 = np.flatnonzero(load["region"] == LoadRegion.H0)
    load["last"][h0[0]] = True  # the h0 frame ends a beat early
    run = run_streams(engine, {"load": load}, {}, tail=2)
    assert run.flags["error"] == 1


def test_plain_weights_without_weight_norm():
    """A checkpoint without weight norm: no loader, the matrices load as they are (MATVEC_WEIGHTS)."""
    config = SampleRNNConfig(frame_sizes=(4, 2), n_rnn=1, dim=8, q_levels=16, weight_norm=False)
    engine = SampleRNNEngine(config, **SMALL_UNIT)
    assert engine.loader is None and LoadRegion.MATVEC_NORMED not in engine.regions
    load = load_frames(engine, fixed_model(config, 2))
    assert LoadRegion.MATVEC_WEIGHTS in load["region"]
    check(run_samplernn(engine, fixed_model(config, 2), 9, seed=4), "weight_norm=False")


def test_job_waits_for_the_weight_loader():
    """With (g, v) as the last frame, the loader still writes the unit after the load stream ends: the job waits
    for it (cmd.ready low) and is bit-exact."""
    model = fixed_model(SMALL, 8)
    engine = SampleRNNEngine(SMALL, **SMALL_UNIT)
    load = load_frames(engine, model)
    order = np.argsort(load["region"] == LoadRegion.MATVEC_NORMED, kind="stable")
    load = {key: column[order] for key, column in load.items()}
    run = run_streams(engine, {"load": load, "cmd": [job_beat(6, 1, 1.0)]}, {"out": 6}, waits={"cmd": (0, "load")},
                      memories={"ddr": AxiReadMemory(table_image(engine.layout, model))}, max_cycles=50_000,
                      name="samplernn_loader_last")
    # The last row leaves the weight-norm unit no sooner than its latency after its last v beat.
    assert run.times["cmd"][0] - run.times["load"][-1] > weightnorm_latency(), vcd_hint("samplernn_loader_last")
    assert [beat["code"] for beat in run.outputs["out"]] == model.generate(6, 1).tolist(), \
        vcd_hint("samplernn_loader_last")
    assert not run.flags["error"] and not run.flags["zero_row"]


def test_loader_flags():
    """A zero v row raises zero_row (not error); a g beat's frac outside the loader's range sets error."""
    state = random_state_dict(SMALL, 1)
    state["sample_level_mlp.hidden.weight_v"][3] = 0.0
    # Not folded, and formats not chosen by running the float model: the float weight of a zero row would divide
    # by zero (the fixed-point model gives zeros).
    model = SampleRNNFixed(SampleRNNParams.from_state_dict(SMALL, state, fold_weight_norm=False),
                           formats=SampleRNNFormats.default(SMALL))
    engine = SampleRNNEngine(SMALL, **SMALL_UNIT)
    load = load_frames(engine, model)
    run = run_streams(engine, {"load": load}, {}, tail=engine.loader.cycles, name="samplernn_zero_row")
    assert (run.flags["zero_row"], run.flags["error"]) == (1, 0), vcd_hint("samplernn_zero_row")
    first_g = np.flatnonzero(load["region"] == LoadRegion.MATVEC_NORMED)[0]
    load["data"][first_g][1] = engine.loader.g_frac_max + 1
    run = run_streams(engine, {"load": load}, {}, tail=engine.loader.cycles, name="samplernn_g_frac")
    assert run.flags["error"] == 1, vcd_hint("samplernn_g_frac")


@pytest.mark.parametrize("config, kwargs, word", [
    (SampleRNNConfig(frame_sizes=(1, 4)), {}, "frame_sizes"),
    (SampleRNNConfig(table=QFormat(18, 12)), {}, "table"),
    (SampleRNNConfig(logits=QFormat(18, 10)), {}, "logits"),
    (SMALL, dict(simd=2), "simd"),
    (SMALL, dict(simd=6), "simd"),
    (SMALL, dict(lanes=0), "lanes"),
    (SMALL, dict(fifo_depth=1), "fifo_depth"),
])
def test_bad_parameters(config, kwargs, word):
    with pytest.raises(ValueError, match=word):
        SampleRNNEngine(config, **kwargs)


@pytest.mark.parametrize("config, unit, n", [
    (SampleRNNConfig(), {}, 1024),                                                      # 64 ms at 16 kHz
    (SampleRNNConfig(frame_sizes=(4, 2, 2), n_rnn=1, dim=32), dict(lanes=4, gru_lanes=4), 600),
])
def test_verilator(config, unit, n):
    """The seed configuration for a quarter second, and a three-tier one, on the compiled exported Verilog."""
    model = fixed_model(config, 0)
    run = run_samplernn(SampleRNNEngine(config, **unit), model, n, seed=9, backend="verilator")
    check(run, "verilator")
    assert run.cycles == samplernn_timing(config, **unit).total_cycles(n, config.n_frame_samples)


def test_vivado_verilog_matches_amaranth():
    """The Verilog as exported for Vivado (with its reset) runs cycle for cycle as Amaranth's simulation does."""
    model = fixed_model(SMALL, 6)
    runs = [run_samplernn(SampleRNNEngine(SMALL, **SMALL_UNIT), model, 9, seed=2, stall_seed=3, p_valid=0.7,
                          p_ready=0.7, backend=backend, vivado_verilog=backend == "verilator")
            for backend in ("amaranth", "verilator")]
    for run in runs:
        check(run, run.streams.backend)
    assert all(np.array_equal(runs[0].streams.times[s], runs[1].streams.times[s]) for s in ("load", "cmd", "out"))
