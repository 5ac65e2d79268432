"""The plots of a sweep: real-time factor (or cycles) against DSP48E1 and against LUT, one PNG each.

Each plot draws the xc7z020's limit of its resource and marks the Pareto front: the points that no other point
beats on both axes (fewer resources and a higher real-time factor, or fewer cycles). Only points without an
error and with both figures are drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .model.perf import XC7Z020
from .sweep import point_label

__all__ = ["RESOURCES", "pareto_front", "write_plots"]

#: The resources plotted against: the figure's name, its axis label, the xc7z020's count.
RESOURCES = {"dsp48e1": ("DSP48E1", XC7Z020["dsp48e1"]), "lut": ("LUT (logic and LUTRAM)", XC7Z020["lut"])}


#: Points of the Pareto front listed beside a plot.
_LISTED = 30


def pareto_front(xs: Sequence[float], ys: Sequence[float], higher_is_better: bool) -> list[int]:
    """Indices of the points that no other point dominates (no more ``x``, a ``y`` at least as good, one of them
    strictly better), in order of increasing ``x``."""
    sign = -1 if higher_is_better else 1
    order = sorted(range(len(xs)), key=lambda i: (xs[i], sign * ys[i]))
    front: list[int] = []
    for i in order:
        if not front or sign * ys[i] < sign * ys[front[-1]]:
            front.append(i)
    return front


def _resource(record: dict, name: str) -> float | None:
    if name == "lut":
        return None if record["lut"] is None else record["lut"] + (record["lutram"] or 0)
    return record[name]


def write_plots(folder: Path, engine: str, keys: list[str], records: list[dict]) -> list[str]:
    """Write ``{metric}_vs_{resource}.png`` into ``folder`` for each resource some point has; return the names.

    The metric is the real-time factor if any point has one, else cycles (with the figure they are, from
    ``cycles_figure``). ``keys`` are the grid's keys: the front's points are labelled with the ones that vary.
    """
    from matplotlib.figure import Figure

    good = [record for record in records if not record["error"]]
    metric = "real_time_factor" if any(record["real_time_factor"] is not None for record in good) else "cycles"
    higher_is_better = metric == "real_time_factor"
    varying = [key for key in keys if len({record["params"][key] for record in records}) > 1] or keys
    names = []
    for resource, (axis_label, limit) in RESOURCES.items():
        drawn = [record for record in good if record[metric] is not None and _resource(record, resource) is not None]
        if not drawn:
            continue
        xs = [_resource(record, resource) for record in drawn]
        ys = [record[metric] for record in drawn]
        front = pareto_front(xs, ys, higher_is_better)
        figure = Figure(figsize=(10, 5), layout="constrained")
        ax = figure.add_subplot()
        ax.scatter(xs, ys, s=18, color="tab:blue", label="design points")
        ax.plot([xs[i] for i in front], [ys[i] for i in front], "o-", color="tab:orange", markersize=7,
                markerfacecolor="none", drawstyle="steps-post", label="Pareto front")
        # The front's points are numbered on the plot and listed beside it: labels on the plot would overlap.
        for number, i in enumerate(front[:_LISTED], 1):
            ax.annotate(str(number), (xs[i], ys[i]), textcoords="offset points", xytext=(4, -10), fontsize=7)
        listed = [f"{number}: {point_label(drawn[i]['params'], varying)}"
                  for number, i in enumerate(front[:_LISTED], 1)]
        if len(front) > _LISTED:
            listed.append(f"and {len(front) - _LISTED} more")
        ax.text(1.02, 1, "Pareto front\n" + "\n".join(listed), transform=ax.transAxes, fontsize=7, va="top")
        ax.axvline(limit, color="tab:red", linestyle="--", label=f"xc7z020: {limit:,} {axis_label.split()[0]}")
        if metric == "real_time_factor":
            ax.axhline(1.0, color="grey", linestyle=":", label="real time")
            ax.set_ylabel("real-time factor")
        else:
            figures = sorted({record["cycles_figure"] for record in drawn})
            ax.set_ylabel(f"cycles ({', '.join(figures)})")
        if max(ys) > 100 * min(ys) > 0:
            ax.set_yscale("log")
        ax.set_xlabel(axis_label)
        if max(xs) * 10 < limit:  # small designs would sit on the axis beside the device's limit
            ax.set_xscale("log")
            ax.set_xlim(min(xs) / 2, limit * 2)
        else:
            ax.set_xlim(0, max(max(xs), limit) * 1.05)
        ax.set_title(f"{engine}: {len(drawn)} points")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        name = f"{metric}_vs_{resource}.png"
        figure.savefig(folder / name, dpi=120)
        names.append(name)
    return names
