import pytest

from wavefabric.model.files import atomic_write


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "out.v"
    path.write_text("old")
    with atomic_write(path) as f:
        f.write("new")
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.v"]


def test_interrupted_write_leaves_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.v"
    path.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_write(path) as f:
        f.write("half")
        raise KeyboardInterrupt
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.v"]


def test_bad_mode(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"), atomic_write(tmp_path / "x", "a"):
        pass
