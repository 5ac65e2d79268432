"""Sizes that cannot fit: refused in one line before anything is allocated; PWG generation memory is flat."""

import subprocess
import sys
import tracemalloc

import numpy as np

from wavefabric.model.pwg import PWGConfig, PWGFixed, context_frames, from_state_dict, random_state_dict

SMALL = PWGConfig(layers=6, stacks=2, residual_channels=8, gate_channels=16, skip_channels=8, aux_channels=10,
                  aux_context_window=2, upsample_scales=(2, 3))


def cli(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wavefabric", *map(str, argv)], capture_output=True, text=True,
                          timeout=600)


def test_sizes_that_cannot_fit_are_refused(tmp_path):
    cases = [
        (["demo", "--dim", "100000", "-o", tmp_path / "d.wav"], "SampleRNN with dim 100000"),
        (["generate", "samplernn", "--q-levels", "1000000", "--seconds", "1", "-o", tmp_path / "g.wav"],
         "1000000 levels"),
        (["sim", "gemm", "--m", "100000", "--n", "100000"], "sim gemm at these sizes would need about"),
        (["verilog", "gemm", "--rows", "1000", "--cols", "1000", "-o", tmp_path / "g.v"], "gemm at these sizes"),
        (["synth", "pynq-z1", "--design", "gru", "--hidden", "100000"], "gru at these sizes"),
    ]
    for argv, message in cases:
        proc = cli(*argv)
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1, proc.stderr
        assert message in proc.stderr and "GiB of memory, more than this machine's" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def peak_bytes(model, mel, block_frames: int) -> int:
    tracemalloc.start()
    try:
        for _ in model.inference_blocks(mel, seed=1, block_frames=block_frames):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_pwg_blocks_equal_the_whole_signal_and_memory_does_not_grow_with_length():
    generator = from_state_dict(SMALL, random_state_dict(SMALL, 3))
    mel = np.random.default_rng(2).standard_normal((60, SMALL.aux_channels))
    assert context_frames(SMALL) == 4   # 2 * (1 + 2 + 4) + (2 * 3 + 3) = 23 samples, at hop 6: 4 frames
    for model in (generator, PWGFixed(generator)):
        whole = np.concatenate(list(model.inference_blocks(mel, seed=1, block_frames=1000)))
        blocks = list(model.inference_blocks(mel, seed=1, block_frames=7))
        assert [len(b) for b in blocks] == [7 * SMALL.hop_size] * 8 + [4 * SMALL.hop_size]
        assert np.array_equal(np.concatenate(blocks), whole)
    long = np.random.default_rng(2).standard_normal((1200, SMALL.aux_channels))
    peak_bytes(generator, long, 8)  # first-call allocations (NumPy's caches)
    assert peak_bytes(generator, long, 8) < 1.1 * peak_bytes(generator, mel, 8)
