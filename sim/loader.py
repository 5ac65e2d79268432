"""Simulating the weight loaders (:mod:`wavefabric.rtl.loader`) feeding their engines: host packing and runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model.kernels import Numerics, RsqrtFormat, quantize_weight_norm, weight_norm_operands
from ..rtl.gru import GruCommand, GruEngine
from ..rtl.loader import GruWeightLoader, MatVecWeightLoader, NormedMatrix
from ..rtl.matvec import MatVecUnit
from .gru import GruParams, command_beats
from .streams import run_streams

__all__ = ["gru_weight_norm_tensors", "loader_beats", "folded_gru_weights", "folded_params", "ProbedGruEngine",
           "GruLoadRun", "run_gru_weight_load", "matvec_loader_beats", "folded_matvec_weights", "matvec_image",
           "ProbedMatVecUnit", "MatVecLoadRun", "run_matvec_weight_load"]


def gru_weight_norm_tensors(state_dict: Mapping, layers: int, prefix: str = "") -> list[tuple]:
    """The ``(g, v)`` float64 pairs of a weight-normed ``nn.GRU``, in the loader's order.

    ``state_dict`` holds ``{prefix}weight_ih_l{l}_g`` / ``_v`` and ``weight_hh_l{l}_g`` / ``_v`` (what
    ``torch.nn.utils.weight_norm(gru, name="weight_ih_l0")`` saves), or PyTorch's newer
    ``parametrizations.weight_ih_l{l}.original0`` / ``original1`` (g / v), as NumPy arrays or CPU tensors; the
    order is ``weight_ih_l0, weight_hh_l0, weight_ih_l1, ...``. Raises ``ValueError`` naming a missing tensor.
    """
    pairs = []
    for layer in range(layers):
        for kind in ("ih", "hh"):
            name = f"weight_{kind}_l{layer}"
            keys = [f"{prefix}{name}_{part}" for part in ("g", "v")]
            if not all(key in state_dict for key in keys):
                newer = [f"{prefix}parametrizations.{name}.original{i}" for i in (0, 1)]
                if all(key in state_dict for key in newer):
                    keys = newer
            missing = [key for key in keys if key not in state_dict]
            if missing:
                raise ValueError(f"state dict has no {missing[0]} (a weight-normed GRU layer stores {prefix}{name}_g "
                                 f"and _v)")
            pairs.append(tuple(np.asarray(state_dict[key], dtype=np.float64) for key in keys))
    return pairs


def loader_beats(loader: GruWeightLoader, pairs: list[tuple]) -> tuple[list[dict], list[dict]]:
    """The ``v`` and ``g`` stream payloads that load ``pairs`` (:func:`gru_weight_norm_tensors`) into ``loader``.

    Each tensor is quantised as :func:`~wavefabric.model.kernels.weight_norm_operands` does at the weight width
    (per-row power-of-two scale of ``v``, one per-tensor format of ``g``, whose ``frac`` every ``g`` beat
    carries). Raises ``ValueError`` if a tensor's ``g`` needs fewer fractional bits than ``loader.g_frac_min``.
    """
    geo, simd = loader.geometry, loader.geometry.simd
    v_beats, g_beats = [], []
    for t, (g, v) in enumerate(pairs):
        v_int, g_int, g_fmt = weight_norm_operands(g, v, loader.num.weight.width)
        if not loader.g_frac_min <= g_fmt.frac <= loader.g_frac_max:
            raise ValueError(f"tensor {t}: |g| up to {np.max(np.abs(g)):.4g} needs {g_fmt}, but the loader takes g "
                             f"with {loader.g_frac_min} to {loader.g_frac_max} fractional bits")
        words = -(-v_int.shape[1] // simd)
        padded = np.pad(v_int, ((0, 0), (0, words * simd - v_int.shape[1]))).reshape(-1, simd)
        v_beats += [{"data": row.tolist(), "first": i == 0, "last": i == len(padded) - 1}
                    for i, row in enumerate(padded)]
        g_beats += [{"data": int(x), "frac": g_fmt.frac} for x in g_int]
    expected = sum(3 * geo.hidden * (geo.x_words[layer] + geo.h_words) for layer in range(geo.layers))
    if len(v_beats) != expected:
        raise ValueError(f"the tensors make {len(v_beats)} v beats, the loader's GRU needs {expected}")
    return v_beats, g_beats


def folded_gru_weights(pairs: list[tuple], num: Numerics,
                       rsqrt_fmt: RsqrtFormat = RsqrtFormat()) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The model's folded weights ``(w_ih, w_hh)``: :func:`~wavefabric.model.kernels.quantize_weight_norm` per
    tensor of ``pairs``, split into the lists :meth:`~wavefabric.rtl.gru.GruGeometry.weight_words` takes."""
    folded = [quantize_weight_norm(g, v, num, rsqrt_fmt) for g, v in pairs]
    return folded[0::2], folded[1::2]


class ProbedGruEngine(GruEngine):
    """A :class:`~wavefabric.rtl.gru.GruEngine` whose resident weights a simulation can read: ``probe_data`` holds
    every lane's word at ``probe_addr`` in the same cycle (a combinational read port per weight memory)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        geo = self.geometry
        self.probe_addr = Signal(range(geo.weight_depth))
        self.probe_data = Signal(data.ArrayLayout(data.ArrayLayout(signed(self.num.weight.width), geo.simd),
                                                  geo.lanes))

    def elaborate(self, platform):
        m = super().elaborate(platform)
        for p in range(self.geometry.lanes):
            port = m.submodules[f"weights_{p}"].read_port(domain="comb")
            m.d.comb += [port.addr.eq(self.probe_addr), self.probe_data[p].eq(port.data)]
        return m


class _LoadBench(wiring.Component):
    """``loader`` feeding ``engine`` as one component for :func:`~wavefabric.sim.streams.run_streams`.

    The loader's ``v`` / ``g`` and the engine's ``cmd`` / ``out`` pass through. Every transfer on the link from
    the loader to the engine takes a beat of ``link`` (so the link has the random gaps of an input stream), and
    once ``buffer_depth`` have gone by, ``resident`` streams the engine's weight memories out, one address (every
    lane) per beat. The three flags are the loader's ``zero_row`` and ``error`` and the engine's ``error``.
    """

    def __init__(self, loader: GruWeightLoader, engine: ProbedGruEngine):
        self.loader, self.engine = loader, engine
        super().__init__({
            "v": loader.signature.members["v"], "g": loader.signature.members["g"],
            "cmd": engine.signature.members["cmd"], "out": engine.signature.members["out"],
            "link": In(stream.Signature(1)), "resident": Out(stream.Signature(engine.probe_data.shape())),
            "zero_row": Out(1), "loader_error": Out(1), "engine_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        loader, engine = self.loader, self.engine
        m.submodules.loader, m.submodules.engine = loader, engine
        for ours, theirs in ((self.v, loader.v), (self.g, loader.g), (self.cmd, engine.cmd)):
            wiring.connect(m, wiring.flipped(ours), theirs)
        wiring.connect(m, engine.out, wiring.flipped(self.out))
        m.d.comb += [engine.weights.valid.eq(loader.weights.valid & self.link.valid),
                     engine.weights.payload.eq(loader.weights.payload),
                     loader.weights.ready.eq(engine.weights.ready & self.link.valid),
                     self.link.ready.eq(loader.weights.valid & engine.weights.ready),
                     self.zero_row.eq(loader.zero_row), self.loader_error.eq(loader.error),
                     self.engine_error.eq(engine.error)]
        linked = Signal(range(loader.buffer_depth + 1))
        with m.If(self.link.valid & self.link.ready):
            m.d.sync += linked.eq(linked + 1)
        depth = engine.geometry.weight_depth
        addr = Signal(range(depth + 1))
        m.d.comb += [self.resident.valid.eq((linked == loader.buffer_depth) & (addr < depth)),
                     engine.probe_addr.eq(addr), self.resident.payload.eq(engine.probe_data)]
        with m.If(self.resident.valid & self.resident.ready):
            m.d.sync += addr.eq(addr + 1)
        return m


@dataclass
class GruLoadRun:
    """Outcome of :func:`run_gru_weight_load`.

    Attributes
    ----------
    resident : (weight_depth, P, S) int64 array: the engine's weight memories after the load.
    cycles : int
        Cycles from the start to the engine's last ``weights`` transfer, inclusive.
    zero_row, loader_error, engine_error : bool
        The loader's and the engine's sticky flags at the end.
    outputs : (T, H) int64 array: the last layer's h' after each step run after the load (empty without steps).
    """

    resident: np.ndarray
    cycles: int
    zero_row: bool
    loader_error: bool
    engine_error: bool
    outputs: np.ndarray


def run_gru_weight_load(loader: GruWeightLoader, engine: ProbedGruEngine, pairs: list[tuple], *,
                        biases: tuple | None = None, h0=None, xs=None, seed: int = 0, p_valid: float = 1.0,
                        p_ready: float = 1.0, name: str = "gru_load") -> GruLoadRun:
    """Load ``pairs`` through ``loader`` into ``engine`` in Amaranth's simulator, then optionally run GRU steps.

    ``biases`` (``(b_ih, b_hh)`` lists of act ints), ``h0`` and ``xs`` (one row per step), if given, are sent
    on the engine's ``cmd`` stream: BIAS and STATE during the load, the STEPs once the last weight is in. With
    ``p_valid`` / ``p_ready`` below 1 every stream has seeded random gaps or stalls (the link from the loader
    to the engine has an input's gaps), from :func:`~wavefabric.sim.streams.run_streams`. ``name`` names the
    VCD trace.
    """
    geo = engine.geometry
    v_beats, g_beats = loader_beats(loader, pairs)
    xs = np.zeros((0, geo.input_size), dtype=np.int64) if xs is None else np.asarray(xs, dtype=np.int64)
    setup, steps = [], []
    if biases is not None:
        setup += command_beats(geo, GruCommand.BIAS, geo.bias_values(*biases))
    if h0 is not None:
        setup += command_beats(geo, GruCommand.STATE, h0)
    for x in xs:
        steps += command_beats(geo, GruCommand.STEP, x)
    inputs = {"v": v_beats, "g": g_beats, "link": [0] * loader.buffer_depth}
    if setup or steps:
        inputs["cmd"] = setup + steps
    run = run_streams(_LoadBench(loader, engine), inputs, {"out": len(xs) * geo.h_words, "resident": geo.weight_depth},
                      seed=seed, p_valid=p_valid, p_ready=p_ready, name=name,
                      waits={"cmd": (len(setup), "link")} if steps else None)
    words = np.array([b["data"] for b in run.outputs["out"]], dtype=np.int64).reshape(len(xs), geo.h_words * geo.simd)
    return GruLoadRun(np.array(run.outputs["resident"], dtype=np.int64).reshape(geo.weight_depth, geo.lanes, geo.simd),
                      int(run.times["link"][-1]) + 1, bool(run.flags["zero_row"]), bool(run.flags["loader_error"]),
                      bool(run.flags["engine_error"]), words[:, :geo.hidden])


def folded_params(pairs: list[tuple], biases: tuple, num: Numerics, rsqrt_fmt: RsqrtFormat = RsqrtFormat()
                  ) -> GruParams:
    """:class:`~wavefabric.sim.gru.GruParams` with the folded weights of ``pairs`` and the integer ``biases``."""
    w_ih, w_hh = folded_gru_weights(pairs, num, rsqrt_fmt)
    return GruParams(w_ih, w_hh, list(biases[0]), list(biases[1]))


def matvec_loader_beats(loader: MatVecWeightLoader, pairs: list[tuple]) -> tuple[list[dict], list[dict]]:
    """The ``v`` and ``g`` stream payloads that load float ``pairs`` (one ``(g, v)`` per matrix of ``loader``, ``v``
    in PyTorch's layout) into ``loader``: :func:`~wavefabric.model.kernels.weight_norm_operands` at the weight
    width per tensor, as :func:`~wavefabric.model.kernels.quantize_weight_norm` does. Raises ``ValueError`` for a
    tensor of the wrong size or a ``g`` format outside the loader's."""
    simd, v_beats, g_beats = loader.simd, [], []
    if len(pairs) != len(loader.matrices):
        raise ValueError(f"{len(pairs)} (g, v) pairs for the loader's {len(loader.matrices)} matrices")
    for t, ((g, v), mat) in enumerate(zip(pairs, loader.matrices, strict=True)):
        v_int, g_int, g_fmt = weight_norm_operands(g, v, loader.num.weight.width)
        if v_int.shape != mat.v_shape:
            raise ValueError(f"tensor {t}: v rows {v_int.shape}, the loader's matrix takes {mat.v_shape}")
        if not loader.g_frac_min <= g_fmt.frac <= loader.g_frac_max:
            raise ValueError(f"tensor {t}: |g| up to {np.max(np.abs(g)):.4g} needs {g_fmt}, but the loader takes g "
                             f"with {loader.g_frac_min} to {loader.g_frac_max} fractional bits")
        words = -(-v_int.shape[1] // simd)
        v_beats += [{"data": row.tolist()}
                    for row in np.pad(v_int, ((0, 0), (0, words * simd - v_int.shape[1]))).reshape(-1, simd)]
        g_beats += [{"data": int(x), "frac": g_fmt.frac} for x in g_int]
    for i, beat in enumerate(v_beats):
        beat.update(first=i == 0, last=i == len(v_beats) - 1)
    return v_beats, g_beats


def folded_matvec_weights(matrices: list[NormedMatrix], pairs: list[tuple], num: Numerics,
                          rsqrt_fmt: RsqrtFormat = RsqrtFormat()) -> list[np.ndarray]:
    """The model's folded matrices (``rows x cols``): :func:`~wavefabric.model.kernels.quantize_weight_norm` per
    tensor; a ConvTranspose1d weight ``(cols, rows / taps, taps)`` becomes row ``j * rows / taps + d``, column
    ``c``."""
    out = []
    for mat, (g, v) in zip(matrices, pairs, strict=True):
        w = quantize_weight_norm(g, v, num, rsqrt_fmt).reshape(mat.v_shape)
        if mat.taps:
            w = w.reshape(mat.cols, mat.rows // mat.taps, mat.taps).transpose(2, 1, 0).reshape(mat.rows, mat.cols)
        out.append(w)
    return out


def matvec_image(matrices: list[NormedMatrix], weights: list[np.ndarray], lanes: int, simd: int,
                 depth: int) -> np.ndarray:
    """Every lane's weight memory ``(depth, P, S)`` holding ``weights`` (one ``rows x cols`` int matrix per
    :class:`~wavefabric.rtl.loader.NormedMatrix`): row ``k * P + p`` in lane ``p``, slot ``k``; zeros elsewhere."""
    image = np.zeros((depth, lanes, simd), dtype=np.int64)
    for mat, w in zip(matrices, weights, strict=True):
        slots, words = -(-mat.rows // lanes), -(-mat.cols // simd)
        padded = np.zeros((slots * lanes, words * simd), dtype=np.int64)
        padded[:mat.rows, :mat.cols] = w
        image[mat.weight_base:mat.weight_base + slots * words] = (
            padded.reshape(slots, lanes, words, simd).transpose(0, 2, 1, 3).reshape(-1, lanes, simd))
    return image


class ProbedMatVecUnit(MatVecUnit):
    """A :class:`~wavefabric.rtl.matvec.MatVecUnit` whose weight memories a simulation can read: ``probe_data``
    holds every lane's word at ``probe_addr`` in the same cycle (a combinational read port per memory)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.probe_addr = Signal(range(self.depth))
        self.probe_data = Signal(data.ArrayLayout(data.ArrayLayout(signed(self.num.weight.width), self.simd),
                                                  self.lanes))

    def elaborate(self, platform):
        m = super().elaborate(platform)
        # A lane's memory is ``weights_{p}``, or block RAM ``weights_{p}_0`` (``block_depth`` words) followed by
        # distributed RAM ``weights_{p}_1`` when the unit splits it.
        block_depth = getattr(self, "block_depth", None)
        for p in range(self.lanes):
            if block_depth is None:
                parts = [(m.submodules[f"weights_{p}"], 0)]
            else:
                parts = [(m.submodules[f"weights_{p}_0"], 0)]
                if self.depth > block_depth:
                    parts.append((m.submodules[f"weights_{p}_1"], block_depth))
            for mem, start in parts:
                port = mem.read_port(domain="comb")
                m.d.comb += port.addr.eq(self.probe_addr - start)
                with m.If(self.probe_addr >= start):
                    m.d.comb += self.probe_data[p].eq(port.data)
        return m


class _MatVecLoadBench(wiring.Component):
    """``loader`` writing into ``unit`` as one component for :func:`~wavefabric.sim.streams.run_streams`.

    ``v`` / ``g`` pass through. Once every ``v`` beat is in and the loader is no longer busy, ``resident`` streams
    the unit's weight memories out, one address (every lane) per beat. ``last_store`` is the cycle count at the
    loader's last ``store`` write; the flags are the loader's ``zero_row`` and ``error``.
    """

    def __init__(self, loader: MatVecWeightLoader, unit: ProbedMatVecUnit):
        self.loader, self.unit = loader, unit
        super().__init__({
            "v": loader.signature.members["v"], "g": loader.signature.members["g"],
            "resident": Out(stream.Signature(unit.probe_data.shape())),
            "last_store": Out(32), "zero_row": Out(1), "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        loader, unit = self.loader, self.unit
        m.submodules.loader, m.submodules.unit = loader, unit
        for ours, theirs in ((self.v, loader.v), (self.g, loader.g)):
            wiring.connect(m, wiring.flipped(ours), theirs)
        m.d.comb += [unit.store.eq(loader.store), self.zero_row.eq(loader.zero_row), self.error.eq(loader.error)]
        now = Signal(32)
        m.d.sync += now.eq(now + 1)
        with m.If(loader.store.valid):
            m.d.sync += self.last_store.eq(now)
        taken = Signal(range(loader.v_beats + 1))
        with m.If(self.v.valid & self.v.ready):
            m.d.sync += taken.eq(taken + 1)
        addr = Signal(range(unit.depth + 1))
        m.d.comb += [self.resident.valid.eq((taken == loader.v_beats) & ~loader.busy & (addr < unit.depth)),
                     unit.probe_addr.eq(addr), self.resident.payload.eq(unit.probe_data)]
        with m.If(self.resident.valid & self.resident.ready):
            m.d.sync += addr.eq(addr + 1)
        return m


@dataclass
class MatVecLoadRun:
    """Outcome of :func:`run_matvec_weight_load`.

    Attributes
    ----------
    resident : (depth, P, S) int64 array: the unit's weight memories after the load.
    cycles : int
        From the first ``v`` transfer to the loader's last ``store`` write, inclusive.
    zero_row, error : bool
        The loader's sticky flags at the end.
    """

    resident: np.ndarray
    cycles: int
    zero_row: bool
    error: bool


def run_matvec_weight_load(loader: MatVecWeightLoader, unit: ProbedMatVecUnit, pairs: list[tuple], *,
                           seed: int = 0, p_valid: float = 1.0, p_ready: float = 1.0,
                           name: str = "matvec_load") -> MatVecLoadRun:
    """Load float ``pairs`` (:func:`matvec_loader_beats`) through ``loader`` into ``unit`` in Amaranth's simulator.

    With ``p_valid`` / ``p_ready`` below 1, ``v`` and ``g`` have seeded random gaps and the read-out stalls
    (:func:`~wavefabric.sim.streams.run_streams`). ``name`` names the VCD trace.
    """
    v_beats, g_beats = matvec_loader_beats(loader, pairs)
    run = run_streams(_MatVecLoadBench(loader, unit), {"v": v_beats, "g": g_beats}, {"resident": unit.depth},
                      seed=seed, p_valid=p_valid, p_ready=p_ready, name=name)
    resident = np.array(run.outputs["resident"], dtype=np.int64).reshape(unit.depth, unit.lanes, unit.simd)
    return MatVecLoadRun(resident, run.flags["last_store"] - int(run.times["v"][0]) + 1, bool(run.flags["zero_row"]),
                         bool(run.flags["error"]))
