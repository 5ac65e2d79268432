# amaranth: UnusedElaboratable=no
"""boards.driver: the simulated twin is bit-exact with the model; the PYNQ path makes the right calls in order."""

import subprocess
import sys
import types

import numpy as np
import pytest

from wavefabric.boards import driver as driver_module
from wavefabric.boards.driver import (
    GruDriver,
    PWGOverlay,
    SampleRNNOverlay,
    pynq_driver_class,
    write_pwg_weights,
    write_weights,
)
from wavefabric.boards.pwg_top import PWGTopConfig
from wavefabric.boards.pwg_top import job_stream as pwg_job_stream
from wavefabric.boards.pwg_top import load_stream as pwg_load_stream
from wavefabric.boards.samplernn_top import GENERATE_OVERHEAD, SampleRNNTopConfig, load_stream
from wavefabric.boards.top import GruTopConfig, register_map, write_register_map
from wavefabric.cli import main
from wavefabric.model.audio import read_wav
from wavefabric.model.kernels import Numerics
from wavefabric.model.perf import samplernn_timing
from wavefabric.model.pwg import PWGConfig, PWGFixed
from wavefabric.model.pwg import from_state_dict as pwg_from_state_dict
from wavefabric.model.pwg import pcm16 as pwg_pcm16
from wavefabric.model.pwg import random_state_dict as random_pwg_state
from wavefabric.model.pwg_profile import choose_formats
from wavefabric.model.sampler import pcm16, seed_state
from wavefabric.model.samplernn import SampleRNNConfig, SampleRNNFixed, SampleRNNParams, random_state_dict
from wavefabric.sim.gru import gru_reference, random_gru_params
from wavefabric.sim.samplernn import table_image

# SampleRNN engines built for their sizes only (the import-time filter of boards.samplernn_top does not outlive
# pytest's collection).
pytestmark = [pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable"),
              pytest.mark.usefixtures("collect_components")]

NUM = Numerics()


def _problem(config: GruTopConfig, steps: int, seed: int):
    rng = np.random.default_rng(seed)
    params = random_gru_params(config.input_size, config.hidden, config.layers, NUM, rng)
    h0 = NUM.act.quantize(rng.uniform(-1, 1, (config.layers, config.hidden)))
    xs = NUM.act.quantize(rng.uniform(-1, 1, (steps, config.input_size)))
    return params, h0, xs


@pytest.mark.parametrize("config, p", [
    (GruTopConfig(5, 6, layers=2, lanes=3, simd=4), 1.0),
    (GruTopConfig(3, 5, layers=1, lanes=2, simd=2), 0.6),
])
def test_simulated_twin_is_bit_exact(config, p, tmp_path):
    """Weights, state and steps through AXI4-Lite and AXI4-Stream transactions, random stalls when p < 1."""
    params, h0, xs = _problem(config, 4, seed=7)
    path = write_register_map(config, tmp_path / "gru.regmap.json")
    with GruDriver(path, backend="sim", seed=3, p_valid=p, p_ready=p) as gru:
        gru.load_weights(params)
        gru.reset_state(h0)
        first = gru.run_steps(xs[:3])
        assert gru.cycles > 0
        gru.reset_state(h0[::-1] if config.layers > 1 else -h0)   # a new sequence mid-run
        last = gru.run_steps(xs[3])
    h1 = h0[::-1] if config.layers > 1 else -h0
    expected, _ = gru_reference(params, h0, xs, NUM, resets={3: h1})
    assert np.array_equal(np.concatenate([first, last]), expected)


def test_seed_size_smoke_step():
    """The seed configuration's GRU (64, 64) on the default 8 x 8 engine: load, reset, two steps."""
    config = GruTopConfig(64, 64)
    params, h0, xs = _problem(config, 2, seed=0)
    with GruDriver(register_map(config)) as gru:
        gru.load_weights(params)
        gru.reset_state(h0)
        out = gru.run_steps(xs)
        cycles = gru.cycles
    assert np.array_equal(out, gru_reference(params, h0, xs, NUM)[0])
    engine = config.engine()
    assert cycles < 2 * engine.latency + 20   # the AXI wrapper adds no cycles per step


def test_driver_validates_its_arguments():
    regmap = register_map(GruTopConfig(3, 4, lanes=2, simd=2))
    with pytest.raises(ValueError, match="backend must be 'sim' or 'pynq'"):
        GruDriver(regmap, backend="fpga")
    with pytest.raises(ValueError, match="p_valid must be in"):
        GruDriver(regmap, p_valid=0)
    with pytest.raises(ValueError, match="needs ip"):
        GruDriver(regmap, backend="pynq")
    with GruDriver(regmap) as gru:
        assert gru.cycles == 0
        with pytest.raises(ValueError, match=r"xs must have shape \(T, 3\)"):
            gru.run_steps(np.zeros((2, 4)))
        with pytest.raises(ValueError, match=r"h0 must have shape \(1, 4\)"):
            gru.reset_state(np.zeros(5))


def test_module_imports_without_pynq():
    code = ("import sys; sys.modules['pynq'] = None\n"
            "import wavefabric.boards.driver as d\n"
            "try:\n    d.GruIP\nexcept ImportError:\n    print('lazy')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "lazy"


class _FakeBuffer(np.ndarray):
    log: list

    def flush(self):
        self.log.append(("flush", self.shape))

    def invalidate(self):
        self.log.append(("invalidate", self.shape))

    def freebuffer(self):
        self.log.append(("free", self.shape))


@pytest.fixture
def fake_pynq(monkeypatch):
    """A stand-in ``pynq`` module: DefaultIP with MMIO-like read/write, allocate, and a DMA that records calls."""
    log = []

    class DefaultIP:
        def __init__(self, description):
            self.description = description
            self.registers = {}

        def write(self, offset, value):  # registers here read back what the test put in ``registers``
            log.append(("write", offset, value))

        def read(self, offset):
            log.append(("read", offset))
            return self.registers.get(offset, 0)

    def allocate(shape, dtype):
        buffer = np.zeros(shape, dtype).view(_FakeBuffer)
        buffer.log = log
        buffer.physical_address = 0x1800_0000
        return buffer

    module = types.SimpleNamespace(DefaultIP=DefaultIP, allocate=allocate)
    monkeypatch.setitem(sys.modules, "pynq", module)
    monkeypatch.setattr(driver_module, "_DRIVER_CLASSES", {})
    return module, log


class _Channel:
    def __init__(self, name, log, fill=None):
        self.name, self.log, self.fill, self.buffer = name, log, fill, None

    def transfer(self, buffer):
        self.log.append((self.name, "transfer", buffer.shape))
        self.buffer = buffer

    def wait(self):
        self.log.append((self.name, "wait"))
        if self.fill is not None:
            self.buffer[:] = self.fill(self.buffer.shape)


def test_pynq_driver_binds_the_vlnv_and_drives_the_dma_in_order(fake_pynq):
    module, log = fake_pynq
    config = GruTopConfig(3, 4, lanes=2, simd=2)
    regmap = register_map(config)
    ip_class = pynq_driver_class()
    assert ip_class is driver_module.GruIP  # module __getattr__: the same class, made once
    assert ip_class.bindto == ["xilinx.com:module_ref:wavefabric_gru:1.0"]
    assert issubclass(ip_class, module.DefaultIP)

    ip = ip_class({"fullpath": "accel"})
    regs = {name: reg["offset"] for name, reg in regmap["registers"].items()}
    for reg in regmap["registers"].values():   # the configuration registers the bitstream would hold
        if "value" in reg:
            ip.registers[reg["offset"]] = reg["value"]
    ip.registers[regs["CTRL"]] = 0b1110                # done
    # The fake DMA "computes" h' = 1, 2, 3, ... in every output lane.
    dma = types.SimpleNamespace(sendchannel=_Channel("send", log),
                                recvchannel=_Channel("recv", log, fill=lambda shape: np.arange(np.prod(shape))
                                                     .reshape(shape)))
    assert ip.attach(dma, regmap) is ip
    log.clear()
    out = ip.run_steps(np.zeros((3, 3), dtype=np.int64))
    beats = config.job_beats()
    row = config.tdata_width // config.element_bits
    assert log == [
        ("write", regs["MODE"], 3), ("write", regs["STEPS"], 3),
        ("flush", (3 * beats["STEP_IN"], row)),
        ("recv", "transfer", (3 * beats["STEP_OUT"], row)),      # armed before the job starts
        ("write", regs["CTRL"], 1),
        ("send", "transfer", (3 * beats["STEP_IN"], row)), ("send", "wait"),
        ("recv", "wait"), ("invalidate", (3 * beats["STEP_OUT"], row)),
        ("read", regs["CTRL"]),
        ("free", (3 * beats["STEP_IN"], row)), ("free", (3 * beats["STEP_OUT"], row)),
        ("read", regs["STATUS"]),
    ]
    lanes = np.arange(3 * beats["STEP_OUT"] * row).reshape(-1, row)[:, :config.simd]
    assert np.array_equal(out, lanes.reshape(3, -1)[:, :config.hidden])


def test_pynq_attach_rejects_a_bitstream_of_another_configuration(fake_pynq):
    regmap = register_map(GruTopConfig(3, 4, lanes=2, simd=2))
    ip = pynq_driver_class()({"fullpath": "accel"})
    ip.registers[regmap["registers"]["INPUT_SIZE"]["offset"]] = 7
    with pytest.raises(ValueError, match="register INPUT_SIZE reads 7"):
        ip.attach(types.SimpleNamespace(), regmap)


# --- SampleRNNOverlay -----------------------------------------------------------------------------------------

SMALL_NET = SampleRNNConfig(frame_sizes=(4, 2), n_rnn=1, dim=8, q_levels=16)
SMALL_OVERLAY = SampleRNNTopConfig(SMALL_NET, lanes=2, simd=4, gru_lanes=2)
SMALL_OPTIONS = "--frame-sizes 4 2 --n-rnn 1 --dim 8 --q-levels 16 --lanes 2 --simd 4 --gru-lanes 2".split()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """The small network's random weights as the .npz a build folder holds, and the fixed-point model."""
    state = random_state_dict(SMALL_NET, 5)
    path = write_weights(SMALL_OVERLAY, state, tmp_path_factory.mktemp("weights") / "w.weights.npz")
    return path, SampleRNNFixed(SampleRNNParams.from_state_dict(SMALL_NET, state))


def test_samplernn_twin_on_verilator_is_bit_exact(weights, tmp_path):
    """The overlay's Verilog on Verilator with the DDR model: two generations against SampleRNNFixed.generate,
    CYCLES against the cycle model; then with random stalls on every AXI channel and the DDR."""
    path, model = weights
    regmap = write_register_map(SMALL_OVERLAY, tmp_path / "s.regmap.json")
    synth = SampleRNNOverlay(regmap, backend="sim")
    synth.load(path)
    timing = samplernn_timing(SMALL_NET, lanes=2, simd=4, gru_lanes=2)
    for n, seed, temperature in ((23, 3, 1.0), (10, 4, 0.5)):
        pcm = synth.generate(n / 16000, seed, temperature)
        expected = model.generate(n, seed, temperature)
        assert pcm.dtype == np.int16 and np.array_equal(synth.codes, expected)
        assert np.array_equal(pcm, pcm16(expected, SMALL_NET.q_levels))
        assert synth.cycles == timing.total_cycles(n, SMALL_NET.n_frame_samples) + GENERATE_OVERHEAD
    stalled = SampleRNNOverlay(regmap, backend="sim", seed=2, p_valid=0.6, p_ready=0.6, latency=9)
    stalled.load(path)
    stalled.generate(17 / 16000, 7, 2.0)
    assert np.array_equal(stalled.codes, model.generate(17, 7, 2.0))


def test_play_drives_the_twin(weights, tmp_path, capsys):
    out = tmp_path / "out.wav"
    assert main(["play", "--design", "samplernn", "--backend", "sim", "--seconds", "0.001", "--seed", "2",
                 *SMALL_OPTIONS, "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "16 samples" in text and "bit-exact with the fixed-point model: yes" in text
    audio, rate = read_wav(out)
    model = SampleRNNFixed(SampleRNNParams.from_state_dict(SMALL_NET, random_state_dict(SMALL_NET, 2)))
    assert rate == 16000 and np.array_equal(np.round(audio * 32768), pcm16(model.generate(16, 2), 16))


def test_samplernn_bad_input_is_refused_before_the_hardware(fake_pynq, weights):
    _, log = fake_pynq
    path, _ = weights
    regmap = SMALL_OVERLAY.register_map()
    ip = types.SimpleNamespace(read=lambda offset: {reg["offset"]: reg.get("value", 0)
                                                    for reg in regmap["registers"].values()}[offset],
                               write=lambda offset, value: log.append(("write", offset, value)))
    synth = SampleRNNOverlay(regmap, ip=ip, dma=types.SimpleNamespace())
    with pytest.raises(RuntimeError, match="load"):
        synth.generate(0.01)
    other = SampleRNNConfig(frame_sizes=(4, 2), n_rnn=1, dim=6, q_levels=16)
    with pytest.raises(ValueError, match=r"does not fit the overlay's sizes \(frame sizes 4 2, n_rnn 1, dim 8"):
        synth.load(random_state_dict(other, 0))
    synth._model = object()  # as if loaded: the checks below come before any register access
    with pytest.raises(ValueError, match="a job holds 1 to 16,777,215"):
        synth.generate(2000.0)
    with pytest.raises(ValueError, match="temperature must be"):
        synth.generate(0.01, temperature=0)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        synth.generate(0.01, seed=-1)
    assert log == []
    with pytest.raises(ValueError, match="not 'samplernn'"):
        SampleRNNOverlay(register_map(GruTopConfig(3, 4, lanes=2, simd=2)), backend="sim")
    lying = {**regmap, "registers": {**regmap["registers"],
                                     "DIM": {**regmap["registers"]["DIM"], "value": 9}}}
    with pytest.raises(ValueError, match="register DIM reads 8, the register map says 9"):
        SampleRNNOverlay(lying, ip=ip, dma=types.SimpleNamespace())


def logged_board(regmap: dict, log: list, cycles: int, fill):
    """A board for an overlay's pynq backend that logs every register access and DMA call into ``log``: its
    registers read their map's values, CTRL reads done and idle, CYCLES ``cycles``; ``fill(shape)`` is what the
    DMA receives. Returns ``(register offsets by name, ip, dma)``."""
    regs = {name: reg["offset"] for name, reg in regmap["registers"].items()}
    values = {reg["offset"]: reg.get("value", 0) for reg in regmap["registers"].values()}
    values[regs["CTRL"]] = 0b1110
    values[regs["CYCLES"]] = cycles

    class Ip:
        def read(self, offset):
            log.append(("read", offset))
            return values[offset]

        def write(self, offset, value):
            log.append(("write", offset, value))

    return regs, Ip(), types.SimpleNamespace(sendchannel=_Channel("send", log),
                                             recvchannel=_Channel("recv", log, fill=fill))


def test_samplernn_on_pynq_loads_the_table_and_streams_in_order(fake_pynq, weights):
    _, log = fake_pynq
    path, model = weights
    regmap = SMALL_OVERLAY.register_map()
    samples = np.array([3 << 16 | 0xFFFE, 5 << 16 | 7], dtype=np.uint32)
    regs, ip, dma = logged_board(regmap, log, 1234, lambda shape: samples)
    synth = SampleRNNOverlay(regmap, ip=ip, dma=dma)
    synth.load(path)
    stream_shape = load_stream(SMALL_OVERLAY, model).shape
    table = synth._backend.table
    assert bytes(table) == table_image(SMALL_OVERLAY.layout, model, 0)
    log.clear()
    pcm = synth.generate(2 / 16000, seed=1, temperature=0.5)
    assert np.array_equal(pcm, [-2, 7]) and synth.codes.tolist() == [3, 5] and synth.cycles == 1234
    assert log == [("write", regs["MODE"], 1), ("write", regs["SAMPLES"], 2), ("write", regs["SEED"], seed_state(1)),
                   ("write", regs["TEMPERATURE"], 2048), ("recv", "transfer", (2,)), ("write", regs["CTRL"], 1),
                   ("recv", "wait"), ("invalidate", (2,)), ("read", regs["CTRL"]), ("free", (2,)),
                   ("read", regs["STATUS"]), ("read", regs["CYCLES"]), ("read", regs["SATURATED"])]
    assert stream_shape[1] == 4


def test_play_sends_a_job_to_the_audio_output(fake_pynq, weights):
    _, log = fake_pynq
    path, _ = weights
    config = SampleRNNTopConfig(SMALL_NET, lanes=2, simd=4, gru_lanes=2, audio_out=True)
    regmap = config.register_map()
    regs = {name: reg["offset"] for name, reg in regmap["registers"].items()}
    values = {reg["offset"]: reg.get("value", 0) for reg in regmap["registers"].values()} | {regs["CTRL"]: 0b1110}
    ip = types.SimpleNamespace(read=lambda offset: values[offset],
                               write=lambda offset, value: log.append(("write", offset, value)))
    synth = SampleRNNOverlay(regmap, ip=ip, dma=types.SimpleNamespace(sendchannel=_Channel("send", log)))
    synth.load(path)
    log.clear()
    assert synth.generate(0.5, play=True).size == 0
    assert ("write", regs["PLAY"], 1) in log and not [entry for entry in log if entry[0] == "recv"]
    with pytest.raises(ValueError, match="play needs an overlay built with --audio-out"):
        SampleRNNOverlay(SMALL_OVERLAY.register_map(), backend="sim").generate(0.01, play=True)
    with pytest.raises(ValueError, match="play needs a board"):
        SampleRNNOverlay(regmap, backend="sim").generate(0.01, play=True)


# --- PWGOverlay --------------------------------------------------------------------------------------------------

PWG_NET = PWGConfig(residual_channels=8, gate_channels=16, skip_channels=8, aux_channels=4, layers=2, stacks=2,
                    upsample_scales=(2, 2), aux_context_window=1)
PWG_OVERLAY = PWGTopConfig(PWG_NET, rows=4, cols=4, max_frames=6)


@pytest.fixture(scope="module")
def pwg_weights(tmp_path_factory):
    """The small generator's random weights as the .npz a build folder holds, and the fixed-point model."""
    state = random_pwg_state(PWG_NET, 2)
    path = write_pwg_weights(PWG_OVERLAY, state, tmp_path_factory.mktemp("pwg") / "w.weights.npz")
    generator = pwg_from_state_dict(PWG_NET, state)
    return path, PWGFixed(generator, choose_formats(generator))  # the formats PWGOverlay.load chooses


def pwg_golden(model: PWGFixed, mel: np.ndarray, seed: int) -> np.ndarray:
    act = PWG_NET.numerics.act
    return pwg_pcm16(act.quantize(model.inference(mel, seed)), act)[:, 0]


def test_pwg_twin_on_verilator_is_bit_exact(pwg_weights, tmp_path):
    """The overlay's Verilog on Verilator with the DDR model: a mel of 3 frames (one job) and one of 9 (blocks of
    2 frames with 2 of context: jobs of 4, 6, 6, 6 and 3 frames), against PWGFixed.inference."""
    path, model = pwg_weights
    regmap = write_register_map(PWG_OVERLAY, tmp_path / "p.regmap.json")
    vocoder = PWGOverlay(regmap, backend="sim")
    vocoder.load(path)
    assert vocoder.block_frames(3) == 3 and vocoder.block_frames(9) == 2
    rng = np.random.default_rng(7)
    for frames, seed in ((3, 1), (9, 4)):
        mel = rng.standard_normal((frames, PWG_NET.aux_channels))
        pcm = vocoder.vocode(mel, seed)
        assert pcm.dtype == np.int16 and pcm.shape == (frames * PWG_NET.hop_size,)
        assert np.array_equal(pcm, pwg_golden(model, mel, seed))
    assert len(vocoder.cycles) == 5 and min(vocoder.cycles) > 0


def test_pwg_bad_input_is_refused_before_the_hardware(fake_pynq, pwg_weights):
    _, log = fake_pynq
    path, _ = pwg_weights
    regmap = PWG_OVERLAY.register_map()
    values = {reg["offset"]: reg.get("value", 0) for reg in regmap["registers"].values()}
    ip = types.SimpleNamespace(read=lambda offset: values[offset],
                               write=lambda offset, value: log.append(("write", offset, value)))
    vocoder = PWGOverlay(regmap, ip=ip, dma=types.SimpleNamespace())
    mel = np.zeros((3, PWG_NET.aux_channels))
    with pytest.raises(RuntimeError, match="load"):
        vocoder.vocode(mel)
    other = PWGConfig(residual_channels=8, gate_channels=16, skip_channels=8, aux_channels=4, layers=4, stacks=2,
                      upsample_scales=(2, 2), aux_context_window=1)
    with pytest.raises(ValueError, match=r"does not fit the overlay's sizes \(residual 8, gate 16, skip 8, aux 4, "
                                         r"2 layers"):
        vocoder.load(random_pwg_state(other, 0))
    vocoder._model = object()  # as if loaded: the checks below come before any register access
    with pytest.raises(ValueError, match=r"mel must have shape \(frames, aux_channels=4\)"):
        vocoder.vocode(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        vocoder.vocode(np.full((3, 4), np.nan))
    with pytest.raises(ValueError, match="a mel of 1 frame"):
        vocoder.vocode(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        vocoder.vocode(mel, seed=-1)
    short = PWGTopConfig(PWG_NET, rows=4, cols=4, max_frames=4).register_map()
    values.update({reg["offset"]: reg.get("value", 0) for reg in short["registers"].values()})
    blocked = PWGOverlay(short, ip=ip, dma=types.SimpleNamespace())
    blocked._model = object()
    with pytest.raises(ValueError, match="longer than the overlay's max_frames = 4 .* --max-frames 5 or more"):
        blocked.vocode(np.zeros((5, 4)))
    assert log == []
    with pytest.raises(ValueError, match="not 'pwg'"):
        PWGOverlay(SMALL_OVERLAY.register_map(), backend="sim")
    lying = {**regmap, "registers": {**regmap["registers"], "LAYERS": {**regmap["registers"]["LAYERS"], "value": 4}}}
    values.update({reg["offset"]: reg.get("value", 0) for reg in regmap["registers"].values()})
    with pytest.raises(ValueError, match="register LAYERS reads 2, the register map says 4"):
        PWGOverlay(lying, ip=ip, dma=types.SimpleNamespace())


def test_pwg_on_pynq_allocates_the_buffers_and_streams_in_order(fake_pynq, pwg_weights):
    _, log = fake_pynq
    path, model = pwg_weights
    regmap = PWG_OVERLAY.register_map()
    samples = np.arange(12, dtype=np.int16).reshape(3, 4)  # 3 frames of hop 4: 3 beats of 4 samples
    regs, ip, dma = logged_board(regmap, log, 4321, lambda shape: samples[:shape[0]])
    vocoder = PWGOverlay(regmap, ip=ip, dma=dma)
    log.clear()
    vocoder.load(path)
    load = pwg_load_stream(PWG_OVERLAY, model).shape
    assert log == [("write", regs["X_ADDR"], 0x1800_0000), ("write", regs["SKIP_ADDR"], 0x1800_0000),
                   ("write", regs["MODE"], 0), ("flush", load), ("write", regs["CTRL"], 1),
                   ("send", "transfer", load), ("send", "wait"), ("read", regs["CTRL"]), ("free", load),
                   ("read", regs["STATUS"])]
    log.clear()
    mel = np.random.default_rng(0).standard_normal((3, 4))
    pcm = vocoder.vocode(mel, 2)
    assert np.array_equal(pcm, samples.ravel()) and vocoder.cycles == [4321] and vocoder.saturation == [0]
    z, padded = model.job(mel, 2)
    job = pwg_job_stream(PWG_OVERLAY, model, padded, z).shape
    assert log == [("write", regs["MODE"], 1), ("write", regs["FRAMES"], 3), ("flush", job),
                   ("recv", "transfer", (3, 4)), ("write", regs["CTRL"], 1), ("send", "transfer", job),
                   ("send", "wait"), ("recv", "wait"), ("invalidate", (3, 4)), ("read", regs["CTRL"]),
                   ("free", job), ("free", (3, 4)), ("read", regs["STATUS"]), ("read", regs["SATURATION_0"]),
                   ("read", regs["CYCLES"])]
    log.clear()
    vocoder.load(random_pwg_state(PWG_NET, 3))  # another checkpoint: another LOAD job (it resets the engine)
    assert [entry for entry in log if entry[0] == "write"][:3] == [
        ("write", regs["X_ADDR"], 0x1800_0000), ("write", regs["SKIP_ADDR"], 0x1800_0000), ("write", regs["MODE"], 0)]
