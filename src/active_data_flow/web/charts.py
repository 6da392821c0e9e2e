"""The run-history chart: inline SVG drawn on the server, so it shows without JavaScript.

Bars are the rows each run wrote (red for failed runs), the line is each run's duration;
each has its own scale, labelled on its side. Every bar carries a ``<title>`` (a tooltip
in browsers, text for screen readers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

__all__ = ["run_history_svg"]

WIDTH, HEIGHT = 720, 180
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 56, 56, 12, 24


def run_history_svg(runs: Sequence[dict[str, Any]]) -> Markup:
    """An SVG chart of ``runs`` (run views, any order; drawn oldest first)."""
    done = sorted((r for r in runs if r.get("ended_at")), key=lambda r: r["id"])
    if not done:
        return Markup('<p class="muted">No finished runs yet: the chart appears after the '
                      "first one.</p>")
    rows_max = max(max(int(r["written"] or 0) for r in done), 1)
    time_max = max(max(float(r["duration_s"] or 0) for r in done), 0.001)
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    step = plot_w / len(done)
    bar_w = min(max(step * 0.7, 1.0), 40.0)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="Rows written and duration of the last {len(done)} runs" '
        'xmlns="http://www.w3.org/2000/svg">',
        _axis_labels(rows_max, time_max, plot_h),
    ]
    points = []
    for i, run in enumerate(done):
        written = int(run["written"] or 0)
        seconds = float(run["duration_s"] or 0)
        x = PAD_LEFT + i * step + (step - bar_w) / 2
        h = plot_h * written / rows_max
        y = PAD_TOP + plot_h - h
        css = "bar failed" if run["status"] == "failed" else "bar"
        title = escape(f"run {run['id']} ({run['status']}): {written:,} rows written "
                       f"in {seconds:.2f} s")
        parts.append(f'<rect class="{css}" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                     f'height="{max(h, 0.5):.1f}"><title>{title}</title></rect>')
        cx = PAD_LEFT + i * step + step / 2
        cy = PAD_TOP + plot_h - plot_h * seconds / time_max
        points.append(f"{cx:.1f},{cy:.1f}")
    parts.append(f'<polyline class="duration" fill="none" points="{" ".join(points)}"/>')
    parts.extend(f'<circle class="duration-point" cx="{p.split(",")[0]}" '
                 f'cy="{p.split(",")[1]}" r="2.5"/>' for p in points)
    parts.append(
        f'<line class="axis" x1="{PAD_LEFT}" y1="{PAD_TOP + plot_h}" '
        f'x2="{WIDTH - PAD_RIGHT}" y2="{PAD_TOP + plot_h}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _axis_labels(rows_max: int, time_max: float, plot_h: float) -> str:
    bottom = PAD_TOP + plot_h
    return (
        f'<text class="label rows" x="{PAD_LEFT - 6}" y="{PAD_TOP + 10}" '
        f'text-anchor="end">{rows_max:,}</text>'
        f'<text class="label rows" x="{PAD_LEFT - 6}" y="{bottom}" text-anchor="end">0</text>'
        f'<text class="label rows" x="{PAD_LEFT - 6}" y="{bottom + 16}" '
        'text-anchor="end">rows</text>'
        f'<text class="label time" x="{WIDTH - PAD_RIGHT + 6}" y="{PAD_TOP + 10}">'
        f"{time_max:.2f} s</text>"
        f'<text class="label time" x="{WIDTH - PAD_RIGHT + 6}" y="{bottom}">0</text>'
        f'<text class="label time" x="{WIDTH - PAD_RIGHT + 6}" y="{bottom + 16}">time</text>'
    )
