# amaranth: UnusedElaboratable=no
# (The components are built for their signatures and attributes only; the Verilog check elaborates its own.)
"""The port-level interface of every exported engine and of the PYNQ-Z1 tops, as ``docs/verilog.md``.

Everything in the document comes from the components as the command line builds them at its default
parameters: the ports from the signature, named as Amaranth's Verilog export names them (nested names joined
with ``__``, plus ``clk`` and ``rst`` of the ``sync`` domain an engine leaves to its parent); the bit layout of
every payload from its ``data.Layout``; the fixed settings from the component's attributes. The prose about each
port lives here, and a port without it (or prose about a port that is gone) is an error, so the document cannot
fall behind the hardware. :func:`verilog_ports` reads the ports back from exported Verilog and
:func:`check_verilog` compares the two.

Regenerate the document (this also checks every design against its exported Verilog; about a minute)::

    python -m wavefabric.sim.interface docs/verilog.md
"""

from __future__ import annotations

import argparse
import enum
import fnmatch
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In

from ..model.files import atomic_write
from .export import to_verilog

__all__ = ["Port", "Field", "Design", "engine_design", "top_design", "samplernn_top_design", "pwg_top_design",
           "designs", "ports", "fields", "verilog_ports", "check_verilog", "render", "render_document", "main"]

#: The command that regenerates the document (said by the test when the committed file is stale).
REGENERATE = "python -m wavefabric.sim.interface docs/verilog.md"


@dataclass(frozen=True)
class Port:
    """One port of the exported Verilog module.

    ``shape`` is the Amaranth shape behind it (a ``data.Layout`` for a struct payload) and ``member`` the name of
    the signature member it belongs to (the stream, for ``X__payload``, ``X__valid``, ``X__ready``).
    """

    name: str
    direction: str
    width: int
    signed: bool
    shape: Any = 1
    member: str = ""


@dataclass(frozen=True)
class Field:
    """A row of a payload's bit layout: one scalar field, or an array of ``lanes`` scalars.

    Lane ``j`` of an array is at bit ``offset + j * width``; its name ends in ``[j]``.
    """

    name: str
    offset: int
    width: int
    shape: Any
    lanes: int = 1


@dataclass(frozen=True)
class Design:
    """A Verilog module as the document describes it.

    Attributes
    ----------
    title, module, command, summary : str
        Heading, Verilog module name, the command that writes its Verilog, one sentence on what it is.
    component : wiring.Component
        The component at the command's default parameters.
    clock, reset : str
        Clock and reset ports; ``reset_low`` for an active-low reset. Ports that are not signature members are
        the ``sync`` domain's, which Amaranth adds.
    notes : dict[str, str]
        Meaning of each signature member, keyed by member name or a glob (``s_axis_*``); each member matches
        exactly one key and each key at least one member.
    settings : list[tuple[str, str, str]]
        ``(attribute, value, meaning)`` of the fixed settings that the command's options do not show.
    layouts : dict[str, Any]
        Bit layouts of ports whose plain bits carry one (the AXI4-Stream TDATA of the top), by port name.
    sections : list[tuple[str, str]]
        Further ``(heading, markdown)`` sections (the top's register map, SampleRNN's load regions).
    """

    title: str
    module: str
    command: str
    summary: str
    component: wiring.Component
    notes: dict[str, str]
    settings: list[tuple[str, str, str]]
    clock: str = "clk"
    reset: str = "rst"
    reset_low: bool = False
    layouts: dict[str, Any] = field(default_factory=dict)
    sections: list[tuple[str, str]] = field(default_factory=list)


# --- Ports and layouts, from the signature ------------------------------------------------------------------

def ports(design: Design) -> list[Port]:
    """The Verilog ports of ``design`` in signature order (an engine's ``clk`` and ``rst`` first).

    Raises ``ValueError`` unless every signature member matches exactly one key of ``design.notes`` and every
    key matches a member.
    """
    component = design.component
    members = list(component.signature.members)
    _check_notes(design.title, members, design.notes)
    result = []
    if design.clock not in members:  # the domain is left to the parent: Amaranth adds its clock and reset
        result += [Port(design.clock, "input", 1, False), Port(design.reset, "input", 1, False)]
    for path, member, _ in component.signature.flatten(component):
        shape = Shape.cast(member.shape)
        result.append(Port("__".join(map(str, path)), "input" if member.flow == In else "output", shape.width,
                           shape.signed, member.shape, path[0]))
    return result


def _check_notes(title: str, members: Sequence[str], notes: dict[str, str]) -> None:
    for name in members:
        keys = [key for key in notes if fnmatch.fnmatchcase(name, key)]
        if len(keys) != 1:
            raise ValueError(f"{title}: port {name!r} matches {len(keys)} notes ({keys}), not 1: say what it is "
                             f"in sim/interface.py")
    for key in notes:
        if not any(fnmatch.fnmatchcase(name, key) for name in members):
            raise ValueError(f"{title}: note {key!r} describes no port: remove it from sim/interface.py")


def _layout(shape) -> data.Layout | None:
    try:
        return data.Layout.cast(shape)
    except TypeError:
        return None


def _is_enum(shape) -> bool:
    return isinstance(shape, type) and issubclass(shape, enum.Enum)


def fields(shape, offset: int = 0, name: str = "") -> list[Field]:
    """The bit layout of ``shape`` as rows, lowest bits first.

    Struct fields are named by path (``a.b``), an array of scalars is one row of lanes (``data[j]``), other
    arrays are listed element by element (``x[0]``). ``offset`` and ``name`` place ``shape`` inside another.
    """
    layout = _layout(shape)
    if layout is None:
        return [Field(name, offset, Shape.cast(shape).width, shape)]
    if isinstance(layout, data.ArrayLayout) and layout.length > 1 and _layout(layout.elem_shape) is None:
        return [Field(f"{name}[j]", offset, Shape.cast(layout.elem_shape).width, layout.elem_shape, layout.length)]
    rows = []
    for key, fld in layout:
        sub = f"{name}[{key}]" if isinstance(layout, data.ArrayLayout) else f"{name}.{key}" if name else key
        rows += fields(fld.shape, offset + fld.offset, sub)
    return rows


def _type(shape) -> str:
    """A scalar shape in words: signedness, and the legal values of a range or an enum."""
    if _is_enum(shape):
        return f"enum `{shape.__name__}`: " + ", ".join(f"{member.value} `{member.name}`" for member in shape)
    if isinstance(shape, range):
        return f"unsigned, {shape.start} to {shape.stop - 1}"
    scalar = Shape.cast(shape)
    return "signed" if scalar.signed else "unsigned" if scalar.width > 1 else "bit"


# --- The Verilog side -----------------------------------------------------------------------------------------

_DECLARATION = re.compile(r"^\s*(input|output|inout)\s+(signed\s+)?(?:\[(\d+):(\d+)\]\s+)?(\S+);", re.M)


def verilog_ports(text: str, module: str) -> dict[str, tuple[str, int, bool]]:
    """The ports of ``module`` in Verilog ``text`` as Yosys writes them: name to ``(direction, width, signed)``."""
    match = re.search(rf"^module {re.escape(module)}\(.*?^endmodule", text, re.M | re.S)
    if match is None:
        raise ValueError(f"no module {module!r} in the Verilog")
    return {name: (direction, int(hi) - int(lo) + 1 if hi else 1, bool(sign))
            for direction, sign, hi, lo, name in _DECLARATION.findall(match[0])}


def check_verilog(design: Design, text: str | None = None) -> None:
    """Raise ``ValueError`` unless :func:`ports` of ``design`` are exactly the ports of its exported Verilog.

    ``text`` is that Verilog; by default it is exported (:func:`~wavefabric.sim.export.to_verilog`: 1 s to 30 s).
    """
    text = to_verilog(design.component, design.module) if text is None else text
    found = verilog_ports(text, design.module)
    expected = {port.name: (port.direction, port.width, port.signed) for port in ports(design)}
    if found != expected:
        differ = sorted(name for name in found.keys() | expected.keys() if found.get(name) != expected.get(name))
        raise ValueError(f"{design.title}: the document and the Verilog disagree on ports {differ}: document "
                         f"{[expected.get(n) for n in differ]}, Verilog {[found.get(n) for n in differ]}")


# --- The designs --------------------------------------------------------------------------------------------

def _q(fmt) -> str:
    return f"{fmt} ({fmt.width} bits)"


def _numerics(num) -> list[tuple[str, str, str]]:
    return [("act", _q(num.act), "activations, hidden state, biases"),
            ("weight", _q(num.weight), "weights"),
            ("gate", _q(num.gate), "sigmoid and tanh outputs"),
            ("table_bits", str(num.table_bits), f"sigmoid and tanh tables: {1 << num.table_bits} segments, "
                                                "linear interpolation")]


_FRAME = "`first` / `last` on the first and last beat of"


def _systolic(c) -> tuple[dict, list, list]:
    notes = {
        "i": f"one k-step per beat: `a[i]` enters row i, `b[j]` column j; {_FRAME} a tile (both when K = 1). "
             "`i__ready` depends on `i__payload` (`last`): tiles are spaced `tile_period` cycles apart",
        "o": f"one result row per beat, {c.rows} beats per tile in row order: `data[j]` = S[r, j]; {_FRAME} a "
             "tile. `o__ready` reaches every cell's enable combinationally: drive it from a register",
    }
    settings = [("rows x cols", f"{c.rows} x {c.cols}", "processing elements, one DSP48E1 each"),
                ("weight", _q(c.weight), "`a` lanes"), ("act", _q(c.act), "`b` lanes"),
                ("max_k", str(c.max_k), "longest reduction (k-steps per tile) the accumulators hold exactly"),
                ("acc_width", str(c.acc_width), "bits of each sum (`o` lanes), not narrowed"),
                ("latency", f"{c.latency} cycles", "a tile's last k-step transfer to its first result row valid"),
                ("tile_period", f"{c.tile_period} cycles", "fewest cycles between the last k-steps of two tiles")]
    return notes, settings, []


def _gemm(c) -> tuple[dict, list, list]:
    notes = {
        "a": f"A (M x K weights): one beat per tile and k-step, `data[i]` = A[m0 + i, k], sent again for every "
             f"tile of its row-block; {_FRAME} a GEMM (so on all four streams)",
        "b": "B (K x N activations), paired with `a` beat for beat: `data[j]` = B[k, n0 + j]",
        "bias": "one beat per row-block: `data[i]` = bias[m0 + i] (act format)",
        "c": "C, one beat per output row of a tile: `data[j]` = C[m0 + r, n0 + j]; ceil(N / C) * M beats per GEMM",
        "m": "M (>= 1): held from a GEMM's first operand beat until its last result beat",
        "n": "N (>= 1), held as `m`",
        "k": "K (>= 1, at most `max_k`), held as `m`",
        "error": "sticky until `rst`: an operand beat's `first` / `last` disagreed with the engine's count",
    }
    settings = [("rows x cols", f"{c.rows} x {c.cols}", "systolic array: output tiles of R x C"),
                ("weight", _q(c.weight), "`a`"), ("act", _q(c.act), "`b`"), ("out", _q(c.out), "`c`"),
                ("bias_width", str(c.bias_width), "`bias` lanes, in act units"),
                ("max_m, max_n, max_k", f"{c.max_m}, {c.max_n}, {c.max_k}", "largest sizes `m`, `n`, `k` hold"),
                ("acc_width", str(c.array.acc_width), "accumulator bits (exact for `max_k`)"),
                ("rounding", "half up, then saturate", "the one narrowing, to `out`"),
                ("latency", f"{c.latency} cycles", "a tile's last k-step transfer to its first `c` row valid")]
    return notes, settings, []


def _weightnorm(c) -> tuple[dict, list, list]:
    notes = {
        "v": f"rows of v one after another, ceil(row_length / {c.lanes}) beats each: element e in `data[e mod "
             f"{c.lanes}]` of beat e // {c.lanes}; `first` / `last` are not interpreted, they travel to `w`",
        "g": "one gain per row, in row order (g format), taken with the row's last `v` beat",
        "w": "w = g * v / ‖v‖, one beat per `v` beat with its `first` / `last`; lanes past a row's end zero",
        "row_length": "elements per row, held from a row's first `v` beat to its last (may change between rows)",
        "zero_row": "sticky until `clear` or `rst`: a row had ‖v‖ = 0 (its `w` are zeros)",
        "clear": "high for a cycle: clears `zero_row`",
    }
    rsqrt = c.rsqrt_fmt
    settings = [("lanes", str(c.lanes), "elements per beat"),
                ("max_row_length", str(c.max_row_length), "longest row"),
                ("v_width", str(c.v_width), "bits of v (integers: their scale cancels)"),
                ("g_fmt", _q(c.g_fmt), "`g`"), ("out_fmt", _q(c.out_fmt), "`w`"),
                ("rsqrt_fmt", f"{rsqrt.mant_bits}-bit mantissa, {rsqrt.seed_bits}-bit seed table, "
                              f"{rsqrt.newton_steps} Newton steps", "reciprocal square root"),
                ("buffer_depth", f"{c.buffer_depth} beats", "row buffer (enough that `v` never waits while `w` "
                                                            "is ready and `g` valid)"),
                ("latency", f"{c.latency} cycles", "a row's last `v` transfer to its first `w` beat valid")]
    return notes, settings, []


def _pwg_layer(c) -> tuple[dict, list, list]:
    C = c.cols
    notes = {
        "x": f"residual input, block by block (C = {C} time steps): per block one beat per channel, `data[j]` = "
             f"time n * {C} + j (beyond T: don't care); {_FRAME} a layer on every stream",
        "skip_in": "the running skip sum, ordered as `x` (zeros into the first layer)",
        "w": f"the layer's weights, {c.weight_beats:,} beats: {c.gate_tiles} gate tiles x "
             f"{c.residual * c.kernel_size} reduction columns, then {c.out_tiles} [skip; out] tiles x {c.k_out}; "
             f"`data[r]` = row i * {c.rows} + r of tile i. Double-buffered: the next layer's weights load while "
             "this one runs",
        "bias": f"conv, skip and out biases, one per beat ({c.bias_beats} beats; act format)",
        "cond": f"the layer's aux term at frame rate: per frame, per gate tile, `data[r]` = channel i * {c.rows} + r "
                "(F x gate tiles beats; act format). Double-buffered as `w`",
        "table": f"the upsampling table, once after reset ({c.table_beats} beats): per table row, per block of the "
                 f"frame, per tap, `data[j]` = the weight of lane j (weight format)",
        "x_next": "the layer's output, ordered and formatted as `x` (the next layer's `x`); none from a `last` layer",
        "skip_out": "`skip_in` + this layer's skip, exact",
        "frames": f"frames F of the layer (T = F * {c.hop} time steps; >= 2): held from a cycle before the layer's "
                  "first `x` or `skip_in` beat until its last output beat, and the same for a job's layers",
        "dilation": "dilation of the layer (>= 1), held as `frames`",
        "last": "the layer computes no out 1x1 and emits no `x_next` (the generator's last residual layer), held "
                "as `frames`",
        "relu": "with `last`: g = relu(h[:G/2]) (the generator's output layers), held as `frames`",
        "error": "sticky until `rst`: an input beat's `first` / `last` disagreed with the engine's count",
        "shift_*": "the layer's narrowing shifts (fractional bits the gate, skip and out GEMMs drop; "
                   "`model.pwg.LayerShifts`), held as `frames`; reset value the weight format's frac (uniform "
                   "formats)",
        "saturated": "high for a cycle when a row of stored values that saturated is taken: the model's saturation "
                     "counts of the layer are nonzero exactly when it pulses",
    }
    settings = [("rows x cols", f"{c.rows} x {C}", "systolic array (output channels x time steps per block)"),
                ("residual, gate, skip", f"{c.residual}, {c.gate}, {c.skip}", "channels"),
                ("kernel_size", str(c.kernel_size), "taps of the dilated convolution (non-causal)"),
                ("hop, cond_taps, cond_offset, cond_edge", f"{c.hop}, {c.cond_taps}, {c.cond_offset}, {c.cond_edge}",
                 "the upsampling table's geometry"),
                ("max_dilation, max_frames", f"{c.max_dilation}, {c.max_frames}", "largest `dilation`, `frames`"),
                *_numerics(c.numerics),
                ("skip_width", str(c.skip_width), f"`skip_in` / `skip_out` lanes: the exact sum of {c.layers} "
                                                  "layers' skips"),
                ("gate_lanes", str(c.gate_lanes), "values per cycle of the gate unit"),
                ("slots", f"{c.slots} blocks", "line buffer (sized for `max_dilation`)")]
    return notes, settings, []


def _pwg(c) -> tuple[dict, list, list]:
    cfg, C = c.config, c.cols
    A, R, G, L = cfg.aux_channels, cfg.residual_channels, cfg.gate_channels, cfg.layers
    notes = {
        "frames": "F of the job (>= 2): held from a cycle before the job's first `mel` beat until its last `pcm` "
                  "beat",
        "mel": f"the job's mel, one value per beat (act): A (F + 2w) beats, frame-major (A = {A}, w = "
               f"{cfg.aux_context_window})",
        "noise": f"the input noise z, block by block: for block n, for channel i, `data[j]` = z[i, n * {C} + j] (act)",
        "frontend_w": "per job: conv_in's weights (rows of conv_in.reshape(A, -1)), first_conv's, then every "
                      "layer's aux 1x1 (row-major), one per beat (weight format)",
        "frontend_bias": f"per job: first_conv's {R} biases, one per beat (act)",
        "layer_w": f"the residual engine's weights of the {L} residual layers and then the output layer, per job "
                   "(as `w` of pwg-layer)",
        "layer_bias": "their biases, per job (as `bias` of pwg-layer)",
        "table": "once after reset: the run-time formats' shifts (`model.pwg.PWGShifts`, one per beat in lane 0), "
                 "then the upsampling table (as `table` of pwg-layer)",
        "pcm": f"16-bit PCM, block by block: per block, per output channel, `data[j]` = sample n * {C} + j; {_FRAME} "
               "a job",
        "error": "sticky until `rst`: an input beat of the front end or the engine was framed wrong",
        "saturation": f"sticky per job (cleared by its first `mel` beat): bit 0 the front end, bit 1 + l residual "
                      f"layer l, bit {L + 1} the output layers; a bit is set exactly when the model's saturation "
                      "count of that part is nonzero",
    }
    settings = [("rows x cols", f"{c.rows} x {C}", "the residual engine's array"),
                ("residual, gate, skip, aux", f"{R}, {G}, {cfg.skip_channels}, {A}", "channels"),
                ("layers, stacks", f"{L}, {cfg.stacks}", "residual layers, dilation cycles"),
                ("hop", str(cfg.hop_size), "samples per mel frame"),
                ("max_frames", str(c.max_frames), "longest job in frames (sizes the on-chip activations)"),
                *_numerics(cfg.numerics)]
    return notes, settings, []


def _samplernn(c) -> tuple[dict, list, list]:
    from ..rtl.samplernn import LoadRegion

    lay, cfg = c.layout, c.layout.config
    notes = {
        "load": "weights and configuration while no job runs: one frame per region, `region` on all its beats, "
                f"{_FRAME} the frame; regions below",
        "cmd": "one job per beat, taken while no job runs: `count` samples (>= 1), `seed` (nonzero xorshift32 "
               "state), `temperature` (round(T * 4096), 1 to 65535), `table_base` (byte address of the MLP input "
               "table in DDR, 4 KiB aligned)",
        "out": "one beat per sample: `code` (0 to q_levels - 1), `pcm` (16-bit PCM), `last` on a job's last sample",
        "ar": "AXI4 read address: `addr` = ARADDR (a multiple of 8), `len` = ARLEN; tie ARSIZE = 3 (8 bytes), "
              "ARBURST = INCR, ARCACHE = 0b0011, ARPROT = 0, ARID = 0. No burst crosses 4 KiB",
        "r": "AXI4 read data: `data` = RDATA (byte 0 in the low bits), `resp` = RRESP, `last` = RLAST",
        "busy": "a job is running",
        "error": "sticky until `rst`: a load frame's framing was wrong, a `g` beat's format was out of range, or "
                 "a DDR read answered with an error",
        "zero_row": "sticky until the next `MATVEC_NORMED` frame: a v row of it was all zeros",
        "saturated": "sticky per job (cleared when a job starts): bit i set when narrowing i "
                     "(`SampleRNNLayout.saturation_names`) saturated a value, exactly when the model counts one",
    }
    num = cfg.numerics
    settings = [("frame_sizes, n_rnn, dim, q_levels",
                 f"{' '.join(map(str, cfg.frame_sizes))}, {cfg.n_rnn}, {cfg.dim}, {cfg.q_levels}",
                 "SampleRNN sizes (tiers bottom first)"),
                ("weight_norm", str(cfg.weight_norm), "the matrix-vector unit's weights load as (g, v)"),
                *_numerics(num),
                ("logits, table", f"{cfg.logits}, {cfg.table}", "MLP output, MLP input table entries"),
                ("gumbel_bits", str(cfg.gumbel_bits), "bits of the sampler's Gumbel table index"),
                ("lanes x simd", f"{lay.lanes} x {lay.simd}", "matrix-vector unit (P x S multipliers)"),
                ("gru_lanes", " ".join(map(str, lay.gru_lanes)), f"lanes of each tier's GRU engine (x {lay.simd})"),
                ("load_width", str(lay.load_width), "bits of each `load` lane"),
                ("table_bytes", f"{lay.table_bytes:,}", f"MLP input table in DDR: row (j, s) at table_base + "
                                                        f"(j * q_levels + s) * {lay.row_bytes}"),
                ("fifo_depth", str(c.fifo_depth), "samples the output FIFO holds")]
    names = {value: name for name, value in vars(LoadRegion).items() if name.isupper()}
    for tier in range(len(c.grus)):
        names[LoadRegion.gru_weights(tier)] = f"gru_weights({tier})"
        names[LoadRegion.gru_biases(tier)] = f"gru_biases({tier})"
    rows = "\n".join(f"| {value} | `{names[value]}` | {beats:,} |" for value, beats in sorted(c.regions.items()))
    regions = ("Each region is one frame on `load`; the beats of a frame at these sizes (`LoadRegion` in "
               "`rtl/samplernn.py` says what each holds):\n\n| `region` | name | beats |\n|---|---|---|\n" + rows)
    return notes, settings, [("Load regions", regions)]


def _gru(c) -> tuple[dict, list, list]:
    geo = c.geometry
    notes = {
        "weights": f"the weight memories, address-major: beat a * {geo.lanes} + p is lane p's word a "
                   f"({geo.weight_depth * geo.lanes:,} beats); {_FRAME} the load. Taken only while no step is "
                   "queued or running",
        "cmd": f"commands, `kind` on all their beats and {_FRAME} each: `STEP` (x of layer 0, {geo.x_words[0]} "
               f"beats), `STATE` (h0 of every layer, {geo.layers * geo.h_words}), `BIAS` ({geo.bias_beats}); "
               f"vectors {geo.simd} values per beat, zero padded",
        "out": f"h' of the last layer after each step, {geo.h_words} beats (padding lanes zero), {_FRAME} a step",
        "error": "sticky until `rst`: a beat's `first` / `last` disagreed with the engine's count",
        "saturated": "bit l, sticky until the next STATE command: an i_n or h_n of layer l saturated (the model's "
                     "`saturated` count of `gru_cell`)",
    }
    settings = [("input, hidden, layers", f"{geo.input_size}, {geo.hidden}, {geo.layers}", "GRU sizes I, H, L"),
                ("lanes x simd", f"{geo.lanes} x {geo.simd}", "P lanes of S multipliers (one DSP48E1 each)"),
                *_numerics(c.num),
                ("weight_depth", f"{geo.weight_depth} words", "each lane's weight memory"),
                ("acc_width", str(c.acc_width), "bits of a lane's sum, bias included"),
                ("step_cycles", f"{c.step_cycles} cycles", "between the starts of back-to-back steps"),
                ("latency", f"{c.latency} cycles", "a step's last `cmd` transfer (engine idle) to its last `out` "
                                                   "transfer, `out` ready")]
    return notes, settings, []


#: The document's part of each engine, from the built component: what its ports mean (by member), its fixed
#: settings and any further sections.
_ENGINE_NOTES: dict[str, Callable] = {"systolic": _systolic, "gemm": _gemm, "weightnorm": _weightnorm,
                                      "pwg-layer": _pwg_layer, "pwg": _pwg, "samplernn": _samplernn, "gru": _gru}


def _parse(add_options, argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_options(parser)
    return parser.parse_args(list(argv))


def engine_design(name: str, argv: Sequence[str] = ()) -> Design:
    """Engine ``name`` of :data:`~wavefabric.engines.ENGINES`, built as ``wavefabric verilog`` builds it.

    ``argv`` are its options (none: the defaults, which the document shows).
    """
    from ..engines import ENGINES

    engine = ENGINES[name]
    if name not in _ENGINE_NOTES:
        raise ValueError(f"engine {name!r} has Verilog but no notes in sim/interface.py")
    component = engine.build(_parse(engine.add_options, argv))
    notes, settings, sections = _ENGINE_NOTES[name](component)
    module = engine.module_name()
    return Design(name, module, f"wavefabric verilog {name} -o {module}.v", engine.help, component, notes, settings,
                  sections=sections)


def top_design(argv: Sequence[str] = ()) -> Design:
    """The PYNQ-Z1 GRU accelerator top, as ``wavefabric synth|build pynq-z1 --design gru`` builds it.

    ``argv`` are the GRU engine's options (none: the defaults, which the document shows).
    """
    from ..boards.top import ADDR_WIDTH, GruTop, Mode
    from ..cli import BOARD_DESIGNS, _gru_top_config
    from ..engines import ENGINES

    config = _gru_top_config(_parse(ENGINES["gru"].add_options, argv))
    top = GruTop(config)
    E, S, geo = config.element_bits, config.simd, config.geometry
    beats = config.job_beats()
    notes = {
        "aclk": "of every interface (FCLK0, 100 MHz, in the overlay)",
        "aresetn": "resets the whole accelerator, its registers included",
        "s_axi_ctrl_*": f"AXI4-Lite subordinate, 32-bit data, {ADDR_WIDTH}-bit address (4 KiB): the registers "
                        "below. No AWPROT / ARPROT",
        "s_axis_*": f"AXI4-Stream in (from the AXI DMA's MM2S): a job's input, TLAST on its last beat; "
                    f"`value[j]` in {config.num.weight} in a WEIGHTS job, {config.num.act} otherwise",
        "m_axis_*": f"AXI4-Stream out (to S2MM): a STEPS job's output, `value[j]` in {config.num.act}, TLAST on "
                    "the job's last beat; TKEEP all ones",
        "interrupt": "level high: GIE & (ISR != 0)",
    }
    settings = [("input, hidden, layers", f"{geo.input_size}, {geo.hidden}, {geo.layers}", "GRU sizes I, H, L"),
                ("lanes x simd", f"{geo.lanes} x {geo.simd}", "the engine's P lanes of S multipliers"),
                *_numerics(config.num),
                ("tdata_width", str(config.tdata_width), f"{S} values of {E} bits per beat"),
                *((f"beats {name}", f"{beats[key]:,}", text) for name, key, text in (
                    ("WEIGHTS", "WEIGHTS", "a WEIGHTS job's input"), ("BIAS", "BIAS", "a BIAS job's input"),
                    ("STATE", "STATE", "a STATE job's input (h0 of every layer)"),
                    ("STEPS in", "STEP_IN", "per step of a STEPS job: x"),
                    ("STEPS out", "STEP_OUT", "per step of a STEPS job: h' on `m_axis`")))]
    regs = _register_rows(top)
    modes = ", ".join(f"{i} {name}" for i, name in enumerate(Mode.NAMES))
    registers = ("The HLS `ap_ctrl` layout; the same map is `wavefabric_gru.regmap.json` in the build folder. "
                 f"A job: write MODE ({modes}) and STEPS, write 1 to CTRL, stream the input on `s_axis`, collect "
                 "a STEPS job's output on `m_axis`, poll CTRL for ap_done (or take `interrupt`). Other addresses "
                 "and writes to `ro` registers answer SLVERR.\n\n| offset | register | access | meaning |\n"
                 "|---|---|---|---|\n" + regs)
    tdata = data.StructLayout({"value": data.ArrayLayout(signed(E), S)})
    return Design("pynq-z1 gru (AXI top)", config.name, "wavefabric build pynq-z1 --design gru -o DIR",
                  BOARD_DESIGNS["gru"], top, notes, settings, clock="aclk", reset="aresetn", reset_low=True,
                  layouts={"s_axis_tdata": tdata, "m_axis_tdata": tdata}, sections=[("Registers", registers)])


def samplernn_top_design(argv: Sequence[str] = ()) -> Design:
    """The PYNQ-Z1 SampleRNN overlay's top, as ``wavefabric synth|build pynq-z1 --design samplernn`` builds it.

    ``argv`` are the samplernn engine's options (none: the defaults, which the document shows).
    """
    from ..boards.samplernn_top import SAMPLE_BITS, Mode, SampleRNNTop
    from ..boards.shell import ADDR_WIDTH
    from ..cli import BOARD_DESIGNS, _samplernn_top_config
    from ..engines import ENGINES

    config = _samplernn_top_config(_parse(ENGINES["samplernn"].add_options, argv))
    top = SampleRNNTop(config)
    regmap, E, S = top.core.regmap, config.element_bits, config.simd
    notes = {
        "aclk": "of every interface (FCLK0, 100 MHz, in the overlay)",
        "aresetn": "resets the whole accelerator, its registers included (not the weights in block RAM)",
        "s_axi_ctrl_*": f"AXI4-Lite subordinate, 32-bit data, {ADDR_WIDTH}-bit address (4 KiB): the registers "
                        "below. No AWPROT / ARPROT",
        "s_axis_*": "AXI4-Stream in (from the AXI DMA's MM2S): a LOAD job's frames, each a header beat "
                    "(`value[0]` = the load region, below) and then the region's beats; TLAST on the job's last "
                    "beat",
        "m_axis_*": f"AXI4-Stream out (to S2MM): a GENERATE job's samples, one per beat ({SAMPLE_BITS} bits), TLAST "
                    "on the last; TKEEP all ones",
        "m_axi_*": "AXI4 read manager (to S_AXI_HP0 through an interconnect): the MLP input table at TABLE_ADDR. "
                   "INCR bursts of 8-byte beats (ARSIZE 3), ARCACHE 0b0011, ARPROT 0, none across 4 KiB; no "
                   "write channels, no ID",
        "interrupt": "level high: GIE & (ISR != 0)",
    }
    net, lay = config.network, config.layout
    settings = [("frame_sizes, n_rnn, dim, q_levels",
                 f"{' '.join(map(str, net.frame_sizes))}, {net.n_rnn}, {net.dim}, {net.q_levels}",
                 "SampleRNN sizes (tiers bottom first)"),
                ("lanes x simd", f"{config.lanes} x {S}", "matrix-vector unit (P x S multipliers)"),
                ("gru_lanes", " ".join(map(str, config.gru_lanes)), "lanes of each tier's GRU engine"),
                *_numerics(net.numerics),
                ("s_axis tdata_width", str(config.mm2s_width), f"{S} values of {E} bits per beat"),
                ("table_bytes", f"{lay.table_bytes:,}", "the MLP input table in DDR (TABLE_ADDR, 4 KiB aligned)"),
                ("sample_rate", f"{config.sample_rate} Hz", "what the driver assumes"),
                ("config_id", f"{regmap['config_id']:#010x}", "CRC-32 of the configuration (CONFIG_ID)")]
    modes = ", ".join(f"{i} {name}" for i, name in enumerate(Mode.NAMES))
    registers = ("The HLS `ap_ctrl` layout; the same map is `<name>.regmap.json` in the build folder. A LOAD job: "
                 "write TABLE_ADDR, MODE = 0 and 1 to CTRL, stream the frames on `s_axis`. A GENERATE job: write "
                 "MODE = 1, SAMPLES, SEED, TEMPERATURE, 1 to CTRL, collect the samples on `m_axis`, poll CTRL for "
                 f"ap_done. MODE: {modes}. Other addresses and writes to `ro` registers answer SLVERR.\n\n"
                 "| offset | register | access | meaning |\n|---|---|---|---|\n" + _register_rows(top))
    regions = ("\n".join(f"| {region['value']} | `{name}` | {region['beats']:,} |"
                          for name, region in regmap["load_regions"].items()))
    load = ("A LOAD job's frames: the header's `value[0]` and the beats that follow it (`LoadRegion` in "
            "`rtl/samplernn.py` says what each holds; `boards.samplernn_top.load_stream` builds the whole stream "
            "from a model):\n\n| region | name | beats |\n|---|---|---|\n" + regions)
    return Design("pynq-z1 samplernn (AXI top)", config.name, "wavefabric build pynq-z1 --design samplernn -o DIR",
                  BOARD_DESIGNS["samplernn"], top, notes, settings, clock="aclk", reset="aresetn", reset_low=True,
                  layouts={"s_axis_tdata": data.StructLayout({"value": data.ArrayLayout(signed(E), S)}),
                           "m_axis_tdata": data.StructLayout({"pcm": signed(16), "code": 16})},
                  sections=[("Registers", registers), ("Load regions", load)])


def pwg_top_design(argv: Sequence[str] = ()) -> Design:
    """The PYNQ-Z1 PWG vocoder overlay's top, as ``wavefabric synth|build pynq-z1 --design pwg`` builds it.

    ``argv`` are the pwg engine's options (none: the defaults, which the document shows).
    """
    from ..boards.pwg_top import DDR_ALIGN, FIRST_FLAG, LAST_FLAG, LOAD_STREAMS, Mode, PWGTop
    from ..boards.shell import ADDR_WIDTH
    from ..cli import BOARD_DESIGNS, _pwg_top_config
    from ..engines import ENGINES

    config = _pwg_top_config(_parse(ENGINES["pwg"].add_options, argv))
    top = PWGTop(config)
    regmap, E, S, C = top.core.regmap, config.element_bits, config.elements, config.cols
    net = config.network
    manager = ("AXI4 read-write manager (to S_AXI_HP{port} through a SmartConnect): the {what} scratch buffer at "
               "{reg}. INCR bursts of 8-byte beats (AxSIZE 3), AxCACHE 0b0011, AxPROT 0, WSTRB all ones, none "
               "across 4 KiB; no ID")
    notes = {
        "aclk": "of every interface (FCLK0, 100 MHz, in the overlay)",
        "aresetn": "resets the whole accelerator, its registers and the loaded table included",
        "s_axi_ctrl_*": f"AXI4-Lite subordinate, 32-bit data, {ADDR_WIDTH}-bit address (4 KiB): the registers "
                        "below. No AWPROT / ARPROT",
        "s_axis_*": "AXI4-Stream in (from the AXI DMA's MM2S): a job's frames, each a header beat and then its "
                    "beats (below); TLAST on the job's last beat",
        "m_axis_*": f"AXI4-Stream out (to S2MM): a VOCODE job's PCM, {C} samples per beat (per block of {C} "
                    "samples, per output channel), TLAST on the job's last beat; TKEEP all ones",
        "m_axi_x_*": manager.format(port=0, what="x (residual activations)", reg="X_ADDR"),
        "m_axi_skip_*": manager.format(port=1, what="skip-sum", reg="SKIP_ADDR"),
        "interrupt": "level high: GIE & (ISR != 0)",
    }
    ddr = regmap["ddr"]
    settings = [("residual, gate, skip, aux",
                 f"{net.residual_channels}, {net.gate_channels}, {net.skip_channels}, {net.aux_channels}",
                 "PWG channels R, G, S, A"),
                ("layers, stacks, kernel_size", f"{net.layers}, {net.stacks}, {net.kernel_size}",
                 "residual layers, dilation cycles, taps"),
                ("upsample_scales", " ".join(map(str, net.upsample_scales)), f"hop {net.hop_size}"),
                ("rows x cols", f"{config.rows} x {C}", "the systolic array"),
                ("gate_lanes", str(config.gate_lanes), "the gate unit's lanes"),
                ("max_frames", str(config.max_frames), "longest VOCODE job (FRAMES)"),
                *_numerics(net.numerics),
                ("s_axis tdata_width", str(config.mm2s_width), f"{S} values of {E} bits per beat"),
                ("m_axis tdata_width", str(config.s2mm_width), f"{C} samples of 16 bits per beat"),
                ("x_bytes, skip_bytes", f"{ddr['x_bytes']:,}, {ddr['skip_bytes']:,}",
                 f"the DDR scratch buffers (X_ADDR, SKIP_ADDR, {DDR_ALIGN}-byte aligned)"),
                ("sample_rate", f"{net.sample_rate} Hz", "what the driver assumes"),
                ("config_id", f"{regmap['config_id']:#010x}", "CRC-32 of the configuration (CONFIG_ID)")]
    modes = ", ".join(f"{i} {name}" for i, name in enumerate(Mode.NAMES))
    registers = ("The HLS `ap_ctrl` layout; the same map is `<name>.regmap.json` in the build folder. A LOAD job "
                 "(once after reset): write X_ADDR, SKIP_ADDR, MODE = 0 and 1 to CTRL, stream the table's frames on "
                 "`s_axis`. A VOCODE job: write MODE = 1, FRAMES, 1 to CTRL, stream the job's frames (mel, noise "
                 "and every weight: `boards.pwg_top.job_stream`), collect the PCM on `m_axis`, poll CTRL for "
                 f"ap_done. MODE: {modes}. Other addresses and writes to `ro` registers answer SLVERR.\n\n"
                 "| offset | register | access | meaning |\n|---|---|---|---|\n" + _register_rows(top))
    streams = "\n".join(f"| {stream['index']} | `{name}` | {stream['lanes']} | {stream['bits']} | "
                        f"{'LOAD' if name in LOAD_STREAMS else 'VOCODE'} |"
                        for name, stream in regmap["engine_streams"].items())
    frames = (f"A frame's header beat: `value[0]` bits 5:0 the stream (below), bit 6 ({FIRST_FLAG}) the frame's "
              f"first beat carries `first`, bit 7 ({LAST_FLAG}) its last beat carries `last`; `value[1]` the "
              f"frame's beats - 1 (up to {1 << E:,} beats). The beats follow, a stream's lanes from `value[0]` on "
              "(`rtl/pwg.py` and `rtl/frontend.py` say what each stream holds; `boards.pwg_top.load_stream` and "
              "`job_stream` build the whole input from a model, through `sim.pwg.generator_streams`):\n\n"
              "| stream | name | lanes | bits | job |\n|---|---|---|---|---|\n" + streams)
    return Design("pynq-z1 pwg (AXI top)", config.name, "wavefabric build pynq-z1 --design pwg -o DIR",
                  BOARD_DESIGNS["pwg"], top, notes, settings, clock="aclk", reset="aresetn", reset_low=True,
                  layouts={"s_axis_tdata": data.StructLayout({"value": data.ArrayLayout(unsigned(E), S)}),
                           "m_axis_tdata": data.StructLayout({"pcm": data.ArrayLayout(signed(16), C)})},
                  sections=[("Registers", registers), ("Stream frames", frames)])


def _register_rows(top) -> str:
    """The register map of ``top`` (:func:`~wavefabric.boards.top.register_map`) as markdown table rows."""
    rows = []
    for name, reg in top.core.regmap["registers"].items():
        meaning = reg["description"] + (f" = {reg['value']}" if "value" in reg else "")
        rows.append(f"| 0x{reg['offset']:02X} | {name} | {reg['access']} | {_cell(meaning)} |")
    return "\n".join(rows)


def designs() -> list[Design]:
    """Every engine that ``wavefabric verilog`` exports, at its defaults, in :data:`ENGINES` order, then the tops."""
    from ..engines import ENGINES

    return [engine_design(name) for name, engine in ENGINES.items() if engine.build is not None] + [
        top_design(), samplernn_top_design(), pwg_top_design()]


# --- Rendering ------------------------------------------------------------------------------------------------

def _lane(k: int, c: int) -> str:
    """``k * j + c`` as a bit index."""
    term = "j" if k == 1 else f"{k}*j"
    return f"{term}+{c}" if c else term


def _bits(port: str, row: Field) -> str:
    if row.lanes > 1:
        lo = _lane(row.width, row.offset)
        span = lo if row.width == 1 else f"{_lane(row.width, row.offset + row.width - 1)}:{lo}"
        return f"`{port}[{span}]`, j = 0..{row.lanes - 1}"
    hi = row.offset + row.width - 1
    return f"`{port}[{hi}:{row.offset}]`" if row.width > 1 else f"`{port}[{row.offset}]`"


def _layout_table(port: str, width: int, shape) -> str:
    """The bit layout ``shape`` of a port ``port`` of ``width`` bits as a markdown table."""
    rows = [f"| {_bits(port, row)} | `{row.name or port}` | {row.width} | {_type(row.shape)} |"
            for row in fields(shape)]
    used = sum(row.width * row.lanes for row in fields(shape))
    if used < width:
        rows.append(f"| `{port}[{width - 1}:{used}]` | (unused) | {width - used} | zero out, ignored in |")
    return "| bits | field | width | type |\n|---|---|---|---|\n" + "\n".join(rows)


def _declaration(port: Port) -> str:
    sign = "signed " if port.signed else ""
    return f"{sign}[{port.width - 1}:0]" if port.width > 1 else sign.strip()


def _instance(design: Design, port_list: list[Port]) -> str:
    decls = [_declaration(port) for port in port_list]
    left = max(len(d) for d in decls)
    wires = [f"wire {d:<{left}} {port.name};" if left else f"wire {port.name};"
             for d, port in zip(decls, port_list, strict=True)]
    name = max(len(port.name) for port in port_list)
    connections = ",\n".join(f"    .{port.name:<{name}} ({port.name})" for port in port_list)
    return "```verilog\n" + "\n".join(wires) + f"\n\n{design.module} u_{design.module} (\n{connections}\n);\n```"


def _cell(text: str) -> str:
    """``text`` for a markdown table cell (a ``|`` would end the cell)."""
    return text.replace("|", "\\|")


def _port_rows(design: Design, port_list: list[Port]) -> str:
    rows, described = [], set()
    for port in port_list:
        if port.name == design.clock:
            kind, meaning = "clock", "rising edge"
        elif port.name == design.reset:
            kind, meaning = "reset", f"active {'low' if design.reset_low else 'high'}, synchronous"
        elif port.name in design.layouts:
            kind, meaning = "lanes, below", ""
        else:
            kind, meaning = "struct, below" if _layout(port.shape) is not None else _type(port.shape), ""
        key = next((key for key in design.notes if fnmatch.fnmatchcase(port.member, key)), None)
        if key is not None and key not in described:  # said once, on the member's (or glob's) first port
            described.add(key)
            meaning = f"{meaning}: {design.notes[key]}" if meaning else design.notes[key]
        rows.append(f"| `{port.name}` | {port.direction} | {port.width} | {kind} | {_cell(meaning)} |")
    return "| port | dir | width | type | meaning |\n|---|---|---|---|---|\n" + "\n".join(rows)


def render(design: Design) -> str:
    """The section of the document on ``design``: ports, payload layouts, fixed settings, an instance."""
    port_list = ports(design)
    parts = [f"## {design.title}", f"{design.summary[0].upper()}{design.summary[1:]}. Module `{design.module}`, "
             f"written by `{design.command}`.", "### Ports", _port_rows(design, port_list)]
    laid_out = [(port, _layout(port.shape) or design.layouts.get(port.name)) for port in port_list
                if _layout(port.shape) is not None or port.name in design.layouts]
    if laid_out:
        parts.append("### Payload layouts")
        groups: dict[str, list[tuple[Port, Any]]] = {}
        for port, shape in laid_out:  # ports with the same layout share one table, written for a port PORT
            groups.setdefault(_layout_table("PORT", port.width, shape), []).append((port, shape))
        for table, group in groups.items():
            if len(group) == 1:
                port, shape = group[0]
                parts.append(f"`{port.name}` ({port.width} bits):\n\n{_layout_table(port.name, port.width, shape)}")
            else:
                names = ", ".join(f"`{port.name}`" for port, _ in group)
                parts.append(f"{names} ({group[0][0].width} bits each; `PORT` is each of them):\n\n{table}")
    parts += ["### Fixed settings",
              "| setting | value | meaning |\n|---|---|---|\n"
              + "\n".join(f"| `{name}` | {value} | {_cell(meaning)} |" for name, value, meaning in design.settings)]
    for heading, text in design.sections:
        parts += [f"### {heading}", text]
    parts += ["### Instance", _instance(design, port_list)]
    return "\n\n".join(parts) + "\n"


_PREAMBLE = f"""# Verilog interfaces

The ports of every engine that `wavefabric verilog ENGINE` writes, at its default parameters, and of the PYNQ-Z1
accelerator tops (GRU, SampleRNN), named as in the exported Verilog. Other parameters change widths, lane counts and the
settings, not the names.

Generated from the components' signatures and attributes by `{REGENERATE}`
(`sim/interface.py`), which also checks every port against the exported Verilog; `tests/test_interface.py` fails
when this file and the hardware disagree. Do not edit it by hand.

## Conventions

- **Clock and reset.** An engine has one clock, `clk` (every register on its rising edge), and `rst`: active
  high, synchronous (sampled at a rising edge of `clk`; one cycle is enough). Reset returns every register to
  its initial value, which the Verilog also declares, so registers start there at configuration too; memory
  contents (weights, tables) are not cleared. In a block design drive `rst` from a Processor System Reset's
  `peripheral_reset`. The AXI top has `aclk` and `aresetn` (active low, synchronous) instead.
- **Streams.** A stream `X` is three ports: `X__payload`, `X__valid` (from the source) and `X__ready` (from the
  sink). A beat transfers at a rising clock edge where `X__valid` and `X__ready` are both high. The source
  raises `valid` without waiting for `ready` and holds `valid` and `payload` until the transfer (AXI4-Stream's
  rule, so an AXI4-Stream interface connects as `tdata` = payload, `tvalid`, `tready`, `tlast` = the payload's
  `last`). A sink may look at the payload before it takes the beat. Vivado infers no interfaces from these
  names: connect the ports one by one.
- **Framing.** `first` / `last` in a payload mark the first and last beat of a frame (a tile, a command, a
  layer: see each engine); an engine counts beats itself and raises its sticky `error` where they disagree.
- **Bits.** `PORT[hi:lo]` is a field of a payload port, bit 0 the least significant. An array of lanes is one
  row: lane `j` of a `W`-bit field at offset `o` is `PORT[W*j+o+W-1:W*j+o]`. Signed values are two's
  complement. A format `Qm.n` is m integer bits (sign included) and n fractional bits: value = integer / 2^n.
"""


def render_document(design_list: Sequence[Design] | None = None) -> str:
    """The whole of ``docs/verilog.md``: the conventions, then :func:`render` of every design.

    ``design_list`` defaults to :func:`designs`.
    """
    design_list = designs() if design_list is None else design_list
    contents = "\n".join(f"- [{d.title}](#{_anchor(d.title)}): `{d.module}`" for d in design_list)
    return _PREAMBLE + "\n## Designs\n\n" + contents + "\n\n" + "\n".join(render(d) for d in design_list)


def _anchor(title: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but ``-`` and ``_`` dropped, spaces to ``-``."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m wavefabric.sim.interface [FILE]``: check, then write the document.

    Every design is checked against its exported Verilog first; the document goes to ``FILE`` (atomically) or
    to standard output.
    """
    parser = argparse.ArgumentParser(prog="python -m wavefabric.sim.interface", description=__doc__.split("\n")[0])
    parser.add_argument("output", nargs="?", help="file to write (default: standard output)")
    args = parser.parse_args(argv)
    design_list = designs()
    for design in design_list:
        print(f"checking {design.module} against its Verilog", file=sys.stderr, flush=True)
        check_verilog(design)
    text = render_document(design_list)
    if args.output is None:
        sys.stdout.write(text)
    else:
        with atomic_write(args.output) as file:
            file.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
