"""The report's pictures: a per-message timeline with the fault windows, and latency CDFs.

Invariants:

* Plots are made on :class:`matplotlib.figure.Figure` objects with the SVG canvas: no pyplot
  global state, no display, safe in any thread and under any backend setting.
* The SVG is self-contained (glyphs as paths, no metadata, no external references) and
  deterministic: a fixed hash salt, no date, a seeded sample of messages.
* Times on the timeline are seconds since the run's start on the lab clock.
"""

from __future__ import annotations

import io
import random
import re
from collections.abc import Mapping, Sequence

import matplotlib
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

from .checker_stats import LATENCY_POINTS, MessageTrace
from .record import Fault

__all__ = ["MAX_SAMPLE", "latency_svg", "sample", "timeline_svg"]

#: Most messages drawn on a timeline: more lines than this are unreadable.
MAX_SAMPLE = 40

_MARKERS: dict[str, tuple[str, str]] = {  # point -> (marker, colour)
    "written": ("|", "#888888"),
    "tcp_acked": ("x", "#9467bd"),
    "sent": ("o", "#1f77b4"),
    "delivered": ("D", "#2ca02c"),
    "read": ("s", "#17becf"),
    "expired": ("X", "#d62728"),
    "refused": ("P", "#d62728"),
}
_FAULT_COLOURS = ("#ff7f0e", "#d62728", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#9467bd")


def sample(
    messages: Sequence[MessageTrace], seed: int, first: Sequence[str] = ()
) -> list[MessageTrace]:
    """At most :data:`MAX_SAMPLE` messages, by composed time: those in ``first`` (e.g. with
    violations) before a seeded random sample of the rest."""
    wanted = set(first)
    chosen = [m for m in messages if m.mid in wanted][:MAX_SAMPLE]
    rest = [m for m in messages if m.mid not in wanted]
    k = min(len(rest), MAX_SAMPLE - len(chosen))
    chosen += random.Random(seed).sample(rest, k)
    return sorted(chosen, key=lambda m: (m.composed, m.mid))


def _order(point: str) -> tuple[int, str]:
    names = list(_MARKERS)
    return (names.index(point) if point in names else len(names), point)


def timeline_svg(
    messages: Sequence[MessageTrace], faults: Sequence[Fault], start: float, title: str
) -> str:
    """One horizontal line per message from composed to its last point, a marker per point,
    fault windows as shaded spans (instant faults as vertical lines) labelled by kind."""
    height = 1.2 + 0.22 * max(len(messages), 5)
    fig = Figure(figsize=(10, height))
    # Fixed margins (in inches) instead of tight_layout, which lays out every text twice.
    fig.subplots_adjust(left=0.14, right=0.98, bottom=0.6 / height, top=1 - 0.4 / height)
    ax = fig.add_subplot()
    kinds = sorted({f.kind for f in faults})
    colours = {k: _FAULT_COLOURS[i % len(_FAULT_COLOURS)] for i, k in enumerate(kinds)}
    for f in faults:
        x0 = f.start - start
        if f.instant:
            ax.axvline(x0, color=colours[f.kind], linestyle="--", linewidth=1)
        else:
            assert f.end is not None  # not instant
            ax.axvspan(x0, f.end - start, color=colours[f.kind], alpha=0.15, linewidth=0)
        ax.text(x0, 1.0, f" {f.kind}", transform=ax.get_xaxis_transform(), rotation=90,
                va="top", ha="left", fontsize=7, color=colours[f.kind])  # fmt: skip
    ys = range(len(messages))
    ax.hlines(ys, [m.composed - start for m in messages], [m.last - start for m in messages],
              color="#bbbbbb", linewidth=1)  # fmt: skip
    by_point: dict[str, tuple[list[float], list[int]]] = {}
    for y, m in enumerate(messages):
        for point, t in m.points:
            xs_ys = by_point.setdefault(point, ([], []))
            xs_ys[0].append(t - start)
            xs_ys[1].append(y)
    for point, (xs, ys_) in sorted(by_point.items(), key=lambda p: _order(p[0])):
        marker, colour = _MARKERS.get(point, (".", "#000000"))
        ax.plot(xs, ys_, marker=marker, color=colour, linestyle="", markersize=4, label=point)
    ax.set_yticks(range(len(messages)), [f"{m.mid[-8:]} {m.sender}" for m in messages], fontsize=6)
    ax.set_ylim(-1, max(len(messages), 1))
    ax.set_xlabel("seconds since the run started (lab clock)")
    ax.set_title(title, fontsize=10)
    if by_point:
        ax.legend(loc="lower right", fontsize=7, ncols=len(by_point))
    if not messages:
        ax.text(0.5, 0.5, "no messages", transform=ax.transAxes, ha="center")
    return _svg(fig)


def latency_svg(latencies: Mapping[str, Sequence[float]], title: str) -> str:
    """The CDF of the latency to each confirmation point (log x axis; non-positive values,
    e.g. from a clock jump, cannot be drawn on it and are left out)."""
    fig = Figure(figsize=(7, 4))
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.13, top=0.92)
    ax = fig.add_subplot()
    drawn = 0
    for point in LATENCY_POINTS:
        values = sorted(v for v in latencies.get(point, ()) if v > 0)
        if not values:
            continue
        ys = [(i + 1) / len(values) for i in range(len(values))]
        colour = _MARKERS[point][1]
        ax.step(values, ys, where="post", color=colour, label=f"{point} (n={len(values)})")
        drawn += 1
    if drawn:
        ax.set_xscale("log")
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no latencies", transform=ax.transAxes, ha="center")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("seconds after composed (sender's clock)")
    ax.set_ylabel("fraction of messages")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    return _svg(fig)


_PROLOGUE = re.compile(rb"^.*?(?=<svg)", re.DOTALL)
_METADATA = re.compile(rb"<metadata>.*?</metadata>\s*", re.DOTALL)


def _svg(fig: Figure) -> str:
    """The figure as an inline ``<svg>`` element (no XML prologue, no metadata)."""
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "tidings-lab", "svg.fonttype": "path"}):
        FigureCanvasSVG(fig)
        fig.savefig(buf, format="svg", metadata={"Date": None})
    data = _METADATA.sub(b"", _PROLOGUE.sub(b"", buf.getvalue(), count=1))
    return data.decode()
