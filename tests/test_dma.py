# amaranth: UnusedElaboratable=no
"""rtl/dma.py: MemoryReader and MemoryWriter against the records' memory image (the model: little-endian records
of whole beats at consecutive addresses), cycles against model/perf.py, on both backends; bursts, stalls on every
stream, write-then-read-back through one memory, error flags, parameters."""

import numpy as np
import pytest
from amaranth.hdl import Module, Shape, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from wavefabric.model.perf import (
    dma_bursts,
    memory_reader_commands_cycles,
    memory_reader_cycles,
    memory_writer_commands_cycles,
    memory_writer_cycles,
)
from wavefabric.rtl.axi import (
    read_address_layout,
    read_data_layout,
    write_address_layout,
    write_data_layout,
    write_response_layout,
)
from wavefabric.rtl.dma import MemoryReader, MemoryWriter, command_layout, record_layout
from wavefabric.sim.streams import AxiMemory, StreamRun, run_streams, unpack, vcd_hint

#: Records narrower than, as wide as and wider than a 64-bit bus (256 bits: 4 beats; 336: 6 beats, the last
#: one part empty).
SHAPES = {16: signed(16), 64: unsigned(64), 256: data.ArrayLayout(signed(16), 16),
          336: data.ArrayLayout(signed(16), 21)}
WRITER_MEMORY = dict(ar=None, r=None, aw="aw", w="w", b="b")


def beats_per_record(shape, data_width: int) -> int:
    return -(-Shape.cast(shape).width // data_width)


def record_words(rng: np.random.Generator, shape, count: int, kind: str = "random") -> np.ndarray:
    """``count`` records as packed 32-bit words (LSW first): random bits, all zeros, or full scale (every 16-bit
    lane alternately 0x7FFF and 0x8000, then all ones)."""
    width = Shape.cast(shape).width
    n = -(-width // 32)
    if kind == "random":
        words = rng.integers(0, 2**32, (count, n), dtype=np.uint64).astype(np.uint32)
    elif kind == "zero":
        words = np.zeros((count, n), dtype=np.uint32)
    else:
        words = np.full((count, n), 0x80007FFF, dtype=np.uint32)
        words[1::2] = 0xFFFFFFFF
    if width % 32:
        words[:, -1] &= np.uint32((1 << width % 32) - 1)
    return words


def image_of(words: np.ndarray, shape, data_width: int) -> bytes:
    """The memory image of records (the model): each in whole beats, little-endian, the rest of its last beat 0."""
    padded = np.zeros((len(words), beats_per_record(shape, data_width) * data_width // 32), dtype=np.uint32)
    padded[:, :words.shape[1]] = words
    return padded.astype("<u4").tobytes()


def expected_records(shape, words: np.ndarray) -> list[dict]:
    return [{"data": value, "last": int(i == len(words) - 1)} for i, value in enumerate(unpack(shape, words))]


def memory_with(rng: np.random.Generator, size: int, addr: int, image: bytes) -> np.ndarray:
    contents = rng.integers(0, 256, size, dtype=np.uint8)
    contents[addr:addr + len(image)] = np.frombuffer(image, dtype=np.uint8)
    return contents


def read_run(shape, count: int, addr: int, *, data_width: int = 64, seed: int = 0, p: float = 1.0,
             latency: int = 40, outstanding: int = 2, kind: str = "random", backend: str = "amaranth"):
    rng = np.random.default_rng(seed)
    words = record_words(rng, shape, count, kind)
    image = image_of(words, shape, data_width)
    contents = memory_with(rng, addr + len(image) + 64, addr, image)
    reader = MemoryReader(shape, data_width, max_records=count, outstanding=outstanding)
    memory = AxiMemory(contents, latency=latency, p_ar_ready=p, p_r_valid=p)
    run = run_streams(reader, {"cmd": [{"addr": addr, "count": count}]}, {"records": count}, seed=seed, p_valid=p,
                      p_ready=p, memories={"ddr": memory}, tail=1, backend=backend, name=f"dma_reader_{seed}")
    return run, expected_records(shape, words)


def write_run(shape, count: int, addr: int, *, data_width: int = 64, seed: int = 0, p: float = 1.0,
              write_latency: int = 40, kind: str = "random", backend: str = "amaranth"):
    rng = np.random.default_rng(seed)
    words = record_words(rng, shape, count, kind)
    image = image_of(words, shape, data_width)
    before = rng.integers(0, 256, addr + len(image) + 64, dtype=np.uint8)
    writer = MemoryWriter(shape, data_width, max_records=count)
    memory = AxiMemory(before, **WRITER_MEMORY, write_latency=write_latency, p_aw_ready=p, p_w_ready=p, p_b_valid=p)
    run = run_streams(writer, {"cmd": [{"addr": addr, "count": count}], "records": expected_records(shape, words)},
                      {"done": 1}, seed=seed, p_valid=p, p_ready=p, memories={"ddr": memory}, tail=1,
                      backend=backend, name=f"dma_writer_{seed}")
    after = before.copy()
    after[addr:addr + len(image)] = np.frombuffer(image, dtype=np.uint8)
    return run, after


def check_bursts(lengths: np.ndarray, addresses: np.ndarray, addr: int, beats: int, beat_bytes: int) -> None:
    sizes = dma_bursts(addr, beats, beat_bytes)
    assert (lengths + 1).tolist() == sizes and max(sizes) <= 256
    assert addresses.tolist() == (addr + beat_bytes * np.cumsum([0] + sizes[:-1])).tolist()


# Each case crosses a 4 KiB boundary or takes more than one 256-beat burst, or both, unless it is one record.
CASES = [(16, 64, 300, 4096 - 40), (64, 64, 1, 0), (64, 64, 270, 8), (256, 64, 80, 4096 - 80),
         (336, 64, 45, 2048 + 8), (16, 32, 12, 4096 - 8), (336, 32, 3, 4096 - 20)]


@pytest.mark.parametrize("bits, data_width, count, addr", CASES)
def test_reader_bit_exact_bursts_and_cycles(bits, data_width, count, addr):
    shape = SHAPES[bits]
    run, expected = read_run(shape, count, addr, data_width=data_width, seed=bits + count)
    where = f"seed {bits + count}; {vcd_hint(f'dma_reader_{bits + count}')}"
    assert run.outputs["records"] == expected, where
    assert run.flags["error"] == 0, where
    reads = run.memories["ddr"]
    beats = count * beats_per_record(shape, data_width)
    check_bursts(reads.lengths, reads.addresses, addr, beats, data_width // 8)
    assert run.cycles == memory_reader_cycles(bits, count, data_width, addr), where


@pytest.mark.parametrize("bits, data_width, count, addr", CASES)
def test_writer_bit_exact_bursts_and_cycles(bits, data_width, count, addr):
    shape = SHAPES[bits]
    run, after = write_run(shape, count, addr, data_width=data_width, seed=bits + count)
    where = f"seed {bits + count}; {vcd_hint(f'dma_writer_{bits + count}')}"
    writes = run.memories["ddr"]
    assert np.array_equal(writes.contents, after), where  # the records in place, every other byte untouched
    assert run.outputs["done"] == [{"error": 0}] and run.flags["error"] == 0, where
    check_bursts(writes.write_lengths, writes.write_addresses, addr, count * beats_per_record(shape, data_width),
                 data_width // 8)
    assert len(writes.b_times) == len(writes.aw_times), where  # done only after every response
    assert run.cycles == memory_writer_cycles(bits, count, data_width), where


@pytest.mark.parametrize("kind", ["zero", "full"])
@pytest.mark.parametrize("bits", [16, 336])
def test_edge_values(bits, kind):
    run, expected = read_run(SHAPES[bits], 5, 64, kind=kind)
    assert run.outputs["records"] == expected, kind
    run, after = write_run(SHAPES[bits], 5, 64, kind=kind)
    assert np.array_equal(run.memories["ddr"].contents, after), kind


def test_smallest_and_largest_sizes():
    """One 1-bit record in the last word of a 12-bit address space; 1024-bit records (16 beats) filling it all,
    written and read back."""
    rng = np.random.default_rng(11)
    tiny = MemoryReader(unsigned(1), data_width=32, addr_width=12, max_records=1)
    contents = np.zeros(4096, np.uint8)
    contents[4092] = 0xFF
    run = run_streams(tiny, {"cmd": [{"addr": 4092, "count": 1}]}, {"records": 1},
                      memories={"ddr": AxiMemory(contents)})
    assert run.outputs["records"] == [{"data": 1, "last": 1}] and run.cycles == memory_reader_cycles(1, 1, 32, 4092)
    shape = data.ArrayLayout(signed(16), 64)
    words = record_words(rng, shape, 32, "full")
    writer = MemoryWriter(shape, addr_width=12, max_records=32)
    run = run_streams(writer, {"cmd": [{"addr": 0, "count": 32}], "records": expected_records(shape, words)},
                      {"done": 1}, memories={"ddr": AxiMemory(contents, **WRITER_MEMORY)})
    assert run.memories["ddr"].contents.tobytes() == image_of(words, shape, 64)
    assert run.cycles == memory_writer_cycles(1024, 32)
    reader = MemoryReader(shape, addr_width=12, max_records=32)
    run = run_streams(reader, {"cmd": [{"addr": 0, "count": 32}]}, {"records": 32},
                      memories={"ddr": AxiMemory(run.memories["ddr"].contents)})
    assert run.outputs["records"] == expected_records(shape, words) and run.cycles == memory_reader_cycles(1024, 32)


@pytest.mark.parametrize("outstanding, latency", [(1, 40), (2, 40), (2, 7), (3, 100)])
def test_outstanding_bursts_hide_the_latency(outstanding, latency):
    """600 beats from an address that makes a short first burst: with two bursts in flight R never waits (cycles
    = beats + latency + 2) up to a latency of about a burst; one burst in flight waits a latency per burst."""
    count, addr = 600, 4096 - 8 * 3
    run, expected = read_run(SHAPES[64], count, addr, latency=latency, outstanding=outstanding, seed=outstanding)
    assert run.outputs["records"] == expected
    model = memory_reader_cycles(64, count, 64, addr, latency, outstanding)
    assert run.cycles == model
    assert (model == count + latency + 2) == (outstanding > 1)
    assert memory_reader_cycles(64, 100_000, latency=40) == 100_000 + 42  # long transfers stream


@pytest.mark.parametrize("pending, latency", [(4, 40), (1, 40), (2, 3)])
def test_back_to_back_commands_overlap(pending, latency):
    """Four commands, one of them empty, of 256-bit records: the reader's bursts and the writer's W beats go on
    from one command to the next; the writer's dones wait for the B responses, up to ``pending`` commands."""
    shape, rng = SHAPES[256], np.random.default_rng(pending)
    commands = [{"addr": 4096 - 64, "count": 9}, {"addr": 64, "count": 0}, {"addr": 8192, "count": 3},
                {"addr": 1024, "count": 20}]
    words = record_words(rng, shape, 32)
    chunks = np.split(words, [9, 9, 12])
    records = [r for chunk in chunks for r in expected_records(shape, chunk)]
    writer = MemoryWriter(shape, max_records=20, pending=pending)
    memory = AxiMemory(bytes(12288), **WRITER_MEMORY, write_latency=latency)
    run = run_streams(writer, {"cmd": commands, "records": records}, {"done": 4}, memories={"ddr": memory},
                      name="dma_writer_commands")
    pairs = [(c["addr"], c["count"]) for c in commands]
    assert run.cycles == memory_writer_commands_cycles(256, pairs, write_latency=latency, pending=pending)
    contents = run.memories["ddr"].contents
    for command, chunk in zip(commands, chunks, strict=True):
        image = image_of(chunk, shape, 64)
        assert contents[command["addr"]:command["addr"] + len(image)].tobytes() == image
    reader = MemoryReader(shape, max_records=20)
    run = run_streams(reader, {"cmd": commands}, {"records": 32}, memories={"ddr": AxiMemory(contents,
                                                                                            latency=latency)})
    assert run.outputs["records"] == records
    assert run.cycles == memory_reader_commands_cycles(256, pairs, latency=latency)
    # The commands overlap: less than one after the other.
    assert run.cycles < sum(memory_reader_cycles(256, count, 64, addr, latency) for addr, count in pairs if count)


class Copier(wiring.Component):
    """A :class:`MemoryWriter` and a :class:`MemoryReader` of the same records on one memory's AXI4 channels."""

    def __init__(self, shape, data_width: int = 64, max_records: int = 300):
        self.writer = MemoryWriter(shape, data_width, max_records=max_records)
        self.reader = MemoryReader(shape, data_width, max_records=max_records)
        cmd = command_layout(32, max_records)
        super().__init__({
            "write_cmd": In(stream.Signature(cmd)), "write_records": In(stream.Signature(record_layout(shape))),
            "done": Out(stream.Signature(data.StructLayout({"error": 1}))),
            "read_cmd": In(stream.Signature(cmd)), "read_records": Out(stream.Signature(record_layout(shape))),
            "ar": Out(stream.Signature(read_address_layout())), "r": In(stream.Signature(read_data_layout())),
            "aw": Out(stream.Signature(write_address_layout())), "w": Out(stream.Signature(write_data_layout())),
            "b": In(stream.Signature(write_response_layout())), "write_error": Out(1), "read_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.writer, m.submodules.reader = self.writer, self.reader
        for outer, inner in (("write_cmd", "cmd"), ("write_records", "records"), ("aw", "aw"), ("w", "w"),
                             ("b", "b"), ("done", "done")):
            wiring.connect(m, getattr(self.writer, inner), wiring.flipped(getattr(self, outer)))
        for outer, inner in (("read_cmd", "cmd"), ("read_records", "records"), ("ar", "ar"), ("r", "r")):
            wiring.connect(m, getattr(self.reader, inner), wiring.flipped(getattr(self, outer)))
        m.d.comb += [self.write_error.eq(self.writer.error), self.read_error.eq(self.reader.error)]
        return m


def copy_run(bits: int, seed: int, p: float, backend: str) -> tuple[StreamRun, list, np.ndarray]:
    """Two write commands (one crossing 4 KiB), then, once both are done, the same records read back by two
    commands split elsewhere; every stream and the memory stall with ``p``."""
    shape, rng = SHAPES[bits], np.random.default_rng(seed)
    per = beats_per_record(shape, 64) * 8
    words = record_words(rng, shape, 40)
    records = expected_records(shape, words)
    addr = 4096 - 7 * per
    split = [dict(r, last=int(i in (12, 39))) for i, r in enumerate(records)]
    before = rng.integers(0, 256, 16384, dtype=np.uint8)
    memory = AxiMemory(before, aw="aw", w="w", b="b", latency=9, write_latency=5, p_ar_ready=p, p_r_valid=p,
                       p_aw_ready=p, p_w_ready=p, p_b_valid=p)
    run = run_streams(Copier(shape), {
        "write_cmd": [{"addr": addr, "count": 13}, {"addr": addr + 13 * per, "count": 27}],
        "write_records": split,
        "read_cmd": [{"addr": addr, "count": 30}, {"addr": addr + 30 * per, "count": 10}],
    }, {"done": 2, "read_records": 40}, seed=seed, p_valid=p, p_ready=p, waits={"read_cmd": (0, "done")},
        memories={"ddr": memory}, tail=1, backend=backend, name=f"dma_copy_{seed}")
    after = before.copy()
    image = image_of(words, shape, 64)
    after[addr:addr + len(image)] = np.frombuffer(image, dtype=np.uint8)
    read_back = [dict(r, last=int(i in (29, 39))) for i, r in enumerate(records)]
    return run, read_back, after


def check_copy(run: StreamRun, read_back: list, after: np.ndarray, where: str) -> None:
    assert run.outputs["read_records"] == read_back, where
    assert np.array_equal(run.memories["ddr"].contents, after), where
    assert run.outputs["done"] == [{"error": 0}] * 2, where
    assert run.flags == {"write_error": 0, "read_error": 0}, where
    # The reads start only after the second done: the data was in memory.
    assert run.memories["ddr"].ar_times[0] > run.times["done"][1], where


@pytest.mark.parametrize("bits, seed, p", [(16, 1, 0.5), (256, 2, 0.3), (336, 3, 0.7)])
def test_write_then_read_back_with_stalls_everywhere(bits, seed, p):
    run, read_back, after = copy_run(bits, seed, p, "amaranth")
    check_copy(run, read_back, after, f"seed {seed}; {vcd_hint(f'dma_copy_{seed}')}")


def test_both_backends_alike_and_cycles_on_verilator():
    runs = [copy_run(336, 4, 0.6, backend) for backend in ("amaranth", "verilator")]
    assert not runs[0][0].differences(runs[1][0])
    check_copy(*runs[1], "seed 4 (verilator)")
    # The cycle models on the compiled model: a write alone, then a read alone, of 300 records of 336 bits.
    copier, rng = Copier(SHAPES[336]), np.random.default_rng(5)
    words = record_words(rng, SHAPES[336], 300)
    addr, image = 4096 - 48 * 5, image_of(words, SHAPES[336], 64)
    memory = AxiMemory(np.zeros(addr + len(image), np.uint8), aw="aw", w="w", b="b")
    run = run_streams(copier, {"write_cmd": [{"addr": addr, "count": 300}],
                               "write_records": expected_records(SHAPES[336], words)}, {"done": 1},
                      memories={"ddr": memory}, backend="verilator")
    assert run.cycles == memory_writer_cycles(336, 300)
    assert run.memories["ddr"].contents[addr:].tobytes() == image
    run = run_streams(copier, {"read_cmd": [{"addr": addr, "count": 300}]}, {"read_records": 300},
                      memories={"ddr": AxiMemory(run.memories["ddr"].contents, aw="aw", w="w", b="b")},
                      backend="verilator")
    assert run.cycles == memory_reader_cycles(336, 300, addr=addr)
    assert run.outputs["read_records"] == expected_records(SHAPES[336], words)


def test_reader_flags_rresp_and_a_misaligned_address():
    """R driven directly: a SLVERR beat sets the sticky error; the records still come."""
    reader = MemoryReader(SHAPES[16], max_records=4)
    beats = [{"data": n, "resp": 2 * (n == 1), "last": 1} for n in range(3)]
    for bad in (False, True):
        r = [dict(b, resp=b["resp"] if bad else 0) for b in beats]
        run = run_streams(reader, {"cmd": [{"addr": 64, "count": 3}], "r": r}, {"ar": 1, "records": 3},
                          waits={"r": (0, "ar")})
        assert [rec["data"] for rec in run.outputs["records"]] == [0, 1, 2]
        assert run.flags["error"] == int(bad)
    memory = AxiMemory(np.arange(64, dtype=np.uint8))
    run = run_streams(reader, {"cmd": [{"addr": 12, "count": 1}]}, {"records": 1}, memories={"ddr": memory})
    assert run.memories["ddr"].addresses.tolist() == [8] and run.outputs["records"] == [{"data": 0x0908, "last": 1}]
    assert run.flags["error"] == 1


def test_writer_flags_bresp_misplaced_last_and_a_misaligned_address():
    writer = MemoryWriter(SHAPES[16], max_records=4)
    records = [{"data": n, "last": int(n == 2)} for n in range(3)]
    for bad in (False, True):
        b = [{"resp": 2 if bad else 0}]
        run = run_streams(writer, {"cmd": [{"addr": 0, "count": 3}], "records": records, "b": b},
                          {"aw": 1, "w": 3, "done": 1}, waits={"b": (0, "w")})
        assert [beat["last"] for beat in run.outputs["w"]] == [0, 0, 1]
        assert run.outputs["done"] == [{"error": int(bad)}] and run.flags["error"] == int(bad)
    memory = AxiMemory(bytes(64), **WRITER_MEMORY, write_latency=2)
    for cmd, recs in (({"addr": 0, "count": 3}, [dict(r, last=int(n == 1)) for n, r in enumerate(records)]),
                      ({"addr": 12, "count": 1}, [{"data": 7, "last": 1}])):
        run = run_streams(writer, {"cmd": [cmd], "records": recs}, {"done": 1}, memories={"ddr": memory})
        assert run.flags["error"] == 1 and run.outputs["done"] == [{"error": 1}]
    assert run.memories["ddr"].write_addresses.tolist() == [8] and run.memories["ddr"].contents[8] == 7


def test_count_zero_moves_nothing():
    writer, reader = MemoryWriter(SHAPES[64], max_records=2), MemoryReader(SHAPES[64], max_records=2)
    run = run_streams(writer, {"cmd": [{"addr": 0, "count": 0}]}, {"done": 1},
                      memories={"ddr": AxiMemory(bytes(16), **WRITER_MEMORY)})
    assert run.cycles == memory_writer_cycles(64, 0) and len(run.memories["ddr"].aw_times) == 0
    run = run_streams(reader, {"cmd": [{"addr": 0, "count": 0}, {"addr": 8, "count": 1}]}, {"records": 1},
                      memories={"ddr": AxiMemory(np.arange(16, dtype=np.uint8))})
    assert run.outputs["records"] == [{"data": 0x0F0E0D0C0B0A0908, "last": 1}]


def test_bad_parameters():
    cases = [(lambda: MemoryReader("x"), "record_shape"), (lambda: MemoryReader(8, data_width=128), "data_width"),
             (lambda: MemoryWriter(8, addr_width=8), "addr_width"), (lambda: MemoryWriter(8, max_records=0),
                                                                     "max_records"),
             (lambda: MemoryWriter(SHAPES[336], addr_width=12, max_records=86), "max_records"),
             (lambda: MemoryReader(8, outstanding=0), "outstanding"), (lambda: MemoryReader(8, outstanding=65),
                                                                       "outstanding"),
             (lambda: MemoryWriter(8, pending=0), "pending"), (lambda: memory_reader_commands_cycles(8, []),
                                                               "commands"),
             (lambda: memory_reader_commands_cycles(8, [(0, 0)]), "at least one record"),
             (lambda: dma_bursts(4, 2, 8), "addr"), (lambda: memory_reader_cycles(16, 0), "count"),
             (lambda: memory_writer_cycles(16, 1, write_latency=0), "write_latency")]
    for make, name in cases:
        with pytest.raises(ValueError, match=name):
            make()
    assert MemoryWriter(SHAPES[336], addr_width=12, max_records=85).max_records == 85  # 85 * 48 bytes fit 4 KiB
