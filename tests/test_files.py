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


def test_atomic_folder_replaces_whole_folder(tmp_path):
    from wavefabric.model.files import atomic_folder

    folder = tmp_path / "build"
    folder.mkdir()
    (folder / "old.txt").write_text("old")
    with atomic_folder(folder) as tmp:
        assert tmp.parent == tmp_path and tmp != folder
        (tmp / "new.txt").write_text("new")
        assert (folder / "old.txt").exists()   # nothing visible until the end
    assert [p.name for p in folder.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["build"]


def test_interrupted_folder_leaves_the_old_one(tmp_path):
    from wavefabric.model.files import atomic_folder

    folder = tmp_path / "build"
    folder.mkdir()
    (folder / "old.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_folder(folder) as tmp:
        (tmp / "half.txt").write_text("half")
        raise KeyboardInterrupt
    assert [p.name for p in folder.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["build"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is not a folder"), atomic_folder(tmp_path / "file"):
        pass
