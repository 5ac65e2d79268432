# amaranth: UnusedElaboratable=no
"""The Verilator backend: payload packing, the build cache, lint of every engine, cross-simulation against
Amaranth's simulator cycle for cycle, and the long runs only a compiled model can afford."""

import json
import subprocess
import time

import numpy as np
import pytest
from amaranth.hdl import Module, signed
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from wavefabric.cli import main
from wavefabric.model.kernels import Numerics
from wavefabric.model.perf import gemm_cycles, gru_step_cycles, gru_step_latency, pwg_layer_cycles, weightnorm_cycles
from wavefabric.model.pwg import PWG_NUMERICS
from wavefabric.rtl.conv1d import ResidualEngine
from wavefabric.rtl.dma import MemoryReader, MemoryWriter
from wavefabric.rtl.gemm import GemmEngine
from wavefabric.rtl.gru import GruEngine
from wavefabric.rtl.systolic import SystolicArray
from wavefabric.rtl.weightnorm import WeightNormUnit
from wavefabric.sim import verilator
from wavefabric.sim.gemm import gemm_columns, simulate_gemm
from wavefabric.sim.gru import gru_reference, gru_streams, random_gru_params, run_gru
from wavefabric.sim.pwg import (
    LayerJob,
    layer_streams,
    random_residual_layer,
    random_upsample_table,
    run_residual_layer,
    run_residual_layers,
    table_beats,
)
from wavefabric.sim.streams import StreamRun, component_ports, pack, run_streams, unpack
from wavefabric.sim.weightnorm import weightnorm_beats, weightnorm_operands


class Kind(enum.Enum, shape=2):
    A = 0
    B = 3


WIDE = data.StructLayout({"lanes": data.ArrayLayout(signed(18), 5), "kind": Kind, "big": 64, "tag": signed(3)})


class Accumulate(wiring.Component):
    """A stream register with a running sum and a sticky flag: a small component with every kind of port."""

    i: In(stream.Signature(WIDE))
    o: Out(stream.Signature(WIDE))
    scale: In(signed(4))
    seen_b: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(self.i.payload),
                         self.o.payload.tag.eq(self.i.payload.tag * self.scale)]
            with m.If(self.i.payload.kind == Kind.B):
                m.d.sync += self.seen_b.eq(1)
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m


def wide_beats(count: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"lanes": rng.integers(-2**17, 2**17, 5).tolist(), "kind": Kind.B if rng.random() < 0.1 else Kind.A,
             "big": int(rng.integers(0, 2**63)) * 2 + 1, "tag": int(rng.integers(-4, 4))} for _ in range(count)]


def test_pack_and_unpack_are_inverse():
    beats = wide_beats(50, 1)
    words = pack(WIDE, beats)
    assert words.shape == (50, 5) and words.dtype == np.uint32  # 5 * 18 + 2 + 64 + 3 = 159 bits
    back = unpack(WIDE, words)
    assert back == [beat | {"kind": beat["kind"].value} for beat in beats]
    # Columns pack exactly like the Python values they stand for.
    columns = {"lanes": np.array([b["lanes"] for b in beats]), "kind": np.array([b["kind"].value for b in beats]),
               "big": np.array([b["big"] for b in beats], dtype=np.uint64).view(np.int64),
               "tag": np.array([b["tag"] for b in beats])}
    assert np.array_equal(pack(WIDE, columns), words)
    assert unpack(signed(7), pack(signed(7), [-64, 63, -1, 0])) == [-64, 63, -1, 0]


@pytest.mark.parametrize("p_valid, p_ready", [(1.0, 1.0), (0.5, 0.4)])
def test_both_backends_agree_on_every_kind_of_port(p_valid, p_ready):
    beats = wide_beats(60, 2)
    runs = [run_streams(Accumulate(), {"i": beats}, {"o": 60}, {"scale": -3}, seed=7, p_valid=p_valid,
                        p_ready=p_ready, tail=1, backend=backend) for backend in ("amaranth", "verilator")]
    assert not runs[0].differences(runs[1])
    expected = [b | {"kind": b["kind"].value, "tag": (b["tag"] * -3 + 4) % 8 - 4} for b in beats]
    assert runs[0].outputs["o"] == expected
    assert runs[0].flags == {"seen_b": 1}
    assert (runs[0].cycles == 61) == (p_valid == p_ready == 1)


def test_progress_reports_on_both_backends(monkeypatch):
    """A long run reports its output beats now and then, in order, on either backend."""
    from wavefabric.sim import streams

    monkeypatch.setattr(streams, "AMARANTH_PROGRESS_CYCLES", 64)
    for backend, every in (("amaranth", 64), ("verilator", verilator.PROGRESS_CYCLES)):
        count = every + every // 8  # ready one cycle in three: past three reports
        seen = []
        run_streams(Accumulate(), {"i": wide_beats(count, 4)}, {"o": count}, p_ready=0.33, seed=1, backend=backend,
                    progress=seen.append, max_cycles=10 * count)
        assert len(seen) >= 3 and seen == sorted(seen) and 0 < seen[-1] <= count, backend


def test_timeout_on_both_backends():
    for backend in ("amaranth", "verilator"):
        with pytest.raises(TimeoutError, match="o.: .2/3"):
            run_streams(Accumulate(), {"i": wide_beats(2, 3)}, {"o": 3}, max_cycles=50, backend=backend)


def test_build_is_cached_and_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv(verilator.CACHE_ENV, str(tmp_path))
    component = Accumulate()
    ports = component_ports(component)
    source = verilator.to_verilog(component, verilator.TOP)
    parts = source, verilator.harness(*ports)
    first = verilator.build(*parts)
    assert first.parent.parent == tmp_path / "verilator"
    start = time.perf_counter()
    assert verilator.build(*parts) == first
    assert time.perf_counter() - start < 1
    assert [p.name for p in (tmp_path / "verilator").iterdir()] == [first.parent.name]  # no temporary left
    assert sorted(p.name for p in first.parent.iterdir()) == sorted(
        ["driver.cpp", f"{verilator.TOP}.v", "model", "waivers.vlt"])


def test_the_package_verilator_is_used(monkeypatch, tmp_path):
    """A ``verilator`` on PATH is never run: the command is the package's own script under Perl."""
    fake = tmp_path / "verilator"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    command = verilator.verilator_command("--version")
    assert command[1] == str(verilator.verilator_root() / "bin" / "verilator")
    done = subprocess.run(command, env=verilator._environment(), capture_output=True, text=True)
    assert done.returncode == 0 and "rev" in done.stdout


PWG_SMALL = {"residual": 4, "gate": 8, "skip": 4}

ENGINES = {
    "systolic": lambda: SystolicArray(3, 2, max_k=16),
    "gemm": lambda: GemmEngine(2, 3, max_m=5, max_n=7, max_k=9),
    "gemm_1x1": lambda: GemmEngine(1, 1, max_m=3, max_n=2, max_k=4),  # zero-width counters
    "weightnorm": lambda: WeightNormUnit(12, 3),
    "gru": lambda: GruEngine(3, 4, 2, 2, 2),
    "gru_seed": lambda: GruEngine(64, 64, 2, 8, 8),
    "pwg": lambda: ResidualEngine(2, 4, **PWG_SMALL, hop=4, max_dilation=4, max_frames=8),
    # Records wider than the bus, and narrower than a 32-bit bus with one burst in flight.
    "dma_reader": lambda: MemoryReader(data.ArrayLayout(signed(16), 21), max_records=300),
    "dma_writer": lambda: MemoryWriter(data.ArrayLayout(signed(16), 21), max_records=300),
    "dma_narrow": lambda: MemoryReader(signed(16), data_width=32, max_records=5, outstanding=1),
}


@pytest.mark.parametrize("engine", ENGINES)
def test_verilog_lints_clean(engine):
    """``verilator --lint-only -Wall`` finds nothing beyond the documented waivers."""
    assert verilator.lint(ENGINES[engine]()) == []


def both(component_factory, **kwargs) -> StreamRun:
    """Run on Amaranth, on Verilator, and on Verilator from the Verilog exactly as exported for Vivado (with its
    ``rst`` input); assert that all three agree cycle for cycle, and return the Amaranth run."""
    runs = [run_streams(component_factory(), backend=backend, **kwargs) for backend in ("amaranth", "verilator")]
    runs.append(run_streams(component_factory(), backend="verilator", vivado_verilog=True, **kwargs))
    assert not runs[0].differences(runs[1])
    assert not runs[0].differences(runs[2])
    return runs[0]


def test_exported_verilog_of_gru_and_pwg_layer():
    """The Verilog users take to Vivado (with ``rst``) runs the same as the Amaranth source, for the GRU engine
    and the PWG layer engine too (the other engines go through :func:`both`)."""
    params, h0, xs = gru_case(3, 4, 2, steps=3, seed=21)
    gru = ENGINES["gru"]()
    kwargs, _ = gru_streams(gru.geometry, params, h0, xs)
    both(ENGINES["gru"], **kwargs, seed=22, p_valid=0.7, p_ready=0.7)
    rng = np.random.default_rng(23)
    engine = ENGINES["pwg"]()
    layer = random_residual_layer(rng, **PWG_SMALL, kernel_size=3, dilation=2, num=PWG_NUMERICS)
    x, a, skip_in = (rng.integers(-2000, 2000, shape) for shape in ((4, 12), (8, 3), (4, 12)))
    inputs, outputs = layer_streams(engine, LayerJob(layer, x, a, skip_in))
    inputs["table"] = table_beats(engine, random_upsample_table(rng, engine))
    both(ENGINES["pwg"], inputs=inputs, outputs=outputs, statics={"frames": 3, "dilation": 2}, seed=24)


@pytest.mark.parametrize("p", [1.0, 0.6])
def test_cross_simulation_systolic(p):
    rows, cols, k, tiles = 3, 2, 4, 5
    rng = np.random.default_rng(11)
    beats = [{"a": rng.integers(-2**15, 2**15, rows).tolist(), "b": rng.integers(-2**15, 2**15, cols).tolist(),
              "first": kk == 0, "last": kk == k - 1} for _ in range(tiles) for kk in range(k)]
    run = both(ENGINES["systolic"], inputs={"i": beats}, outputs={"o": tiles * rows}, seed=4, p_valid=p, p_ready=p)
    a = np.array([b["a"] for b in beats]).reshape(tiles, k, rows)
    b = np.array([b["b"] for b in beats]).reshape(tiles, k, cols)
    sums = np.array([o["data"] for o in run.outputs["o"]]).reshape(tiles, rows, cols)
    assert np.array_equal(sums, np.einsum("tki,tkj->tij", a, b))


@pytest.mark.parametrize("p", [1.0, 0.5])
def test_cross_simulation_gemm(p):
    rows, cols, m, n, k = 2, 3, 5, 7, 9
    rng = np.random.default_rng(12)
    a, b, bias = rng.integers(-2**15, 2**15, (m, k)), rng.integers(-2**15, 2**15, (k, n)), rng.integers(-99, 99, m)
    a_cols, b_cols, bias_cols = gemm_columns(a, b, bias, rows, cols)
    run = both(ENGINES["gemm"], inputs={"a": a_cols, "b": b_cols, "bias": bias_cols}, outputs={"c": 3 * m},
               statics={"m": m, "n": n, "k": k}, seed=5, p_valid=p, p_ready=p, tail=1)
    assert run.flags == {"error": 0}
    assert (run.cycles == gemm_cycles(rows, cols, m, n, k)) == (p == 1)


@pytest.mark.parametrize("p", [1.0, 0.5])
def test_cross_simulation_weightnorm(p):
    v, g = weightnorm_operands(9, 10, seed=3)
    v[4] = 0
    beats = weightnorm_beats(v, 3, np.random.default_rng(3))
    run = both(ENGINES["weightnorm"], inputs={"v": beats, "g": g}, outputs={"w": len(beats)},
               statics={"row_length": 10}, seed=6, p_valid=p, p_ready=p)
    assert run.flags == {"zero_row": 1}
    assert (run.cycles == weightnorm_cycles(9, 10, 3)) == (p == 1)


def gru_case(input_size, hidden, layers, steps, seed, num=Numerics()):
    rng = np.random.default_rng(seed)
    params = random_gru_params(input_size, hidden, layers, num, rng)
    h0 = num.act.quantize(rng.uniform(-1, 1, (layers, hidden)))
    xs = num.act.quantize(rng.uniform(-1, 1, (steps, input_size)))
    return params, h0, xs


@pytest.mark.parametrize("p", [1.0, 0.5])
def test_cross_simulation_gru(p):
    """``run_gru`` on both backends, with a state reset mid-sequence: the same run, bit-exact with the model."""
    params, h0, xs = gru_case(3, 4, 2, steps=4, seed=8)
    resets = {2: np.zeros_like(h0)}
    runs = [run_gru(ENGINES["gru"](), params, h0, xs, resets=resets, seed=9, p_valid=p, p_ready=p, backend=backend)
            for backend in ("amaranth", "verilator")]
    assert not runs[0].streams.differences(runs[1].streams)
    run = runs[0]
    assert np.array_equal(run.outputs, gru_reference(params, h0, xs, Numerics(), resets)[0]) and run.framing_ok
    assert p < 1 or run.step_done[0] - run.step_sent[0] == ENGINES["gru"]().latency


def _pwg_model_cycles(engine, job: LayerJob, loads: int) -> int:
    return pwg_layer_cycles(2, 4, job.a.shape[1], engine.hop, job.layer.dilation, gate_lanes=engine.gate_lanes,
                            last=job.last, loads=loads, **PWG_SMALL)


@pytest.mark.parametrize("p", [1.0, 0.5])
def test_cross_simulation_pwg_layer(p):
    """One residual layer whose taps cross blocks and both edges of T, on both backends."""
    num = PWG_NUMERICS
    rng = np.random.default_rng(13)
    engine = ENGINES["pwg"]()
    layer = random_residual_layer(rng, **PWG_SMALL, kernel_size=3, dilation=4, num=num)
    table = random_upsample_table(rng, engine)
    span = 4 << num.act.frac
    job = LayerJob(layer, rng.integers(-span, span, (4, 20)), rng.integers(-span, span, (8, 5)),
                   rng.integers(num.act.min_int, num.act.max_int, (4, 20)))
    runs = [run_residual_layer(engine, job, table, seed=14, p_valid=p, p_ready=p, backend=backend)
            for backend in ("amaranth", "verilator")]
    assert not runs[0].streams.differences(runs[1].streams)
    run = runs[0]
    x_ref, skip_ref = job.model(table, num)
    assert np.array_equal(run.x_next, x_ref) and np.array_equal(run.skip_out, job.skip_in + skip_ref)
    assert run.framing_ok
    assert (run.cycles == _pwg_model_cycles(engine, job, max(5 * engine.gate_tiles, engine.table_beats))) == (p == 1)


@pytest.mark.parametrize("p", [1.0, 0.5])
def test_cross_simulation_pwg_layers(p):
    """Three layers back to back, each with its own dilation and kind (changed mid-run: the last one a last
    layer), on both backends; without stalls every layer takes exactly the cycle model's count."""
    num = PWG_NUMERICS
    rng = np.random.default_rng(15)
    engine = ENGINES["pwg"]()
    table = random_upsample_table(rng, engine)
    span = 4 << num.act.frac
    jobs, skip = [], rng.integers(num.act.min_int // 4, num.act.max_int // 4, (4, 32))
    for dilation, last in ((4, False), (1, False), (2, True)):
        layer = random_residual_layer(rng, **PWG_SMALL, kernel_size=3, dilation=dilation, num=num)
        jobs.append(LayerJob(layer, rng.integers(-span, span, (4, 32)), rng.integers(-span, span, (8, 8)), skip,
                             last=last))
    runs = [run_residual_layers(engine, jobs, table, seed=16, p_valid=p, p_ready=p, backend=backend)
            for backend in ("amaranth", "verilator")]
    assert not runs[0][0].streams.differences(runs[1][0].streams)
    for n, (run, job) in enumerate(zip(runs[0], jobs, strict=True)):
        x_ref, skip_ref = job.model(table, num)
        assert (job.last or np.array_equal(run.x_next, x_ref)) and np.array_equal(run.skip_out, job.skip_in + skip_ref)
        assert run.framing_ok
        loads = 0 if n else max(8 * engine.gate_tiles, engine.table_beats)
        assert (run.cycles == _pwg_model_cycles(engine, job, loads)) == (p == 1)


def test_full_size_gemm_8x8():
    """The 8x8 engine on (128 x 192) @ (192 x 1024): bit-exact with kernels.linear, cycle-exact with the model."""
    result = simulate_gemm(8, 8, 128, 1024, 192, seed=1, backend="verilator")
    assert result["bit_exact"]
    assert result["cycles"] == result["model_cycles"] == gemm_cycles(8, 8, 128, 1024, 192)


def test_thousand_gru_steps_at_the_seed_configuration():
    """1,000 consecutive steps of the seed GRU (64 in, 64 hidden, 2 layers) on the 8 x 8 engine."""
    steps, (input_size, hidden, layers, lanes, simd) = 1000, (64, 64, 2, 8, 8)
    engine = GruEngine(input_size, hidden, layers, lanes, simd)
    params, h0, xs = gru_case(input_size, hidden, layers, steps, seed=10)
    run = run_gru(engine, params, h0, xs, backend="verilator")
    expected, _ = gru_reference(params, h0, xs, engine.num)
    assert np.array_equal(run.outputs, expected) and run.framing_ok
    assert run.step_done[0] - run.step_sent[0] == gru_step_latency(input_size, hidden, layers, lanes, simd)
    assert set(np.diff(run.step_done).tolist()) == {gru_step_cycles(input_size, hidden, layers, lanes, simd)}


# The sizes of ENGINES' gemm, gru and pwg, so that the builds are the cross-simulation tests' (cache hits).
@pytest.mark.parametrize("argv", [
    ["gemm", "--rows", "2", "--cols", "3", "--m", "5", "--n", "7", "--k", "9"],
    ["gru", "--input", "3", "--hidden", "4", "--layers", "2", "--lanes", "2", "--simd", "2", "--steps", "3"],
    ["pwg-layer", "--rows", "2", "--cols", "4", "--residual", "4", "--gate", "8", "--skip", "4", "--hop", "4",
     "--max-dilation", "4", "--max-frames", "8", "--dilation", "4", "--frames", "8"],
], ids=lambda argv: argv[0])
def test_cli_sim_takes_the_backend(capsys, argv):
    """``wavefabric sim ... --backend verilator``: the same figures as Amaranth's, plus the backend's own."""
    figures = {}
    for backend in ("amaranth", "verilator"):
        assert main(["sim", *argv, "--stall", "0.5", "--json", "--backend", backend]) == 0
        figures[backend] = json.loads(capsys.readouterr().out)
    assert figures["verilator"]["backend"] == "verilator" and figures["verilator"]["compile_seconds"] > 0
    assert figures["amaranth"]["backend"] == "amaranth" and figures["amaranth"]["compile_seconds"] == 0
    speeds = {backend: figures[backend].pop("cycles_per_second") for backend in figures}
    assert min(speeds.values()) > 0
    for f in figures.values():
        del f["backend"], f["compile_seconds"]
    assert figures["amaranth"] == figures["verilator"] and figures["amaranth"]["bit_exact"]
