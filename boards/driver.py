"""Drivers of the overlays, each on a PYNQ board or on its simulated twin, with the same calls on both.

**The SampleRNN overlay** (:mod:`wavefabric.boards.samplernn_top`): :class:`SampleRNNOverlay` with
``load(checkpoint)`` and ``generate(seconds, seed, temperature) -> int16 ndarray``; ``backend="pynq"`` on a
board (registers by MMIO, the load and the samples through the AXI DMA, the MLP input table in a ``pynq.allocate``
buffer), ``backend="sim"`` on the overlay's exported Verilog on Verilator with the DDR model. Bad input (a register
map that does not match the bitstream's configuration registers, a checkpoint of other sizes, a job longer than
its register and the DMA allow) raises one ``ValueError`` before anything reaches the hardware.

**The PWG vocoder overlay** (:mod:`wavefabric.boards.pwg_top`): :class:`PWGOverlay` with ``load(checkpoint)`` and
``vocode(mel, seed) -> int16 ndarray``, bit-exact with :meth:`~wavefabric.model.pwg.PWGFixed.inference`;
``backend="pynq"`` (registers by MMIO, the table, mels, noise, weights and PCM through the AXI DMA, the activations in
two ``pynq.allocate`` buffers) or ``backend="sim"`` (the overlay's Verilog on Verilator with the DDR model). A mel
longer than the build's ``max_frames`` is vocoded in blocks with context. The same bad input is refused the same way.

**The GRU accelerator** (:mod:`wavefabric.boards.top`). The same high-level calls work on both backends
(:class:`GruApi`):

* ``load_weights(params)``: a WEIGHTS job then a BIAS job (:class:`~wavefabric.sim.gru.GruParams`, integers).
* ``reset_state(h0)``: a STATE job, ``h0`` of shape ``(layers, hidden)``.
* ``run_steps(xs)``: a STEPS job per chunk of ``xs`` (``(T, input_size)``); returns the last layer's h' after
  each step, ``(T, hidden)`` int64, bit-exact with :func:`~wavefabric.model.kernels.gru_cell`.

Backends:

* ``GruDriver(regmap, backend="sim")``: :class:`~wavefabric.boards.top.GruAxiCore` in Amaranth's simulator; each
  job is AXI4-Lite register writes (MODE, STEPS, CTRL), AXI4-Stream beats in and out, and AXI4-Lite polls of
  CTRL until ap_done, all in simulated time, optionally with seeded random stalls. ``WAVEFABRIC_VCD=DIR`` traces
  the whole session to ``DIR/<top>_driver.vcd`` (written when the driver is closed).
* ``GruIP``: a ``pynq.DefaultIP`` subclass bound to the top's VLNV (``xilinx.com:module_ref:<top>:1.0``); after
  ``ip.attach(overlay.axi_dma, "<name>.regmap.json")`` it runs the jobs through ``pynq.allocate`` buffers and the
  AXI DMA. pynq is imported only when ``GruIP`` (or :func:`pynq_driver_class`) is first used, so this module
  imports without it.

The register map JSON (:func:`~wavefabric.boards.top.write_register_map`) is the driver's only description of the
hardware: offsets, modes, beat counts and the configuration come from it.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..model.checks import check_int
from .pwg_top import PWGTopConfig
from .pwg_top import config_from_register_map as pwg_config_from_register_map
from .samplernn_top import SampleRNNTopConfig
from .samplernn_top import config_from_register_map as samplernn_config_from_register_map
from .top import GruTopConfig, config_from_register_map, load_register_map, vlnv

__all__ = ["GruApi", "GruDriver", "pynq_driver_class", "pynq_job", "MAX_TRANSFER_BYTES", "MAX_JOB_SAMPLES",
           "SampleRNNOverlay", "write_weights", "PWGOverlay", "write_pwg_weights"]

#: Longest AXI DMA transfer with the 26-bit length register of the generated block design.
MAX_TRANSFER_BYTES = (1 << 26) - 1


class GruApi:
    """The high-level calls, over a backend with ``write(offset, value)``, ``read(offset)`` and
    ``stream(send, recv_beats) -> received`` (rows of ``tdata_width // element_bits`` stream elements)."""

    regmap: dict
    config: GruTopConfig

    def _bind(self, regmap, backend) -> None:
        self.regmap = load_register_map(regmap)
        self.config = config_from_register_map(self.regmap)
        self._backend = backend
        stream = self.regmap["stream"]
        self._dtype = np.dtype(f"<i{stream['element_bits'] // 8}")
        self._row = stream["tdata_width"] // stream["element_bits"]

    def _offset(self, name: str) -> int:
        return self.regmap["registers"][name]["offset"]

    def read_register(self, name: str) -> int:
        """The value of register ``name`` (a read of CTRL clears ap_done and ap_ready)."""
        return self._backend.read(self._offset(name))

    def _rows(self, beats) -> np.ndarray:
        """Beats of ``simd`` values as whole TDATA rows (zero padded), in the stream's element type."""
        beats = np.asarray(beats, dtype=np.int64)
        rows = np.zeros((len(beats), self._row), dtype=self._dtype)
        rows[:, :beats.shape[1]] = beats
        return rows

    def _job(self, mode: str, beats, steps: int = 0, recv_beats: int = 0) -> np.ndarray:
        """Run one job: MODE, STEPS, ap_start, stream ``beats`` in and ``recv_beats`` out, wait for ap_done."""
        rows = self._rows(beats)
        if rows.nbytes > MAX_TRANSFER_BYTES or recv_beats * rows.itemsize * self._row > MAX_TRANSFER_BYTES:
            raise ValueError(f"a {mode} job of {len(rows)} beats exceeds the DMA's {MAX_TRANSFER_BYTES}-byte transfer")
        backend = self._backend
        backend.write(self._offset("MODE"), self.regmap["modes"][mode])
        backend.write(self._offset("STEPS"), steps)
        received = backend.stream(rows, recv_beats, self._offset("CTRL"))
        status = backend.read(self._offset("STATUS"))
        if status:
            raise RuntimeError(f"{mode} job: STATUS {status:#x} (bit 0 engine framing, bit 1 s_axis TLAST error)")
        return received[:, :self.config.simd].astype(np.int64)

    def load_weights(self, params) -> None:
        """Load every layer's weights and biases (a :class:`~wavefabric.sim.gru.GruParams` of integers)."""
        from ..rtl.gru import GruCommand
        from ..sim.gru import command_beats, weight_beats

        geo = self.config.geometry
        self._job("WEIGHTS", [b["data"] for b in weight_beats(geo, params)])
        bias = command_beats(geo, GruCommand.BIAS, geo.bias_values(params.b_ih, params.b_hh))
        self._job("BIAS", [b["data"] for b in bias])

    def reset_state(self, h0) -> None:
        """Load the hidden state of every layer, ``(layers, hidden)`` act integers."""
        from ..rtl.gru import GruCommand
        from ..sim.gru import command_beats

        geo = self.config.geometry
        h0 = np.asarray(h0, dtype=np.int64)
        if h0.shape != (geo.layers, geo.hidden) and h0.shape != (geo.layers * geo.hidden,):
            raise ValueError(f"h0 must have shape ({geo.layers}, {geo.hidden}), not {h0.shape}")
        self._job("STATE", [b["data"] for b in command_beats(geo, GruCommand.STATE, h0)])

    def run_steps(self, xs) -> np.ndarray:
        """Run one GRU step per row of ``xs`` (``(T, input_size)`` act integers); return h' ``(T, hidden)``.

        Steps are sent as few STEPS jobs as the DMA's transfer length allows (one for any practical T).
        """
        geo = self.config.geometry
        xs = np.asarray(xs, dtype=np.int64)
        if xs.ndim == 1:
            xs = xs[None]
        if xs.ndim != 2 or xs.shape[1] != geo.input_size:
            raise ValueError(f"xs must have shape (T, {geo.input_size}), not {xs.shape}")
        padded = np.zeros((len(xs), geo.x_words[0] * geo.simd), dtype=np.int64)
        padded[:, :geo.input_size] = xs
        step_bytes = max(geo.x_words[0], geo.h_words) * self._row * self._dtype.itemsize
        chunk = max(1, MAX_TRANSFER_BYTES // step_bytes)
        outputs = []
        for start in range(0, len(xs), chunk):
            part = padded[start:start + chunk]
            out = self._job("STEPS", part.reshape(-1, geo.simd), steps=len(part), recv_beats=len(part) * geo.h_words)
            outputs.append(out.reshape(len(part), geo.h_words * geo.simd)[:, :geo.hidden])
        return np.concatenate(outputs) if outputs else np.zeros((0, geo.hidden), dtype=np.int64)

    @property
    def cycles(self) -> int:
        """Clock cycles of the last job, start to done (the CYCLES register)."""
        return self.read_register("CYCLES")


class _SimBackend:
    """:class:`~wavefabric.boards.top.GruAxiCore` in a simulation that persists between jobs.

    Three background testbenches serve the AXI4-Lite bus, ``s_axis`` and ``m_axis``; a call queues work on them
    and advances the simulation until all of it is done, so register accesses and both streams overlap in
    simulated time as they do on the board.
    """

    #: Cycles from a job's start within which its streams must have moved every beat.
    MAX_CYCLES = 1_000_000

    def __init__(self, config: GruTopConfig, seed: int, p_valid: float, p_ready: float):
        from amaranth.sim import Simulator

        from ..sim.streams import CLOCK_PERIOD, VCD_ENV
        from .top import GruAxiCore

        self.core = core = GruAxiCore(config)
        self._rng = random.Random(f"{seed}-ctrl") if min(p_valid, p_ready) < 1 else None
        self._seed, self._p_valid, self._p_ready, self._jobs = seed, p_valid, p_ready, 0
        self._queues: dict[str, list] = {"ctrl": [], "s_axis": [], "m_axis": []}
        self._sim = Simulator(core)
        self._sim.add_clock(CLOCK_PERIOD)
        for name in self._queues:
            self._sim.add_testbench(self._server(name), background=True)
        self._stack = contextlib.ExitStack()
        folder = os.environ.get(VCD_ENV)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            self._stack.enter_context(self._sim.write_vcd(str(Path(folder, f"{config.name}_driver.vcd"))))

    def _server(self, name: str):
        queue = self._queues[name]

        async def serve(ctx):
            while True:
                if queue:
                    work, box = queue.pop(0)
                    box["result"] = await work(ctx)
                    box["done"] = True
                else:
                    await ctx.tick()
        return serve

    def _run(self, **work) -> dict:
        """Queue ``work`` (channel name to ``async def(ctx)``) and simulate until all of it has returned."""
        boxes = {}
        for name, fn in work.items():
            boxes[name] = {"done": False}
            self._queues[name].append((fn, boxes[name]))
        while not all(box["done"] for box in boxes.values()):
            self._sim.advance()
        return {name: box["result"] for name, box in boxes.items()}

    def write(self, offset: int, value: int) -> None:
        from ..sim.axi import axil_write

        async def work(ctx):
            return await axil_write(ctx, self.core.ctrl, offset, value, rng=self._rng)
        resp = self._run(ctrl=work)["ctrl"]
        if resp:
            raise RuntimeError(f"AXI4-Lite write of {value:#x} to {offset:#x}: response {resp:#04b}")

    def read(self, offset: int) -> int:
        from ..sim.axi import axil_read

        async def work(ctx):
            return await axil_read(ctx, self.core.ctrl, offset, rng=self._rng)
        data, resp = self._run(ctrl=work)["ctrl"]
        if resp:
            raise RuntimeError(f"AXI4-Lite read of {offset:#x}: response {resp:#04b}")
        return data

    def stream(self, rows: np.ndarray, recv_beats: int, ctrl_offset: int) -> np.ndarray:
        """Start the job, send ``rows`` on ``s_axis`` (TLAST on the last), receive ``recv_beats``, wait for done.

        The streams stall as ``run_streams``' do, each job's by patterns of its own (seeded by the driver's seed
        and the job's number).
        """
        from ..sim.axi import axil_read, axil_write, axis_receive, axis_send
        from ..sim.streams import stall_patterns

        core, job = self.core, self._jobs
        self._jobs += 1
        beats = [(int.from_bytes(row.tobytes(), "little"), i == len(rows) - 1) for i, row in enumerate(rows)]
        gaps, ready = stall_patterns(self._seed, {f"s_axis/{job}": len(beats)},
                                     [f"m_axis/{job}"] if recv_beats else [], self._p_valid, self._p_ready,
                                     self.MAX_CYCLES)

        async def control(ctx):
            if await axil_write(ctx, core.ctrl, ctrl_offset, 1, rng=self._rng):
                raise RuntimeError("AXI4-Lite write to CTRL failed")
            while True:
                value, _ = await axil_read(ctx, core.ctrl, ctrl_offset, rng=self._rng)
                if value & 0b10:  # ap_done
                    return value

        async def send(ctx):
            return await axis_send(ctx, core.s_axis, beats, gaps[f"s_axis/{job}"], timeout=self.MAX_CYCLES)

        async def receive(ctx):
            return await axis_receive(ctx, core.m_axis, recv_beats, ready[f"m_axis/{job}"], timeout=self.MAX_CYCLES)

        work = {"ctrl": control, "s_axis": send}
        if recv_beats:
            work["m_axis"] = receive
        results = self._run(**work)
        if not recv_beats:
            return np.zeros((0, rows.shape[1]), dtype=rows.dtype)
        received = results["m_axis"][0]
        if [last for _, last in received] != [i == recv_beats - 1 for i in range(recv_beats)]:
            raise RuntimeError("m_axis: TLAST not on exactly the job's last beat")
        nbytes = rows.shape[1] * rows.itemsize
        raw = b"".join(tdata.to_bytes(nbytes, "little") for tdata, _ in received)
        return np.frombuffer(raw, dtype=rows.dtype).reshape(recv_beats, rows.shape[1])

    def close(self) -> None:
        self._stack.close()


class GruDriver(GruApi):
    """The GRU accelerator's high-level calls (:class:`GruApi`) on a backend.

    Parameters
    ----------
    regmap : dict or path
        The register map (:func:`~wavefabric.boards.top.register_map`) or its JSON file.
    backend : {"sim", "pynq"}
        ``"sim"``: the simulated twin. ``"pynq"``: a board; pass ``ip`` (the accelerator's ``pynq.DefaultIP``,
        or any object with ``read`` / ``write``) and ``dma`` (the overlay's AXI DMA).
    seed, p_valid, p_ready
        Simulation only: with ``p_valid`` / ``p_ready`` below 1 (in (0, 1]) the AXI4-Lite manager and the input
        stream have random gaps and the output stream random stalls, from generators seeded by ``seed``.
    """

    def __init__(self, regmap, backend: str = "sim", *, ip=None, dma=None, seed: int = 0, p_valid: float = 1.0,
                 p_ready: float = 1.0):
        for name, p in (("p_valid", p_valid), ("p_ready", p_ready)):
            if not 0 < p <= 1:
                raise ValueError(f"{name} must be in (0, 1], not {p!r}")
        regmap = load_register_map(regmap)
        if backend == "sim":
            impl = _SimBackend(config_from_register_map(regmap), seed, p_valid, p_ready)
        elif backend == "pynq":
            if ip is None or dma is None:
                raise ValueError("backend 'pynq' needs ip (the accelerator) and dma (the AXI DMA)")
            impl = _PynqBackend(ip, dma)
        else:
            raise ValueError(f"backend must be 'sim' or 'pynq', not {backend!r}")
        self._bind(regmap, impl)
        if backend == "pynq":
            _check_hardware(self)

    def close(self) -> None:
        """End a simulation (writes its VCD trace, if one was asked for)."""
        if isinstance(self._backend, _SimBackend):
            self._backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _check_hardware(api: GruApi) -> None:
    """Raise ``ValueError`` unless the configuration registers match the register map."""
    for name, reg in api.regmap["registers"].items():
        if "value" in reg:
            got = api.read_register(name)
            if got != reg["value"]:
                raise ValueError(f"register {name} reads {got}, the register map says {reg['value']}: "
                                 "the bitstream and the JSON do not belong together")


class _PynqBackend:
    """Register access through a ``pynq.DefaultIP`` (MMIO) and streams through ``pynq.allocate`` and the AXI DMA."""

    #: Seconds to wait for ap_done after the DMA transfers completed.
    TIMEOUT = 10.0

    def __init__(self, ip, dma):
        self.ip, self.dma = ip, dma

    def write(self, offset: int, value: int) -> None:
        self.ip.write(offset, value)

    def read(self, offset: int) -> int:
        return self.ip.read(offset)

    def stream(self, rows: np.ndarray, recv_beats: int, ctrl_offset: int) -> np.ndarray:
        received = pynq_job(self.ip, self.dma, ctrl_offset, rows, (recv_beats, rows.shape[1]), rows.dtype,
                            self.TIMEOUT)
        return received if received is not None else np.zeros((0, rows.shape[1]), dtype=rows.dtype)


def pynq_job(ip, dma, ctrl_offset: int, send: np.ndarray | None, recv_shape: tuple, recv_dtype,
             timeout: float) -> np.ndarray | None:
    """One job on a board: arm the S2MM channel (if ``recv_shape`` holds any beat), start the job (ap_start),
    send ``send`` (if any) through MM2S, wait for both transfers and for ap_done; return what S2MM received.

    Buffers come from ``pynq.allocate`` and are freed at the end; ``TimeoutError`` if ap_done does not come
    within ``timeout`` seconds of the transfers.
    """
    import pynq

    send_buffer = pynq.allocate(shape=send.shape, dtype=send.dtype) if send is not None and send.size else None
    recv = pynq.allocate(shape=recv_shape, dtype=recv_dtype) if recv_shape[0] else None
    try:
        if send_buffer is not None:
            send_buffer[:] = send
            send_buffer.flush()
        # The S2MM channel completes on TLAST: arm it before the job can produce output.
        if recv is not None:
            dma.recvchannel.transfer(recv)
        ip.write(ctrl_offset, 1)
        if send_buffer is not None:
            dma.sendchannel.transfer(send_buffer)
            dma.sendchannel.wait()
        if recv is not None:
            dma.recvchannel.wait()
            recv.invalidate()
        deadline = time.monotonic() + timeout
        while not ip.read(ctrl_offset) & 0b10:  # ap_done
            if time.monotonic() > deadline:
                raise TimeoutError(f"no ap_done {timeout} s after the DMA transfers")
        return np.array(recv) if recv is not None else None
    finally:
        for buffer in (send_buffer, recv):
            if buffer is not None:
                buffer.freebuffer()


_DRIVER_CLASSES: dict[str, type] = {}


def pynq_driver_class(top: str = GruTopConfig.name) -> type:
    """The ``pynq.DefaultIP`` subclass bound to ``xilinx.com:module_ref:<top>:1.0`` (created once per name).

    PYNQ binds drivers when an ``Overlay`` is loaded: call this (or import ``GruIP``) before. The IP offers
    :class:`GruApi`'s calls after ``ip.attach(dma, regmap)``.
    """
    if top not in _DRIVER_CLASSES:
        import pynq

        class GruIP(pynq.DefaultIP, GruApi):
            bindto = [vlnv(top)]

            def attach(self, dma, regmap) -> GruIP:
                """Use ``dma`` (the overlay's AXI DMA) and ``regmap`` (dict or JSON path); check the hardware."""
                self._bind(regmap, _PynqBackend(self, dma))
                _check_hardware(self)
                return self

        GruIP.__qualname__ = GruIP.__name__ = f"GruIP_{top}" if top != GruTopConfig.name else "GruIP"
        _DRIVER_CLASSES[top] = GruIP
    return _DRIVER_CLASSES[top]


def __getattr__(name: str):
    # ``from wavefabric.boards.driver import GruIP`` imports pynq only then.
    if name == "GruIP":
        return pynq_driver_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- The SampleRNN overlay ------------------------------------------------------------------------------------

#: Longest GENERATE job: the SAMPLES register (32 bits) and one S2MM transfer of 4-byte samples.
MAX_JOB_SAMPLES = min((1 << 32) - 1, MAX_TRANSFER_BYTES // 4)


def _samplernn_params(checkpoint, config: SampleRNNTopConfig):
    """The :class:`~wavefabric.model.samplernn.SampleRNNParams` of ``checkpoint``, checked against ``config``."""
    from collections.abc import Mapping

    from ..model.samplernn import SampleRNNParams, load_checkpoint

    net = config.network
    sizes = (f"frame sizes {' '.join(map(str, net.frame_sizes))}, n_rnn {net.n_rnn}, dim {net.dim}, "
             f"{net.q_levels} levels, weight_norm {net.weight_norm}")
    try:
        if isinstance(checkpoint, SampleRNNParams):
            if checkpoint.config != net:
                raise ValueError(f"its configuration is {checkpoint.config}")
            return checkpoint
        if isinstance(checkpoint, Mapping):
            return SampleRNNParams.from_state_dict(net, checkpoint)
        if Path(checkpoint).suffix == ".npz":
            with np.load(checkpoint, allow_pickle=False) as arrays:
                return SampleRNNParams.from_state_dict(net, dict(arrays))
        return load_checkpoint(checkpoint, net)
    except ValueError as error:
        raise ValueError(f"the checkpoint does not fit the overlay's sizes ({sizes}): {error}") from None


def write_weights(config: SampleRNNTopConfig, state_dict, path: str | os.PathLike) -> Path:
    """Write a samplernn-pytorch state dict as a NumPy ``.npz`` that :meth:`SampleRNNOverlay.load` reads without
    torch (on a PYNQ image), atomically; return the path.

    The state dict is checked against ``config`` first (``ValueError`` naming the first tensor that does not fit)
    and stored as float64 arrays without a ``model.`` prefix.
    """
    from ..model.checkpoint import read_state_dict
    from ..model.files import atomic_write
    from ..model.samplernn import state_dict_shapes

    try:
        arrays = read_state_dict(state_dict, state_dict_shapes(config.network), weight_norm_option="weight_norm",
                                 strip_prefix="model.")
    except ValueError as error:
        raise ValueError(f"the checkpoint does not fit the overlay's sizes: {error}") from None
    path = Path(path)
    with atomic_write(path, "wb") as file:
        np.savez(file, **arrays)
    return path


def _overlay_backend(backend: str, source, overlay, ip, dma, sim: Callable[[], object],
                     board: Callable[[object, object], object]):
    """An overlay driver's backend: ``sim()`` (the twin), or on a board ``board(ip, dma)`` of the given
    ``overlay`` (its ``accel`` and ``dma``), of ``ip`` and ``dma``, or of the bitstream beside the register map
    ``source`` (a path), checked against the register map's configuration registers."""
    if backend == "sim":
        return sim()
    if backend != "pynq":
        raise ValueError(f"backend must be 'sim' or 'pynq', not {backend!r}")
    if overlay is None and ip is None:
        if isinstance(source, dict):
            raise ValueError("backend 'pynq' needs overlay, or ip and dma, when regmap is a dict")
        import pynq

        overlay = pynq.Overlay(str(Path(source)).removesuffix(".regmap.json") + ".bit")
    if overlay is not None:
        ip, dma = overlay.accel, overlay.dma
    if ip is None or dma is None:
        raise ValueError("backend 'pynq' needs ip (the accelerator) and dma (the AXI DMA)")
    driver = board(ip, dma)
    _check_hardware(driver)
    return driver


class SampleRNNOverlay:
    """The SampleRNN overlay (:mod:`wavefabric.boards.samplernn_top`): on a PYNQ board, or its simulated twin.

    ``load(checkpoint)`` once, then ``generate(seconds, seed, temperature)`` as often as wanted. Every job starts
    afresh from the network's h0, so a generation depends only on the weights, ``seconds``, ``seed`` and
    ``temperature``: it equals :meth:`~wavefabric.model.samplernn.SampleRNNFixed.generate` bit for bit, on the
    board and on the twin.

    Parameters
    ----------
    regmap : dict or path
        The register map JSON of the build (``<name>.regmap.json``). It must be a SampleRNN map whose
        ``config_id`` is its configuration's.
    backend : {"pynq", "sim"}
        ``"pynq"``: a board. Give ``overlay`` (a loaded ``pynq.Overlay`` whose accelerator is ``accel`` and
        AXI DMA ``dma``, as the build names them), or ``ip`` and ``dma``, or neither: then the ``.bit`` beside
        the JSON is loaded. The configuration registers are read and compared with the JSON first.
        ``"sim"``: the simulated twin: the top's core through its :class:`~wavefabric.boards.shell.StreamView`,
        with the DDR model (:class:`~wavefabric.sim.streams.AxiReadMemory`) holding the table.
    simulator : {"verilator", "amaranth"}
        Twin only: the exported Verilog on Verilator (the default; built once, then cached) or Amaranth's
        simulator (small sizes only).
    latency, seed, p_valid, p_ready
        Twin only: the DDR model's read latency in cycles, and random stalls on every AXI channel (``p`` below 1)
        from generators seeded by ``seed``.

    Attributes
    ----------
    config : SampleRNNTopConfig
    sample_rate : int
    cycles : int
        CYCLES of the last GENERATE job (clock cycles, start to done).
    saturated : int
        SATURATED of the last GENERATE job: bit i set when narrowing i
        (:func:`~wavefabric.model.samplernn.saturation_names`) saturated a value.
    codes : np.ndarray
        The sample codes of the last generation.
    """

    def __init__(self, regmap, backend: str = "pynq", *, overlay=None, ip=None, dma=None,
                 simulator: str = "verilator", latency: int = 40, seed: int = 0, p_valid: float = 1.0,
                 p_ready: float = 1.0):
        source = regmap
        self.regmap = load_register_map(regmap)
        self.config = samplernn_config_from_register_map(self.regmap)
        self.sample_rate = self.config.sample_rate
        self.cycles = self.saturated = 0
        self.codes = np.zeros(0, dtype=np.int64)
        self._model = None
        self._backend = _overlay_backend(
            backend, source, overlay, ip, dma,
            lambda: _SampleRNNSim(self.config, self.regmap, simulator, latency, seed, p_valid, p_ready),
            lambda ip, dma: _SampleRNNPynq(ip, dma, self.regmap))

    def load(self, checkpoint, formats=None) -> None:
        """Load the weights of ``checkpoint``: a samplernn-pytorch ``.pt`` (needs torch), an ``.npz`` of its
        state dict (:func:`write_weights`; no torch needed), a state dict, or a ``SampleRNNParams``; with
        ``formats`` (a formats JSON that ``wavefabric profile samplernn`` writes, or a ``SampleRNNFormats``; default:
        chosen for the checkpoint) its tensors' formats, whose shifts the load gives the accelerator.

        Raises ``ValueError`` for a checkpoint (or formats) of other sizes than the overlay's, before anything
        reaches the hardware.
        """
        from ..model.samplernn import SampleRNNFixed, SampleRNNFormats
        from ..sim.samplernn import table_image
        from .samplernn_top import load_stream

        params = _samplernn_params(checkpoint, self.config)
        if formats is not None and not isinstance(formats, SampleRNNFormats):
            formats = SampleRNNFormats.load(formats, params.config)
        model = SampleRNNFixed(params, formats=formats)
        self._backend.load(load_stream(self.config, model), table_image(self.config.layout, model, 0), model)
        self._model = model

    def samples(self, seconds: float) -> int:
        """Samples in ``seconds`` of audio; ``ValueError`` unless 1 to :data:`MAX_JOB_SAMPLES`."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not np.isfinite(seconds) \
                or seconds <= 0:
            raise ValueError(f"seconds must be a finite number > 0, not {seconds!r}")
        n = round(seconds * self.sample_rate)
        if not 1 <= n <= MAX_JOB_SAMPLES:
            raise ValueError(f"seconds {seconds:g} is {n:,} samples at {self.sample_rate} Hz; a job holds 1 to "
                             f"{MAX_JOB_SAMPLES:,} (one DMA transfer of 4-byte samples, the SAMPLES register): "
                             f"at most {MAX_JOB_SAMPLES / self.sample_rate:,.1f} s")
        return n

    def generate(self, seconds: float, seed: int = 0, temperature: float = 1.0, play: bool = False) -> np.ndarray:
        """Generate ``seconds`` of audio from ``seed`` at ``temperature``: int16 PCM at :attr:`sample_rate`.

        ``play`` (an overlay built with ``--audio-out``, on a board): the samples go to the board's audio output
        instead, through the player's FIFO at the sample rate, and nothing comes back (an empty array); the call
        returns when the FIFO has taken the last sample (its last ``audio_fifo`` samples still play).

        Raises ``ValueError`` for a length beyond one job, a negative seed, a temperature the sampler cannot hold
        or ``play`` where there is no player, and ``RuntimeError`` before :meth:`load`; all before anything
        reaches the hardware.
        """
        from ..model.sampler import seed_state, temperature_int

        n = self.samples(seconds)
        if play and not self.config.audio_out:
            raise ValueError("play needs an overlay built with --audio-out: this one has no audio output")
        if play and isinstance(self._backend, _SampleRNNSim):
            raise ValueError("play needs a board: the simulated twin has no audio output (its PWM is checked in "
                             "tests/test_player.py)")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, not {seed!r}")
        tq = temperature_int(temperature)
        if self._model is None:
            raise RuntimeError("no weights: call load(checkpoint) first")
        words, self.cycles, self.saturated = self._backend.generate(n, seed_state(int(seed)), tq, play)
        self.codes = (words >> 16).astype(np.int64)
        return (words & 0xFFFF).astype(np.uint16).view(np.int16)

    @property
    def model(self):
        """The :class:`~wavefabric.model.samplernn.SampleRNNFixed` of the loaded weights (None before)."""
        return self._model


class _SampleRNNPynq:
    """The SampleRNN overlay on a board: registers through ``ip``, the load and the samples through ``dma``."""

    TIMEOUT = 60.0

    def __init__(self, ip, dma, regmap: dict):
        self.ip, self.dma, self.regmap = ip, dma, regmap
        self.table = None  # the DDR buffer of the MLP input table, kept while the overlay lives

    def read_register(self, name: str) -> int:
        return self.ip.read(self.regmap["registers"][name]["offset"])

    def write_register(self, name: str, value: int) -> None:
        self.ip.write(self.regmap["registers"][name]["offset"], value)

    def _job(self, send, recv_count: int, seconds: float = 0.0) -> np.ndarray | None:
        """One job; ``seconds`` of playback extend the wait for ap_done."""
        received = pynq_job(self.ip, self.dma, self.regmap["registers"]["CTRL"]["offset"], send, (recv_count,),
                            np.uint32, self.TIMEOUT + seconds)
        status = self.read_register("STATUS")
        if status:
            raise RuntimeError(f"STATUS {status:#x} (bit 0 engine error, bit 1 s_axis TLAST error, bit 2 unknown "
                               "load region, bit 3 a zero v row)")
        return received

    def load(self, stream: np.ndarray, table: bytes, model) -> None:
        import pynq

        if self.table is None:
            self.table = pynq.allocate(shape=(len(table),), dtype=np.uint8)
        address = int(self.table.physical_address)
        if address % self.regmap["table_align"]:
            raise RuntimeError(f"the table buffer at {address:#x} is not {self.regmap['table_align']}-byte aligned")
        self.table[:] = np.frombuffer(table, dtype=np.uint8)
        self.table.flush()
        self.write_register("TABLE_ADDR", address)
        self.write_register("MODE", self.regmap["modes"]["LOAD"])
        self._job(stream, 0)

    def generate(self, n: int, state: int, tq: int, play: bool) -> tuple[np.ndarray, int, int]:
        for name, value in (("MODE", self.regmap["modes"]["GENERATE"]), ("SAMPLES", n), ("SEED", state),
                            ("TEMPERATURE", tq)):
            self.write_register(name, value)
        if "PLAY" in self.regmap["registers"]:
            self.write_register("PLAY", int(play))
        words = self._job(None, 0 if play else n, n / self.regmap["config"]["sample_rate"] if play else 0.0)
        return ((np.zeros(0, dtype=np.int64) if play else words), self.read_register("CYCLES"),
                self.read_register("SATURATED"))


class _Twin:
    """What an overlay's twin is run with: the simulator, the DDR model's latency, the stalls' seed and
    probabilities (validated here), and its last :class:`~wavefabric.sim.streams.StreamRun` (``run``)."""

    def __init__(self, config, regmap: dict, simulator: str, latency: int, seed: int, p_valid: float,
                 p_ready: float):
        from ..sim.streams import BACKENDS

        if simulator not in BACKENDS:
            raise ValueError(f"simulator must be one of {', '.join(BACKENDS)}, not {simulator!r}")
        for name, p in (("p_valid", p_valid), ("p_ready", p_ready)):
            if not 0 < p <= 1:
                raise ValueError(f"{name} must be in (0, 1], not {p!r}")
        check_int("latency", latency)
        self.config, self.regmap, self.simulator = config, regmap, simulator
        self.latency, self.seed, self.p_valid, self.p_ready = latency, seed, p_valid, p_ready
        self.run = None


class _SampleRNNSim(_Twin):
    """The SampleRNN overlay's twin: each :meth:`generate` simulates a whole session (table address, LOAD job,
    GENERATE job, STATUS / CYCLES / CTRL reads) through the top's AXI channels with one batched run.

    Every job starts from h0, so replaying the load before each generation is what the board computes.
    """

    def __init__(self, *settings):
        super().__init__(*settings)
        self.stream = self.table = None

    def load(self, stream: np.ndarray, table: bytes, model) -> None:
        self.stream, self.table = stream, table

    def generate(self, n: int, state: int, tq: int, play: bool) -> tuple[np.ndarray, int, int]:
        from ..sim.samplernn import TABLE_BASE
        from ..sim.streams import AxiReadMemory, run_streams
        from .samplernn_top import SampleRNNAxiCore
        from .shell import StreamView

        regs, modes = {name: reg["offset"] for name, reg in self.regmap["registers"].items()}, self.regmap["modes"]
        writes = [("TABLE_ADDR", TABLE_BASE), ("MODE", modes["LOAD"]), ("CTRL", 1),
                  ("MODE", modes["GENERATE"]), ("SAMPLES", n), ("SEED", state), ("TEMPERATURE", tq), ("CTRL", 1)]
        reads = ["STATUS", "CYCLES", "SATURATED", "CTRL"]
        words = np.ascontiguousarray(self.stream).view("<u4").astype(np.int64)
        beats = len(words)
        load = {"tdata": words, "tlast": (np.arange(beats) == beats - 1).astype(np.int64)}
        view = StreamView(SampleRNNAxiCore(self.config))
        memory = AxiReadMemory(bytes(TABLE_BASE) + self.table, latency=self.latency, p_ar_ready=self.p_valid,
                               p_r_valid=self.p_valid)
        budget = 8 * beats + (n + self.config.network.lookback) * 4000 + 10_000
        run = run_streams(
            view, {"ctrl_aw": [{"addr": regs[name]} for name, _ in writes],
                   "ctrl_w": [{"data": value, "strb": 0xF} for _, value in writes],
                   "s_axis": load, "ctrl_ar": [{"addr": regs[name]} for name in reads]},
            {"ctrl_b": len(writes), "ctrl_r": len(reads), "m_axis": n},
            # The load streams once TABLE_ADDR, MODE and CTRL are written; the GENERATE job's registers follow the
            # load; the reads follow the last sample.
            waits={"s_axis": [(0, "ctrl_b", 3)], "ctrl_aw": [(3, "s_axis")], "ctrl_w": [(3, "s_axis")],
                   "ctrl_ar": [(0, "m_axis")]},
            memories={"ddr": memory}, seed=self.seed, p_valid=self.p_valid, p_ready=self.p_ready,
            max_cycles=budget, backend=self.simulator, name=f"{self.config.name}_twin")
        self.run = run
        responses = [beat["resp"] for beat in run.outputs["ctrl_b"]]
        status, cycles, saturated, ctrl = ((beat["data"], beat["resp"]) for beat in run.outputs["ctrl_r"])
        if any(responses) or status[1] or cycles[1] or saturated[1] or ctrl[1]:
            raise RuntimeError(f"AXI4-Lite responses {responses} to the writes, {[status, cycles, saturated, ctrl]} "
                               "to the reads")
        if status[0]:
            raise RuntimeError(f"STATUS {status[0]:#x} (bit 0 engine error, bit 1 s_axis TLAST error, bit 2 "
                               "unknown load region, bit 3 a zero v row)")
        if not ctrl[0] & 0b10:
            raise RuntimeError(f"CTRL {ctrl[0]:#x}: no ap_done after the last sample")
        out = run.outputs["m_axis"]
        if [beat["tlast"] for beat in out] != [int(i == n - 1) for i in range(n)]:
            raise RuntimeError("m_axis: TLAST not on exactly the job's last sample")
        return np.array([beat["tdata"][0] for beat in out], dtype=np.int64), int(cycles[0]), int(saturated[0])


# --- The PWG vocoder overlay ----------------------------------------------------------------------------------


def _pwg_generator(checkpoint, config: PWGTopConfig):
    """The :class:`~wavefabric.model.pwg.PWGGenerator` of ``checkpoint``, checked against ``config``."""
    from collections.abc import Mapping

    from ..model.pwg import PWGGenerator, from_state_dict, load_checkpoint

    net = config.network
    sizes = (f"residual {net.residual_channels}, gate {net.gate_channels}, skip {net.skip_channels}, aux "
             f"{net.aux_channels}, {net.layers} layers in {net.stacks} stacks, upsample scales "
             f"{' '.join(map(str, net.upsample_scales))}")
    try:
        if isinstance(checkpoint, PWGGenerator):
            if checkpoint.config != net:
                raise ValueError(f"its configuration is {checkpoint.config}")
            return checkpoint
        if isinstance(checkpoint, Mapping):
            return from_state_dict(net, checkpoint)
        if Path(checkpoint).suffix == ".npz":
            with np.load(checkpoint, allow_pickle=False) as arrays:
                return from_state_dict(net, dict(arrays))
        return load_checkpoint(checkpoint, net)
    except ValueError as error:
        raise ValueError(f"the checkpoint does not fit the overlay's sizes ({sizes}): {error}") from None


def write_pwg_weights(config: PWGTopConfig, state_dict, path: str | os.PathLike) -> Path:
    """Write a ParallelWaveGAN generator state dict as a NumPy ``.npz`` that :meth:`PWGOverlay.load` reads
    without torch (on a PYNQ image), atomically; return the path.

    The state dict is checked against ``config`` first (``ValueError`` naming the first tensor that does not fit)
    and stored as the float64 arrays of the tensors the generator has (``PWGConfig.tensor_shapes``).
    """
    from ..model.files import atomic_write

    generator = _pwg_generator(state_dict, config)
    path = Path(path)
    with atomic_write(path, "wb") as file:
        np.savez(file, **generator.params)
    return path


class PWGOverlay:
    """The ParallelWaveGAN vocoder overlay (:mod:`wavefabric.boards.pwg_top`): on a PYNQ board, or its simulated
    twin.

    ``load(checkpoint)`` once, then ``vocode(mel, seed)`` as often as wanted: int16 PCM equal bit for bit to
    :meth:`~wavefabric.model.pwg.PWGFixed.inference` of the mel with the same seed (its float output times
    32768, :func:`~wavefabric.model.pwg.pcm16`), on the board and on the twin. The host draws the noise (the
    model's seeded stream) and sends it with the mel and the weights, one VOCODE job per block: a mel of up to
    ``max_frames`` frames is one job; a longer one goes in blocks of ``max_frames - 2 c`` frames with ``c =
    context_frames`` of context each side (:meth:`~wavefabric.model.pwg.PWGFixed.inference_blocks`).

    Parameters
    ----------
    regmap : dict or path
        The register map JSON of the build (``<name>.regmap.json``). It must be a PWG map whose ``config_id`` is
        its configuration's.
    backend : {"pynq", "sim"}
        ``"pynq"``: a board. Give ``overlay`` (a loaded ``pynq.Overlay`` whose accelerator is ``accel`` and AXI
        DMA ``dma``, as the build names them), or ``ip`` and ``dma``, or neither: then the ``.bit`` beside the
        JSON is loaded. The configuration registers are read and compared with the JSON first. ``"sim"``: the
        simulated twin: the top's core through its :class:`~wavefabric.boards.shell.StreamView`, with the DDR
        model (:class:`~wavefabric.sim.streams.AxiMemory`) serving both AXI4 managers.
    simulator : {"verilator", "amaranth"}
        Twin only: the exported Verilog on Verilator (the default; built once, then cached) or Amaranth's
        simulator (tiny sizes only).
    latency, seed, p_valid, p_ready
        Twin only: the DDR model's read and write latency in cycles, and random stalls on every AXI channel
        (``p`` below 1) from generators seeded by ``seed``.

    Attributes
    ----------
    config : PWGTopConfig
    sample_rate : int
    cycles : list of int
        CYCLES of each VOCODE job of the last :meth:`vocode` (clock cycles, start to done).
    saturation : list of int
        The SATURATION flags of each VOCODE job of the last :meth:`vocode` (bit 0 the front end, bit 1 + l layer
        l, bit L + 1 the skip scale or the output layers): a value left its format and was saturated.
    """

    def __init__(self, regmap, backend: str = "pynq", *, overlay=None, ip=None, dma=None,
                 simulator: str = "verilator", latency: int = 40, seed: int = 0, p_valid: float = 1.0,
                 p_ready: float = 1.0):
        source = regmap
        self.regmap = load_register_map(regmap)
        self.config = pwg_config_from_register_map(self.regmap)
        self.sample_rate = self.config.sample_rate
        self.cycles: list[int] = []
        self.saturation: list[int] = []
        self._model = None
        self._backend = _overlay_backend(
            backend, source, overlay, ip, dma,
            lambda: _PWGSim(self.config, self.regmap, simulator, latency, seed, p_valid, p_ready),
            lambda ip, dma: _PWGPynq(ip, dma, self.regmap, self.config))

    def load(self, checkpoint, formats=None) -> None:
        """Load the weights of ``checkpoint``: a parallel-wavegan ``.pkl`` / ``.pt`` (needs torch), an ``.npz``
        of its generator's state dict (:func:`write_pwg_weights`; no torch needed), a state dict, or a
        :class:`~wavefabric.model.pwg.PWGGenerator`; with ``formats`` (a formats JSON that ``wavefabric profile
        pwg`` writes, or a :class:`~wavefabric.model.pwg.PWGFormats`; default: chosen for the checkpoint by
        :func:`~wavefabric.model.pwg_profile.choose_formats`) its tensors' formats, which the LOAD job gives the
        accelerator. Any checkpoint of the overlay's sizes loads (the LOAD job resets the engine first).

        Raises ``ValueError`` for a checkpoint of other sizes than the overlay's (or whose upsampling table or
        formats the hardware cannot hold), or formats of other sizes, before anything reaches the hardware.
        """
        from ..model.pwg import PWGFixed, PWGFormats
        from ..model.pwg_profile import choose_formats
        from .pwg_top import load_stream

        generator = _pwg_generator(checkpoint, self.config)
        if formats is None:
            formats = choose_formats(generator)
        elif not isinstance(formats, PWGFormats):
            formats = PWGFormats.load(formats, generator.config)
        try:
            model = PWGFixed(generator, formats)
        except ValueError as error:
            raise ValueError(f"the checkpoint does not fit the overlay's formats: {error}") from None
        self._backend.load(load_stream(self.config, model))
        self._model = model

    def block_frames(self, frames: int) -> int:
        """Mel frames per VOCODE job for a mel of ``frames`` frames: all of them up to ``max_frames``, else
        ``max_frames - 2 context_frames``; ``ValueError`` for fewer than 2 frames, or a longer mel than a build
        with too few ``max_frames`` for context can vocode."""
        from ..model.pwg import context_frames

        limit = self.config.max_frames
        if frames < 2:
            raise ValueError(f"a mel of {frames} frame(s): the overlay vocodes 2 frames or more")
        if frames <= limit:
            return frames
        margin = context_frames(self.config.network)
        if limit - 2 * margin < 1:
            raise ValueError(f"a mel of {frames} frames is longer than the overlay's max_frames = {limit} (the "
                             f"FRAMES register), and blocks need {margin} frames of context each side: build with "
                             f"--max-frames {2 * margin + 1} or more, or vocode at most {limit} frames")
        return limit - 2 * margin

    def vocode(self, mel, seed: int = 0) -> np.ndarray:
        """The waveform of ``mel`` (``(frames, aux_channels)``, the package's layout, float) with the noise of
        ``seed``: int16 PCM at :attr:`sample_rate`, ``(frames * hop,)`` (``(frames * hop, out_channels)`` for
        several channels).

        Raises ``ValueError`` for a mel of the wrong shape, non-finite values, fewer than 2 frames or more than
        the build can vocode (:meth:`block_frames`), a negative seed, and ``RuntimeError`` before :meth:`load`;
        all before anything reaches the hardware.
        """
        import copy
        from functools import partial

        from .pwg_top import job_stream

        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, not {seed!r}")
        mel = np.asarray(mel, dtype=np.float64)
        net = self.config.network
        if mel.ndim != 2 or mel.shape[1] != net.aux_channels:
            raise ValueError(f"mel must have shape (frames, aux_channels={net.aux_channels}), not {mel.shape}")
        if not np.isfinite(mel).all():
            raise ValueError("mel holds NaN or infinite values")
        block = self.block_frames(len(mel))
        if self._model is None:
            raise RuntimeError("no weights: call load(checkpoint) first")

        # The model's own blocking (noise, quantisation, padding, context, the part of each job kept) with the
        # hardware as its forward pass: a first pass collects the jobs, the backend runs them all (the twin in one
        # simulation; the board one after the other, each job's stream built when it goes), a second pass keeps
        # each job's part. The PCM comes back divided by 2**act.frac, exactly, as the model's integers would.
        jobs = []

        def collect(z: np.ndarray, padded: np.ndarray, *_) -> np.ndarray:
            jobs.append((partial(job_stream, self.config, self._model, padded, z),
                         padded.shape[1] - 2 * net.aux_context_window))
            return np.zeros((net.out_channels, z.shape[1]), dtype=np.int64)

        def replay(*_) -> np.ndarray:
            return results.pop(0)[0]

        model = copy.copy(self._model)
        model.forward = collect
        for _ in model.inference_blocks(mel, int(seed), block):
            pass
        results = self._backend.vocode(jobs)
        self.cycles = [cycles for _, cycles, _ in results]
        self.saturation = [flags for _, _, flags in results]
        model.forward = replay  # the jobs' PCM in order
        pcm = (np.concatenate(list(model.inference_blocks(mel, int(seed), block)))
               * (1 << net.numerics.act.frac)).astype(np.int16)
        return pcm[:, 0] if net.out_channels == 1 else pcm

    @property
    def model(self):
        """The :class:`~wavefabric.model.pwg.PWGFixed` of the loaded weights (None before)."""
        return self._model


def _pwg_pcm(config: PWGTopConfig, beats: np.ndarray, frames: int) -> np.ndarray:
    """A VOCODE job's ``m_axis`` beats (rows of int16) as PCM ``(out_channels, frames hop)``: per block of ``cols``
    samples, per output channel, ``cols`` samples."""
    net, cols = config.network, config.cols
    blocks = frames * net.hop_size // cols
    data = np.asarray(beats)[:, :cols].reshape(blocks, net.out_channels, cols)
    return data.transpose(1, 0, 2).reshape(net.out_channels, blocks * cols).astype(np.int16)


def _saturation_names(regmap: dict) -> list[str]:
    return [name for name in regmap["registers"] if name.startswith("SATURATION_")]


def _pwg_status(status: int) -> str:
    return (f"STATUS {status:#x} (bit 0 engine error, bit 1 s_axis TLAST error, bit 2 unknown stream, bit 3 "
            "FRAMES < 2)")


class _PWGPynq:
    """The PWG overlay on a board: registers through ``ip``, the streams through ``dma``, the activations in two
    ``pynq.allocate`` buffers the accelerator reads and writes through HP0 and HP1."""

    TIMEOUT = 60.0

    def __init__(self, ip, dma, regmap: dict, config: PWGTopConfig):
        self.ip, self.dma, self.regmap, self.config = ip, dma, regmap, config
        self.buffers = None  # the DDR scratch buffers, kept while the overlay lives

    def read_register(self, name: str) -> int:
        return self.ip.read(self.regmap["registers"][name]["offset"])

    def write_register(self, name: str, value: int) -> None:
        self.ip.write(self.regmap["registers"][name]["offset"], value)

    def _job(self, send: np.ndarray, recv_shape: tuple) -> np.ndarray | None:
        received = pynq_job(self.ip, self.dma, self.regmap["registers"]["CTRL"]["offset"], send, recv_shape,
                            np.int16, self.TIMEOUT)
        status = self.read_register("STATUS")
        if status:
            raise RuntimeError(_pwg_status(status))
        return received

    def load(self, stream: np.ndarray) -> None:
        import pynq

        if self.buffers is None:
            ddr = self.regmap["ddr"]
            self.buffers = {name: pynq.allocate(shape=(ddr[f"{name}_bytes"],), dtype=np.uint8)
                            for name in ("x", "skip")}
        for name, buffer in self.buffers.items():
            address = int(buffer.physical_address)
            if address % self.regmap["ddr"]["align"]:
                raise RuntimeError(f"the {name} buffer at {address:#x} is not {self.regmap['ddr']['align']}-byte "
                                   "aligned")
            self.write_register(f"{name.upper()}_ADDR", address)
        self.write_register("MODE", self.regmap["modes"]["LOAD"])
        self._job(stream, (0,))

    def vocode(self, jobs: list[tuple[Callable[[], np.ndarray], int]]) -> list[tuple[np.ndarray, int, int]]:
        """Run VOCODE jobs of ``(stream, frames)`` (``stream()`` builds the job's input); each one's PCM, CYCLES and
        SATURATION flags."""
        config = self.config
        lanes = config.s2mm_width // 16
        # The longest job's input is the largest (the weights do not depend on the length): checked before any job.
        size = max(jobs, key=lambda job: job[1])[0]().nbytes
        if size > MAX_TRANSFER_BYTES:
            raise ValueError(f"a job of {size:,} bytes exceeds the DMA's {MAX_TRANSFER_BYTES:,}-byte transfer")
        results = []
        for make, frames in jobs:
            stream = make()
            beats = frames * config.network.hop_size // config.cols * config.network.out_channels
            self.write_register("MODE", self.regmap["modes"]["VOCODE"])
            self.write_register("FRAMES", frames)
            received = self._job(stream, (beats, lanes))
            saturation = sum(self.read_register(name) << 32 * k
                             for k, name in enumerate(_saturation_names(self.regmap)))
            results.append((_pwg_pcm(config, received, frames), self.read_register("CYCLES"), saturation))
        return results


class _PWGSim(_Twin):
    """The PWG overlay's twin: each :meth:`vocode` simulates a whole session (the buffers' addresses, every LOAD
    job given so far, the VOCODE jobs, STATUS / CYCLES / SATURATION / CTRL reads after each) through the top's AXI
    channels with one batched run.

    The board keeps the last LOAD job's formats and table (each LOAD job resets the engine first); replaying the
    loads before the jobs is what it holds.
    """

    #: Where the twin puts the scratch buffers (each manager has a DDR model of its own).
    X_ADDR, SKIP_ADDR = 0x1000, 0x2000

    def __init__(self, *settings):
        super().__init__(*settings)
        self.loads: list[np.ndarray] = []

    def load(self, stream: np.ndarray) -> None:
        self.loads.append(stream)

    def vocode(self, jobs: list[tuple[Callable[[], np.ndarray], int]]) -> list[tuple[np.ndarray, int, int]]:
        """Run VOCODE jobs of ``(stream, frames)`` (``stream()`` builds the job's input) after the LOAD job, in one
        simulation; each one's PCM, CYCLES and SATURATION flags."""
        from dataclasses import replace

        from ..model.perf import pwg_engine_cycles
        from ..sim.pwg import activation_memories
        from ..sim.streams import run_streams
        from .pwg_top import PWGAxiCore
        from .shell import StreamView

        config, net = self.config, self.config.network
        regs, modes = {name: reg["offset"] for name, reg in self.regmap["registers"].items()}, self.regmap["modes"]
        writes = [("X_ADDR", self.X_ADDR), ("SKIP_ADDR", self.SKIP_ADDR)]
        job_reads = ["STATUS", "CYCLES", *_saturation_names(self.regmap), "CTRL"]
        streams = self.loads + [make() for make, _ in jobs]
        starts = np.cumsum([0] + [len(stream) for stream in streams])
        beats = [frames * net.hop_size // config.cols * net.out_channels for _, frames in jobs]
        received = np.cumsum(beats)
        # A load streams once its MODE and CTRL are written; the next load's registers follow its stream. A VOCODE
        # job's registers follow the loads, or the previous job's reads; its stream follows its CTRL write; its
        # reads its last PCM beat.
        waits: dict[str, list] = {"s_axis": [], "ctrl_aw": [], "ctrl_w": [], "ctrl_ar": []}
        loads = len(self.loads)
        for k, (mode, frames) in enumerate([("LOAD", None)] * loads + [("VOCODE", frames) for _, frames in jobs]):
            job = k - loads
            if k:
                after = (len(writes), "ctrl_r", job * len(job_reads)) if job > 0 else \
                    (len(writes), "s_axis", int(starts[k]))
                waits["ctrl_aw"].append(after)
                waits["ctrl_w"].append(after)
            writes += [("MODE", modes[mode])] + ([("FRAMES", frames)] if frames else []) + [("CTRL", 1)]
            waits["s_axis"].append((int(starts[k]), "ctrl_b", len(writes)))
        for k in range(len(jobs)):
            waits["ctrl_ar"].append((k * len(job_reads), "m_axis", int(received[k])))
        words = np.ascontiguousarray(np.concatenate(streams)).view("<u4").astype(np.int64)
        tlast = np.zeros(len(words), dtype=np.int64)
        tlast[starts[1:] - 1] = 1
        core = PWGAxiCore(config)
        bases = {"x": self.X_ADDR, "skip": self.SKIP_ADDR}
        memories = {name: replace(memory, contents=bytes(bases[name]) + bytes(memory.contents),
                                  **{channel: f"m_axi_{name}_{channel}" for channel in ("ar", "r", "aw", "w", "b")})
                    for name, memory in activation_memories(core.engine, self.latency, self.p_valid).items()}
        budget = 8 * len(words) + sum(4 * pwg_engine_cycles(net, config.rows, config.cols, frames, config.gate_lanes)
                                      for _, frames in jobs) + 20_000
        run = run_streams(
            StreamView(core),
            {"ctrl_aw": [{"addr": regs[name]} for name, _ in writes],
             "ctrl_w": [{"data": value, "strb": 0xF} for _, value in writes],
             "s_axis": {"tdata": words, "tlast": tlast},
             "ctrl_ar": [{"addr": regs[name]} for _ in jobs for name in job_reads]},
            {"ctrl_b": len(writes), "ctrl_r": len(jobs) * len(job_reads), "m_axis": int(received[-1])},
            waits={name: wait for name, wait in waits.items() if wait}, memories=memories, seed=self.seed,
            p_valid=self.p_valid, p_ready=self.p_ready, max_cycles=budget, backend=self.simulator,
            name=f"{config.name}_twin")
        self.run = run
        responses = [beat["resp"] for beat in run.outputs["ctrl_b"]]
        answers = [(beat["data"], beat["resp"]) for beat in run.outputs["ctrl_r"]]
        if any(responses) or any(resp for _, resp in answers):
            raise RuntimeError(f"AXI4-Lite responses {responses} to the writes, {answers} to the reads")
        out = run.outputs["m_axis"]
        ends = set(received - 1)
        if [beat["tlast"] for beat in out] != [int(i in ends) for i in range(len(out))]:
            raise RuntimeError("m_axis: TLAST not on exactly each job's last beat")
        raw = np.array([beat["tdata"] for beat in out], dtype="<u4").reshape(len(out), -1).view("<i2")
        results = []
        for k, (_, frames) in enumerate(jobs):
            (status, _), (cycles, _), *flags, (ctrl, _) = answers[k * len(job_reads):(k + 1) * len(job_reads)]
            if status:
                raise RuntimeError(_pwg_status(status))
            if not ctrl & 0b10:
                raise RuntimeError(f"CTRL {ctrl:#x}: no ap_done after the last PCM beat")
            saturation = sum(int(value) << 32 * j for j, (value, _) in enumerate(flags))
            results.append((_pwg_pcm(config, raw[received[k] - beats[k]:received[k]], frames), int(cycles),
                            saturation))
        return results
