"""Bad outputs: nothing the user owns is lost, and a path that cannot be written is refused in one line."""

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from wavefabric.model.files import MANIFEST

SMALL_SAMPLERNN = ["--dim", "8", "--frame-sizes", "2", "2"]


def cli(*argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wavefabric", *map(str, argv)], capture_output=True, text=True,
                          timeout=600, **kwargs)


def assert_refused(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert message in proc.stderr


def test_build_never_deletes_a_users_file(tmp_path):
    out = tmp_path / "overlay"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    gru = ["--input", "3", "--hidden", "4", "--lanes", "2", "--simd", "2"]
    assert_refused(cli("build", "pynq-z1", "--design", "gru", *gru, "-o", out),
                   "holds files wavefabric did not write (notes.txt)")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    proc = cli("build", "pynq-z1", "--design", "gru", *gru, "--force", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "notes.txt").read_text() == "mine" and (out / "build.sh").exists() and (out / MANIFEST).exists()


def test_symlink_and_fifo_are_written_through_never_replaced(tmp_path):
    target = tmp_path / "real.wav"
    link = tmp_path / "link.wav"
    link.symlink_to(target)
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    for out in (link, fifo):
        proc = cli("generate", "samplernn", "--seconds", "0.01", *SMALL_SAMPLERNN, "-o", out)
        assert proc.returncode == 0, proc.stderr
    reader.join(timeout=60)
    assert link.is_symlink() and target.read_bytes()[:4] == b"RIFF"
    assert stat.S_ISFIFO(fifo.stat().st_mode) and received[0][:4] == b"RIFF" and len(received[0]) == 44 + 2 * 160
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.wav", "pipe.wav", "real.wav"]


def test_unwritable_outputs_are_refused_before_work_naming_the_users_path(tmp_path):
    assert_refused(cli("verilog", "gemm", "-o", tmp_path / "missing" / "g.v"),
                   f"cannot write '{tmp_path / 'missing' / 'g.v'}': folder '{tmp_path / 'missing'}' does not exist")
    assert_refused(cli("generate", "pwg", "--seconds", "1", "-o", tmp_path), "it is a folder")
    (tmp_path / "file").write_text("x")
    assert_refused(cli("build", "pynq-z1", "--design", "audio", "-o", tmp_path / "file"), "is not a folder")
    assert (tmp_path / "file").read_text() == "x"
    sysfs = Path("/sys/wavefabric-test.wav")
    if Path("/sys").is_dir() and not os.access("/sys", os.W_OK):
        assert_refused(cli("generate", "samplernn", "--seconds", "1", "-o", sysfs), f"cannot write '{sysfs}'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_new_files_follow_the_umask(tmp_path):
    proc = cli("generate", "samplernn", "--seconds", "0.01", *SMALL_SAMPLERNN, "-o", tmp_path / "a.wav", umask=0o022)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE((tmp_path / "a.wav").stat().st_mode) == 0o644


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT")
def test_ctrl_c_prints_one_line_and_leaves_no_output(tmp_path):
    out = tmp_path / "long.wav"
    # SIGINT back to its default in the child: a test run started in the background of a non-interactive shell
    # ignores it, and so would the command.
    proc = subprocess.Popen([sys.executable, "-m", "wavefabric", "generate", "pwg", "--seconds", "600", "-o", out],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        time.sleep(4)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and stdout == "" and stderr == "wavefabric: interrupted\n"
    assert list(tmp_path.iterdir()) == []
