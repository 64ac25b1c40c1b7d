"""Server-side SVG charts for the metrics page (no JavaScript, no image libraries).

Labels are escaped; the SVG is embedded inline in the page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from markupsafe import Markup

_COLOURS = ("#3b6ea5", "#c0504d", "#9bbb59", "#8064a2", "#4bacc6", "#f79646")


def bar_chart(
    items: Sequence[tuple[str, float]],
    *,
    unit: str = "",
    width: int = 560,
    fmt: str = "{:g}",
    floor: float = 0.0,
) -> Markup:
    """Horizontal bars, one per (label, value), scaled to the largest value or `floor`,
    whichever is more (so 0.01 h is not drawn as a full-width bar when all are small)."""
    if not items:
        return Markup('<p class="empty">no data yet</p>')
    row, label_w = 22, 190
    top = max(max((v for _, v in items), default=0.0), floor) or 1.0
    height = row * len(items) + 6
    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
    ]
    span = width - label_w - 70
    for i, (label, value) in enumerate(items):
        y = i * row + 3
        w = max(1.0, span * max(value, 0.0) / top)
        text = escape(fmt.format(value) + unit)
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{row - 6}" '
            f'fill="{_COLOURS[0]}"><title>{escape(label)}: {text}</title></rect>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + 14}">{text}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(
    series: Mapping[str, Sequence[int]], *, width: int = 560, height: int = 160
) -> Markup:
    """One polyline per series over equally spaced points (e.g. the last 24 hours)."""
    if not series:
        return Markup('<p class="empty">no data yet</p>')
    points = max(len(v) for v in series.values())
    top = max((max(v) for v in series.values() if v), default=0) or 1
    pad, legend = 24, 18 * len(series)
    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{height + legend}" '
        f'viewBox="0 0 {width} {height + legend}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="2" y="12">{top}/h</text>',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - 4}" y2="{height - pad}" '
        'stroke="#999"/>',
    ]
    step = (width - pad - 8) / max(1, points - 1)
    for k, (name, values) in enumerate(sorted(series.items())):
        colour = _COLOURS[k % len(_COLOURS)]
        coords = " ".join(
            f"{pad + i * step:.1f},{(height - pad) - (height - 2 * pad) * v / top:.1f}"
            for i, v in enumerate(values)
        )
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}">'
            f"<title>{escape(name)}</title></polyline>"
            f'<text x="{pad}" y="{height + 14 + 18 * k}" fill="{colour}">'
            f"{escape(name)}: {sum(values)} decisions</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
