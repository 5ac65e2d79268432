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
from wavefabric.model.perf import gemm_cycles, gru_step_cycles, gru_step_latency, weightnorm_cycles
from wavefabric.rtl.gemm import GemmEngine
from wavefabric.rtl.gru import GruCommand, GruEngine
from wavefabric.rtl.systolic import SystolicArray
from wavefabric.rtl.weightnorm import WeightNormUnit
from wavefabric.sim import verilator
from wavefabric.sim.gemm import gemm_columns, simulate_gemm
from wavefabric.sim.gru import command_beats, gru_reference, random_gru_params, weight_beats
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


def same_run(a: StreamRun, b: StreamRun) -> None:
    """Two runs agree on every output beat, every transfer cycle, every flag and the cycle count."""
    assert a.outputs == b.outputs
    assert a.times.keys() == b.times.keys()
    for name in a.times:
        assert np.array_equal(a.times[name], b.times[name]), f"transfer cycles of {name} differ"
    assert a.flags == b.flags
    assert a.cycles == b.cycles


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
    same_run(*runs)
    expected = [b | {"kind": b["kind"].value, "tag": (b["tag"] * -3 + 4) % 8 - 4} for b in beats]
    assert runs[0].outputs["o"] == expected
    assert runs[0].flags == {"seen_b": 1}
    assert (runs[0].cycles == 61) == (p_valid == p_ready == 1)


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


ENGINES = {
    "systolic": lambda: SystolicArray(3, 2, max_k=16),
    "gemm": lambda: GemmEngine(2, 3, max_m=5, max_n=7, max_k=9),
    "gemm_1x1": lambda: GemmEngine(1, 1, max_m=3, max_n=2, max_k=4),  # zero-width counters
    "weightnorm": lambda: WeightNormUnit(12, 3),
    "gru": lambda: GruEngine(3, 4, 2, 2, 2),
    "gru_seed": lambda: GruEngine(64, 64, 2, 8, 8),
}


@pytest.mark.parametrize("engine", ENGINES)
def test_verilog_lints_clean(engine):
    """``verilator --lint-only -Wall`` finds nothing beyond the documented waivers."""
    assert verilator.lint(ENGINES[engine]()) == []


def both(component_factory, **kwargs) -> StreamRun:
    """Run on both backends, assert that they agree cycle for cycle, and return the Amaranth run."""
    runs = [run_streams(component_factory(), backend=backend, **kwargs) for backend in ("amaranth", "verilator")]
    same_run(*runs)
    return runs[0]


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


def gru_streams(engine: GruEngine, params, h0, xs) -> dict:
    """``run_streams`` arguments for GRU steps: BIAS and STATE, then one STEP per x once every weight is in."""
    geo = engine.geometry
    setup = (command_beats(geo, GruCommand.BIAS, geo.bias_values(params.b_ih, params.b_hh))
             + command_beats(geo, GruCommand.STATE, h0))
    steps = [beat for x in xs for beat in command_beats(geo, GruCommand.STEP, x)]
    return {"inputs": {"weights": weight_beats(geo, params), "cmd": setup + steps},
            "outputs": {"out": len(xs) * geo.h_words}, "waits": {"cmd": (len(setup), "weights")}}


def gru_case(input_size, hidden, layers, steps, seed, num=Numerics()):
    rng = np.random.default_rng(seed)
    params = random_gru_params(input_size, hidden, layers, num, rng)
    h0 = num.act.quantize(rng.uniform(-1, 1, (layers, hidden)))
    xs = num.act.quantize(rng.uniform(-1, 1, (steps, input_size)))
    return params, h0, xs


@pytest.mark.parametrize("p", [1.0, 0.5])
def test_cross_simulation_gru(p):
    params, h0, xs = gru_case(3, 4, 2, steps=4, seed=8)
    engine = ENGINES["gru"]()
    run = both(ENGINES["gru"], **gru_streams(engine, params, h0, xs), seed=9, p_valid=p, p_ready=p)
    outputs = np.array([beat["data"] for beat in run.outputs["out"]]).reshape(len(xs), -1)[:, :4]
    assert np.array_equal(outputs, gru_reference(params, h0, xs, engine.num)[0])
    assert run.flags == {"error": 0}


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
    streams = gru_streams(engine, params, h0, xs)
    run = run_streams(engine, **streams, backend="verilator", max_cycles=2 * steps * engine.latency)
    geo = engine.geometry
    h_words = geo.h_words
    outputs = np.array([beat["data"] for beat in run.outputs["out"]]).reshape(steps, -1)[:, :hidden]
    expected, _ = gru_reference(params, h0, xs, engine.num)
    assert np.array_equal(outputs, expected)
    assert run.flags == {"error": 0}
    done = run.times["out"][h_words - 1::h_words]
    sent = run.times["cmd"][streams["waits"]["cmd"][0] + geo.x_words[0] - 1]  # the first STEP's last beat
    assert done[0] - sent == gru_step_latency(input_size, hidden, layers, lanes, simd)
    assert set(np.diff(done).tolist()) == {gru_step_cycles(input_size, hidden, layers, lanes, simd)}


def test_cli_sim_takes_the_backend(capsys):
    """``wavefabric sim ... --backend verilator``: the same figures as Amaranth's, plus the backend's own."""
    argv = ["sim", "gemm", "--rows", "2", "--cols", "3", "--m", "5", "--n", "7", "--k", "9", "--stall", "0.5",
            "--json"]
    figures = {}
    for backend in ("amaranth", "verilator"):
        assert main([*argv, "--backend", backend]) == 0
        figures[backend] = json.loads(capsys.readouterr().out)
    assert figures["verilator"]["backend"] == "verilator" and figures["verilator"]["compile_seconds"] > 0
    assert figures["amaranth"]["backend"] == "amaranth" and figures["amaranth"]["compile_seconds"] == 0
    speeds = {backend: figures[backend].pop("cycles_per_second") for backend in figures}
    assert min(speeds.values()) > 0
    for f in figures.values():
        del f["backend"], f["compile_seconds"]
    assert figures["amaranth"] == figures["verilator"] and figures["amaranth"]["bit_exact"]
