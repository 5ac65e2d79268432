import os
import stat

import pytest

from wavefabric.model.files import MANIFEST, OutputError, atomic_folder, atomic_write, check_output_file


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_atomic_write_replaces_whole_file_keeping_its_mode(tmp_path):
    path = tmp_path / "out.v"
    path.write_text("old")
    path.chmod(0o640)
    with atomic_write(path) as f:
        f.write("new")
    assert path.read_text() == "new"
    assert names(tmp_path) == ["out.v"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_new_file_mode_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_write(tmp_path / "a.v") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.v").stat().st_mode) == 0o640


def test_interrupted_write_leaves_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.v"
    path.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_write(path) as f:
        f.write("half")
        raise KeyboardInterrupt
    assert path.read_text() == "old"
    assert names(tmp_path) == ["out.v"]


def test_bad_mode(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"), atomic_write(tmp_path / "x", "a"):
        pass


def test_symlink_is_written_through_and_stays_a_link(tmp_path):
    target = tmp_path / "real.v"
    target.write_text("old")
    link = tmp_path / "link.v"
    link.symlink_to(target)
    with atomic_write(link) as f:
        f.write("new")
    assert link.is_symlink() and target.read_text() == "new"
    assert names(tmp_path) == ["link.v", "real.v"]


def test_fifo_is_written_through_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader, so that opening for writing does not block
    try:
        assert check_output_file(fifo) == fifo
        with atomic_write(fifo, "wb") as f:
            f.write(b"data")
        assert os.read(reader, 16) == b"data"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_check_output_file_names_the_users_path(tmp_path):
    with pytest.raises(OutputError, match=r"^cannot write '.*x.wav': folder '.*nope' does not exist$"):
        check_output_file(tmp_path / "nope" / "x.wav")
    with pytest.raises(OutputError, match="it is a folder"):
        check_output_file(tmp_path)


def test_atomic_folder_replaces_its_own_folder_whole(tmp_path):
    folder = tmp_path / "build"
    with atomic_folder(folder) as tmp:
        (tmp / "old.txt").write_text("old")
    assert names(folder) == [MANIFEST, "old.txt"]
    with atomic_folder(folder) as tmp:
        assert tmp.parent == tmp_path and tmp != folder
        (tmp / "new.txt").write_text("new")
        assert (folder / "old.txt").exists()   # nothing visible until the end
    assert names(folder) == [MANIFEST, "new.txt"]
    assert names(tmp_path) == ["build"]


def test_folder_with_a_users_file_is_refused_or_kept_with_force(tmp_path):
    folder = tmp_path / "build"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"holds files wavefabric did not write \(notes.txt\).*--force"), \
            atomic_folder(folder) as tmp:
        pytest.fail("no work is done")
    with atomic_folder(folder, force=True) as tmp:
        (tmp / "a.v").write_text("a")
    with atomic_folder(folder, force=True) as tmp:  # again: wavefabric's old files go, the user's stay
        (tmp / "b.v").write_text("b")
    assert names(folder) == [MANIFEST, "b.v", "notes.txt"]
    assert (folder / "notes.txt").read_text() == "mine"
    with pytest.raises(OutputError, match="has its own 'notes.txt'"), atomic_folder(folder, force=True) as tmp:
        (tmp / "notes.txt").write_text("would replace the user's")
    assert (folder / "notes.txt").read_text() == "mine"
    assert names(tmp_path) == ["build"]


def test_a_changed_file_counts_as_the_users(tmp_path):
    folder = tmp_path / "build"
    with atomic_folder(folder) as tmp:
        (tmp / "build.tcl").write_text("generated")
    (folder / "build.tcl").write_text("edited by hand")
    with pytest.raises(OutputError, match=r"\(build.tcl\)"), atomic_folder(folder) as tmp:
        pass
    assert (folder / "build.tcl").read_text() == "edited by hand"


def test_interrupted_folder_leaves_the_old_one(tmp_path):
    folder = tmp_path / "build"
    with atomic_folder(folder) as tmp:
        (tmp / "old.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_folder(folder) as tmp:
        (tmp / "half.txt").write_text("half")
        raise KeyboardInterrupt
    assert names(folder) == [MANIFEST, "old.txt"]
    assert names(tmp_path) == ["build"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is not a folder"), atomic_folder(tmp_path / "file"):
        pass
