"""File output that never loses what the user owns: a file either appears whole or not at all.

Every file wavefabric writes (WAV, Verilog, JSON, build scripts) goes through :func:`atomic_write`, and every
folder of files (a Vivado build) through :func:`atomic_folder`, so an interrupted run never leaves a
half-written file or folder behind. The rules:

* A regular file is written to a temporary file beside it and renamed over it at the end; it gets the mode of
  the file it replaces, or ``0o666`` less the umask, as any new file.
* A symbolic link is followed: its target is written (atomically, as above) and the link stays a link.
* A character or block device or a FIFO (``/dev/null``, a named pipe) is written through: it is opened and
  written, never replaced.
* A folder is written only if it does not exist, is empty, or holds only files that wavefabric wrote there
  (listed with their SHA-256 in :data:`MANIFEST`). A folder with other files is refused, unless ``force``:
  then wavefabric's files are replaced one by one and every other file is left as it is.
* :func:`check_output_file` and :func:`check_output_folder` apply these rules before any work is done, so a
  read-only folder is reported at once, naming the user's path, never a temporary file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["MANIFEST", "OutputError", "check_output_file", "check_output_folder", "atomic_write", "atomic_folder"]

#: The file in an output folder that lists the files wavefabric wrote there, with their SHA-256.
MANIFEST = ".wavefabric.json"


class OutputError(OSError):
    """An output path that cannot or must not be written; the message is one line naming it."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def _resolve(path: str | os.PathLike) -> Path:
    """``path`` with symbolic links followed (a dangling link resolves to the file it names)."""
    return Path(os.path.realpath(path))


def _write_through(path: Path) -> bool:
    """Whether ``path`` (resolved) is a device or FIFO, written in place rather than replaced."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode)


def _probe_folder(folder: Path, shown: str | os.PathLike) -> None:
    """Raise :class:`OutputError` unless a file can be created in ``folder`` (``shown`` names the output)."""
    if not folder.is_dir():
        raise OutputError(f"cannot write {str(shown)!r}: folder {str(folder)!r} does not exist")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise OutputError(f"cannot write {str(shown)!r}: {_reason(error)}") from None


def check_output_file(path: str | os.PathLike) -> Path:
    """Check, before any work, that ``path`` can be written as :func:`atomic_write` would; return it.

    Raises
    ------
    OutputError
        One line naming ``path``: its folder does not exist or is not writable, it is a folder, or it is
        something that is neither a regular file, a device nor a FIFO (a socket).
    """
    target = _resolve(path)
    if target.is_dir():
        raise OutputError(f"cannot write {str(path)!r}: it is a folder")
    if _write_through(target):
        if not os.access(target, os.W_OK):
            raise OutputError(f"cannot write {str(path)!r}: permission denied")
        return Path(path)
    if target.exists() and not target.is_file():
        raise OutputError(f"cannot write {str(path)!r}: it is not a regular file, a device or a FIFO")
    _probe_folder(target.parent, path)
    return Path(path)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open ``path`` for writing so that it appears whole or not at all (see the module docstring).

    ``mode`` is ``"w"`` (text, UTF-8) or ``"wb"``. A regular file (or a symbolic link's target) is written
    to a temporary file in the same folder and renamed over it on success, deleted on error; a device or FIFO
    is written through. An ``OSError`` names ``path``, not the temporary file.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', not {mode!r}")
    encoding = {"encoding": "utf-8"} if mode == "w" else {}
    target = _resolve(path)
    if _write_through(target):
        try:
            with open(target, mode, **encoding) as f:
                yield f
        except BrokenPipeError:
            raise
        except OSError as error:
            raise OutputError(f"cannot write {str(path)!r}: {_reason(error)}") from None
        return
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as error:
        raise OutputError(f"cannot write {str(path)!r}: {_reason(error)}") from None
    try:
        try:
            file_mode = stat.S_IMODE(target.stat().st_mode)
        except FileNotFoundError:
            file_mode = 0o666 & ~_umask()
        os.fchmod(fd, file_mode)
        with os.fdopen(fd, mode, **encoding) as f:
            yield f
        os.replace(tmp, target)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(error, OSError) and not isinstance(error, OutputError):
            raise OutputError(f"cannot write {str(path)!r}: {_reason(error)}") from None
        raise


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(folder: Path) -> dict[str, str]:
    """The files wavefabric wrote in ``folder`` (name to SHA-256), empty if it has no readable manifest."""
    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return files if isinstance(files, dict) else {}


def _foreign(folder: Path) -> list[str]:
    """Names in ``folder`` that wavefabric did not write there (or that were changed since), sorted."""
    ours = _manifest(folder)
    foreign = []
    for entry in sorted(folder.iterdir()):
        if entry.name == MANIFEST and ours:
            continue
        is_ours = (entry.name in ours and entry.is_file() and not entry.is_symlink()
                   and _sha256(entry) == ours[entry.name])
        if not is_ours:
            foreign.append(entry.name)
    return foreign


def check_output_folder(path: str | os.PathLike, force: bool = False) -> Path:
    """Check, before any work, that :func:`atomic_folder` may write ``path``; return it (links followed).

    Raises
    ------
    OutputError
        One line naming ``path``: its parent does not exist or is not writable, it is not a folder, or it
        holds files that wavefabric did not write and ``force`` is false.
    """
    target = _resolve(path)
    if target.exists() and not target.is_dir():
        raise OutputError(f"cannot write folder {str(path)!r}: it exists and is not a folder")
    if target.is_dir():
        try:
            foreign = _foreign(target)
        except OSError as error:
            raise OutputError(f"cannot write folder {str(path)!r}: {_reason(error)}") from None
        if foreign and not force:
            more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
            raise OutputError(f"folder {str(path)!r} holds files wavefabric did not write ({foreign[0]}{more}): "
                              f"choose another folder, or pass --force to add wavefabric's files beside them")
        _probe_folder(target if foreign else target.parent, path)
    else:
        _probe_folder(target.parent, path)
    return target


def _write_manifest(folder: Path, names: list[str]) -> None:
    files = {name: _sha256(folder / name) for name in names}
    with atomic_write(folder / MANIFEST) as f:
        json.dump({"generator": "wavefabric", "files": files}, f, indent=1, sort_keys=True)


def _merge(tmp: Path, target: Path, names: list[str], shown: str | os.PathLike) -> None:
    """Move the files ``names`` from ``tmp`` into ``target`` one by one, never over a file that is not ours."""
    old = _manifest(target)
    foreign = set(_foreign(target))
    clash = [name for name in names if name in foreign]
    if clash:
        raise OutputError(f"folder {str(shown)!r} has its own {clash[0]!r}, which wavefabric would replace: "
                          "move it away first")
    for name in names:
        os.replace(tmp / name, target / name)
    for name in set(old) - set(names):  # wavefabric's own files from an earlier run, unchanged since
        if (target / name).is_file() and _sha256(target / name) == old[name]:
            (target / name).unlink()
    _write_manifest(target, names)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success its files appear at ``path``, on error it is deleted.

    If ``path`` does not exist, is empty or holds only files wavefabric wrote (per its :data:`MANIFEST`), it
    is replaced as a whole, all at once. If it holds other files, :class:`OutputError` is raised before
    anything is written, unless ``force``: then the new files are moved in one by one and the other files
    stay (a name clash with one of them is refused). The yielded folder must hold only files.
    """
    target = check_output_folder(path, force)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the result should look like any new folder
    except OSError as error:
        raise OutputError(f"cannot write folder {str(path)!r}: {_reason(error)}") from None
    try:
        yield tmp
        try:
            _publish(tmp, target, path)
        except OSError as error:
            if isinstance(error, OutputError):
                raise
            raise OutputError(f"cannot write folder {str(path)!r}: {_reason(error)}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp: Path, target: Path, shown: str | os.PathLike) -> None:
    """Put the files of ``tmp`` at ``target``: all at once if it has only wavefabric's files, else merged."""
    names = sorted(entry.name for entry in tmp.iterdir())
    if target.is_dir() and _foreign(target):
        _merge(tmp, target, names, shown)
        return
    _write_manifest(tmp, names)
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.replace(target, old / target.name)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:
            os.replace(old / target.name, target)
        raise
    if old is not None:
        shutil.rmtree(old)
