"""A reliability diagram as inline SVG, drawn on the server for the models page.

Server-side because the pages run under a strict CSP (no inline script or style): the markup carries only
SVG presentation attributes, so it needs neither JavaScript nor a stylesheet to be read. Pure: it takes a
card's `calibration.reliability` and returns markup, with every number formatted and every text escaped
(a card is a file on disk, not a trusted template).

Layout, in SVG units (also pixels, 220 x 220): the plot is the square from (LEFT, TOP) with side PLOT, so
confidence c lands at x = LEFT + c * PLOT and accuracy a at y = TOP + (1 - a) * PLOT.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

SIZE = 220
LEFT, TOP, PLOT = 40, 10, 160
RIGHT, BOTTOM = LEFT + PLOT, TOP + PLOT
TICKS = (0.0, 0.5, 1.0)
MARKER_MIN, MARKER_MAX = 2.5, 6.0  # half-width of a marker, by the square root of its bin's n
FONT = 'font-family="system-ui, sans-serif" font-size="10" fill="#5b6577"'
# Two curves told apart without colour too: dashed line and hollow squares, solid line and filled circles.
BEFORE_COLOUR, AFTER_COLOUR = "#b3541e", "#2456c9"


@dataclass(frozen=True)
class Bin:
    """One non-empty bin of a curve, its numbers checked: a card with junk in it still draws."""

    low: float | None
    high: float | None
    confidence: float
    accuracy: float
    n: int | None


def x_of(confidence: float) -> float:
    return LEFT + confidence * PLOT


def y_of(accuracy: float) -> float:
    return TOP + (1 - accuracy) * PLOT


def _c(value: float) -> str:
    """A coordinate: one decimal is well below a pixel."""
    return f"{value:.1f}"


def _g(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _unit(value: Any) -> float | None:
    """A probability-like number clamped to [0, 1] (so a rounding slip cannot leave the plot), or None."""
    x = _number(value)
    return None if x is None else min(max(x, 0.0), 1.0)


def bins(points: Any) -> list[Bin]:
    """The drawable bins of one curve, by confidence; entries that are not numbers, or count no rows, are
    left out."""
    out = []
    for p in points if isinstance(points, list) else []:
        if not isinstance(p, Mapping):
            continue
        confidence, accuracy, n = _unit(p.get("confidence")), _unit(p.get("accuracy")), _number(p.get("n"))
        if confidence is None or accuracy is None or (n is not None and n <= 0):
            continue
        out.append(Bin(_number(p.get("low")), _number(p.get("high")), confidence, accuracy,
                       None if n is None else int(n)))
    return sorted(out, key=lambda b: b.confidence)


def _half(n: int | None, most: int) -> float:
    if n is None or most <= 0:
        return (MARKER_MIN + MARKER_MAX) / 2
    return MARKER_MIN + (MARKER_MAX - MARKER_MIN) * math.sqrt(n / most)


def _tip(curve: str, b: Bin) -> Markup:
    where = f"bin {_g(b.low)}–{_g(b.high)}, " if b.low is not None and b.high is not None else ""
    rows = "" if b.n is None else f", n = {b.n}"
    return escape(f"{curve}: {where}confidence {_g(b.confidence)}, accuracy {_g(b.accuracy)}{rows}")


def _marker(curve: str, b: Bin, half: float) -> str:
    x, y, tip = x_of(b.confidence), y_of(b.accuracy), _tip(curve, b)
    if curve == "before":
        return (f'<rect x="{_c(x - half)}" y="{_c(y - half)}" width="{_c(2 * half)}" height="{_c(2 * half)}" '
                f'fill="#fff" stroke="{BEFORE_COLOUR}" stroke-width="1.5">'
                f"<title>{tip}</title></rect>")
    return (f'<circle cx="{_c(x)}" cy="{_c(y)}" r="{_c(half)}" fill="{AFTER_COLOUR}" fill-opacity="0.85" '
            f'stroke="#fff" stroke-width="0.75"><title>{tip}</title></circle>')


def _curve(curve: str, points: list[Bin], most: int) -> str:
    colour, dash = (BEFORE_COLOUR, ' stroke-dasharray="5 3"') if curve == "before" else (AFTER_COLOUR, "")
    parts = [f'<g class="curve {curve}">']
    if len(points) > 1:
        line = " ".join(f"{_c(x_of(b.confidence))},{_c(y_of(b.accuracy))}" for b in points)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="1.5"{dash}/>')
    parts += [_marker(curve, b, _half(b.n, most)) for b in points]
    parts.append("</g>")
    return "".join(parts)


def _axes() -> Iterable[str]:
    yield (f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{PLOT}" height="{PLOT}" fill="#fff" '
           f'stroke="#b9c1cf"/>')
    for t in TICKS:
        x, y, label = _c(x_of(t)), _c(y_of(t)), f"{t:g}"
        if 0 < t < 1:
            yield f'<line x1="{x}" y1="{TOP}" x2="{x}" y2="{BOTTOM}" stroke="#eceff5"/>'
            yield f'<line x1="{LEFT}" y1="{y}" x2="{RIGHT}" y2="{y}" stroke="#eceff5"/>'
        yield f'<line x1="{x}" y1="{BOTTOM}" x2="{x}" y2="{BOTTOM + 4}" stroke="#5b6577"/>'
        yield f'<line x1="{LEFT - 4}" y1="{y}" x2="{LEFT}" y2="{y}" stroke="#5b6577"/>'
        yield f'<text class="tick x" x="{x}" y="{BOTTOM + 14}" text-anchor="middle" {FONT}>{label}</text>'
        yield f'<text class="tick y" x="{LEFT - 6}" y="{_c(y_of(t) + 3.5)}" text-anchor="end" {FONT}>{label}</text>'
    yield (f'<line class="diagonal" x1="{LEFT}" y1="{BOTTOM}" x2="{RIGHT}" y2="{TOP}" stroke="#8a94a6" '
           f'stroke-dasharray="2 3"/>')
    yield f'<text x="{LEFT + PLOT / 2:g}" y="{BOTTOM + 27}" text-anchor="middle" {FONT}>mean confidence</text>'
    mid = TOP + PLOT / 2
    yield (f'<text x="12" y="{mid:g}" text-anchor="middle" transform="rotate(-90 12 {mid:g})" {FONT}>'
           f"accuracy</text>")


def _legend() -> str:
    y = SIZE - 6
    return (f'<g class="legend">'
            f'<line x1="{LEFT}" y1="{y - 3}" x2="{LEFT + 18}" y2="{y - 3}" stroke="{BEFORE_COLOUR}" '
            f'stroke-width="1.5" stroke-dasharray="5 3"/>'
            f'<rect x="{LEFT + 6}" y="{y - 6}" width="6" height="6" fill="#fff" stroke="{BEFORE_COLOUR}" '
            f'stroke-width="1.5"/>'
            f'<text x="{LEFT + 22}" y="{y}" {FONT}>before</text>'
            f'<line x1="{LEFT + 85}" y1="{y - 3}" x2="{LEFT + 103}" y2="{y - 3}" stroke="{AFTER_COLOUR}" '
            f'stroke-width="1.5"/>'
            f'<circle cx="{LEFT + 94}" cy="{y - 3}" r="3" fill="{AFTER_COLOUR}"/>'
            f'<text x="{LEFT + 107}" y="{y}" {FONT}>after</text>'
            f"</g>")


def reliability_svg(reliability: Any, *, name: str = "the model") -> Markup:
    """The diagram of a card's `calibration.reliability` ({"before": [bin, ...], "after": [...]}) for the
    version `name`: per bin, accuracy (y) against mean confidence (x), with the diagonal a perfectly
    calibrated model would follow. Marker size grows with the bin's rows; hovering one tells its figures."""
    curves = reliability if isinstance(reliability, Mapping) else {}
    before, after = bins(curves.get("before")), bins(curves.get("after"))
    most = max((b.n or 0 for b in before + after), default=0)
    summary = (f"Reliability diagram of {name}: accuracy against mean confidence in {len(before)} bins before "
               f"and {len(after)} after calibration; the dashed diagonal is perfect calibration.")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="reliability" width="{SIZE}" height="{SIZE}" '
             f'viewBox="0 0 {SIZE} {SIZE}" role="img" aria-label="{escape(summary)}">',
             f"<title>{escape(f'Reliability of {name}, before and after calibration')}</title>",
             *_axes()]
    if before or after:
        parts += [_curve("before", before, most), _curve("after", after, most)]
    else:
        parts.append(f'<text class="empty" x="{LEFT + 8}" y="{TOP + 22}" {FONT}>no held-out rows to plot</text>')
    parts += [_legend(), "</svg>"]
    return Markup("".join(parts))
