"""Shared by the benchmark scripts: print a JSON result and write it as a section of docs/benchmarks.md.

Each script owns one section, delimited by HTML comments, so scripts can be rerun in any order and each
replaces only its own figures.
"""

from __future__ import annotations

import json
import platform
import re
import sys
from pathlib import Path

from wavefabric.model.files import atomic_write

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Every figure here was measured by the script named in its section, which prints the same figures as JSON.
Rerun one with the command shown; it replaces only its own section.
"""


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def publish(name: str, title: str, result: dict, markdown: str) -> None:
    """Print ``result`` as JSON and replace section ``name`` of docs/benchmarks.md with ``markdown``."""
    print(json.dumps(result, indent=2))
    command = "python " + " ".join([f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    body = f"## {title}\n\nCommand: `{command}` (machine: {machine()})\n\n{markdown.strip()}\n"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = DOC.read_text() if DOC.exists() else HEADER
    section = f"{start}\n{body}{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    DOC.parent.mkdir(exist_ok=True)
    with atomic_write(DOC) as f:
        f.write(text)


def table(rows: list[dict], columns: list[str]) -> str:
    """A markdown table of ``rows`` (dicts) with the given columns."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
