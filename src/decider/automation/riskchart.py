"""A risk-coverage chart as inline SVG: what each threshold of a suggestion would automate, and at what error.

Drawn on the server for /admin/policy and the `decider report` file, for the reasons registry/reliability.py
gives (strict CSP, no script or style: presentation attributes only) and in its manner, reusing its helpers.
Pure: it takes one evidence source of evidence.suggestion() (`curve` and `overall`) and returns markup, every
number formatted and every text escaped.

Layout, in SVG units (also pixels, 360 x 246): the plot is the rectangle from (LEFT, TOP), PLOT_W wide and
PLOT_H high, so a share automated s lands at x = LEFT + s * PLOT_W and an error e at
y = TOP + (1 - e / top) * PLOT_H, where `top` (see y_top) is the error at the top edge.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from decider.registry.reliability import AFTER_COLOUR, BEFORE_COLOUR, FONT, _c, _number, _unit

WIDTH, HEIGHT = 360, 246
LEFT, TOP, PLOT_W, PLOT_H = 52, 10, 288, 170
RIGHT, BOTTOM = LEFT + PLOT_W, TOP + PLOT_H
X_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)
STEPS = (1.0, 2.0, 2.5, 5.0)  # y tick steps, times a power of ten: at most MAX_TICKS of them up to the top
MAX_TICKS = 5
# Told apart without colour too: the bound solid with filled dots, the error seen dashed with hollow squares,
# the target dotted; the policy in force a hollow diamond, the certified threshold a filled triangle.
BOUND_COLOUR, SEEN_COLOUR, TARGET_COLOUR = AFTER_COLOUR, BEFORE_COLOUR, "#3d4451"
CURRENT_COLOUR, CERTIFIED_COLOUR = "#1d2330", "#1f7a3a"
SEEN_DASH, TARGET_DASH = "5 3", "1.5 2.5"


@dataclass(frozen=True)
class Point:
    """One threshold of a curve (or the certified one), its numbers checked: a malformed suggestion still draws."""

    threshold: float
    automates: float
    error_seen: float | None
    error_bound: float
    labelled: int | None


def points(curve: Any) -> list[Point]:
    """The drawable points of a curve, strictest threshold first; entries that are not numbers are left out."""
    out = []
    for p in curve if isinstance(curve, list) else []:
        if not isinstance(p, Mapping):
            continue
        threshold, automates, bound = _unit(p.get("threshold")), _unit(p.get("automates")), _unit(p.get("error_bound"))
        if threshold is None or automates is None or bound is None:
            continue
        n = _number(p.get("labelled"))
        labelled = None if n is None or n < 0 else int(n)
        seen = None if labelled == 0 else _unit(p.get("error_seen"))  # certify.py says 0 over no labels
        out.append(Point(threshold, automates, seen, bound, labelled))
    return sorted(out, key=lambda q: -q.threshold)


def y_top(target: float | None, pts: list[Point]) -> float:
    """The error at the top edge: room for twice the target and every bound shown, rounded up to a whole
    number of tick steps (so the ticks read as round percentages), never above 100%."""
    need = max([2 * (target or 0.0), *(q.error_bound for q in pts)]) or 0.1
    return min(_step(need) * math.ceil(need / _step(need) - 1e-9), 1.0)


def _step(top: float) -> float:
    """The smallest round tick step that reaches `top` in at most MAX_TICKS steps."""
    power = 10.0 ** math.floor(math.log10(top / MAX_TICKS))
    return next(s * p for p in (power, 10 * power) for s in STEPS if s * p * MAX_TICKS >= top - 1e-12)


def y_ticks(top: float) -> list[float]:
    step = _step(top)
    return [i * step for i in range(int(round(top / step)) + 1)]


def x_of(automates: float) -> float:
    return LEFT + automates * PLOT_W


def y_of(error: float, top: float) -> float:
    return TOP + (1 - min(max(error, 0.0), top) / top) * PLOT_H


def _pct(value: float | None) -> str:
    """A share for people: one decimal, two below 1% (an error of 0.4% is not 0%)."""
    if value is None:
        return "–"
    return f"{value * 100:.2f}%" if 0 < value < 0.01 else f"{value * 100:.1f}%"


def _share(value: float) -> str:
    """A round share for a label or tick: 2%, 2.5%, 25%."""
    return f"{value * 100:.3g}%"


def _t(value: float) -> str:
    """A threshold as the config writes it: 0.9, 0.953."""
    return f"{round(value, 3):g}"


def _labels(n: int | None) -> str:
    return "" if n is None else f" ({n} label{'' if n == 1 else 's'})"


def _figures(automates: float | None, seen: float | None, bound: float | None, n: int | None) -> str:
    return f"automates {_pct(automates)}, error seen {_pct(seen)}, bound ≤ {_pct(bound)}{_labels(n)}"


def _tip(p: Point) -> Markup:
    return escape(f"threshold {p.threshold:.2f}: {_figures(p.automates, p.error_seen, p.error_bound, p.labelled)}")


def nearest(pts: list[Point], threshold: float) -> Point | None:
    """The curve point closest to a threshold (the stricter on a tie): where a policy's threshold sits."""
    return min(pts, key=lambda q: (abs(q.threshold - threshold), -q.threshold), default=None)


def _segments(pts: list[Point], attr: str) -> list[list[Point]]:
    """Runs of points that have a value for `attr`: a line is not drawn across a threshold without one."""
    runs: list[list[Point]] = [[]]
    for p in pts:
        if getattr(p, attr) is None:
            runs.append([])
        else:
            runs[-1].append(p)
    return [r for r in runs if r]


def _curve(kind: str, pts: list[Point], top: float) -> str:
    attr = "error_bound" if kind == "bound" else "error_seen"
    colour, dash = (BOUND_COLOUR, "") if kind == "bound" else (SEEN_COLOUR, f' stroke-dasharray="{SEEN_DASH}"')
    parts = [f'<g class="curve {kind}">']
    for run in _segments(pts, attr):
        if len(run) > 1:
            line = " ".join(f"{_c(x_of(p.automates))},{_c(y_of(getattr(p, attr), top))}" for p in run)
            parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="1.5"{dash}/>')
    for p in pts:
        value = getattr(p, attr)
        if value is None:
            continue
        x, y = x_of(p.automates), y_of(value, top)
        if kind == "bound":
            parts.append(f'<circle cx="{_c(x)}" cy="{_c(y)}" r="2.2" fill="{colour}"><title>{_tip(p)}</title></circle>')
        else:
            parts.append(f'<rect x="{_c(x - 2)}" y="{_c(y - 2)}" width="4" height="4" fill="#fff" stroke="{colour}" '
                         f'stroke-width="1"><title>{_tip(p)}</title></rect>')
    parts.append("</g>")
    return "".join(parts)


def _diamond(x: float, y: float, half: float = 5.0) -> str:
    return f"{_c(x)},{_c(y - half)} {_c(x + half)},{_c(y)} {_c(x)},{_c(y + half)} {_c(x - half)},{_c(y)}"


def _triangle(x: float, y: float, half: float = 5.0) -> str:
    return f"{_c(x)},{_c(y - half)} {_c(x + half)},{_c(y + half * 0.8)} {_c(x - half)},{_c(y + half * 0.8)}"


def _marker(kind: str, polygon: str, tip: str, paint: str) -> str:
    """One marker on the curve: a polygon with a hover title; `paint` its fill and stroke attributes."""
    return f'<g class="marker {kind}"><polygon points="{polygon}" {paint}><title>{escape(tip)}</title></polygon></g>'


def _current_marker(p: Point, threshold: float, top: float) -> str:
    tip = (f"in force: threshold {_t(threshold)}, nearest curve point {p.threshold:.2f}: "
           f"{_figures(p.automates, p.error_seen, p.error_bound, p.labelled)}")
    return _marker("current", _diamond(x_of(p.automates), y_of(p.error_bound, top)), tip,
                   f'fill="none" stroke="{CURRENT_COLOUR}" stroke-width="1.75"')


def certified(overall: Any, pts: list[Point]) -> Point | None:
    """The certified overall threshold, at its own figures (between two curve points, at or under the target)
    when the suggestion has them, else at the nearest curve point; None when nothing was certified."""
    o = overall if isinstance(overall, Mapping) else {}
    threshold = _unit(o.get("threshold"))
    if threshold is None:
        return None
    automates, bound, n = _unit(o.get("automates")), _unit(o.get("error_bound")), _number(o.get("labelled"))
    if automates is not None and bound is not None:
        return Point(threshold, automates, _unit(o.get("error_seen")), bound, None if n is None else int(n))
    p = nearest(pts, threshold)
    return None if p is None else Point(threshold, p.automates, p.error_seen, p.error_bound, p.labelled)


def _certified_marker(c: Point, top: float) -> str:
    tip = f"certified: threshold {_t(c.threshold)}: {_figures(c.automates, c.error_seen, c.error_bound, c.labelled)}"
    return _marker("certified", _triangle(x_of(c.automates), y_of(c.error_bound, top)), tip,
                   f'fill="{CERTIFIED_COLOUR}" stroke="#fff" stroke-width="0.75"')


def _target_line(target: float, top: float) -> str:
    y = _c(y_of(target, top))
    return (f'<line class="target" x1="{LEFT}" y1="{y}" x2="{RIGHT}" y2="{y}" stroke="{TARGET_COLOUR}" '
            f'stroke-width="1.25" stroke-dasharray="{TARGET_DASH}"/>')


def _target_label(target: float, top: float) -> str:
    """Over the curves, with a white halo: readable wherever they cross it."""
    return (f'<text class="target" x="{RIGHT - 4}" y="{_c(y_of(target, top) - 4)}" text-anchor="end" '
            f'paint-order="stroke" stroke="#fff" stroke-width="3" {FONT}>target {_share(target)}</text>')


def _axes(top: float) -> Iterable[str]:
    yield (f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" fill="#fff" '
           f'stroke="#b9c1cf"/>')
    for t in X_TICKS:
        x = _c(x_of(t))
        if 0 < t < 1:
            yield f'<line x1="{x}" y1="{TOP}" x2="{x}" y2="{BOTTOM}" stroke="#eceff5"/>'
        yield f'<line x1="{x}" y1="{BOTTOM}" x2="{x}" y2="{BOTTOM + 4}" stroke="#5b6577"/>'
        yield f'<text class="tick x" x="{x}" y="{BOTTOM + 14}" text-anchor="middle" {FONT}>{_share(t)}</text>'
    for t in y_ticks(top):
        y = _c(y_of(t, top))
        if 0 < t < top:
            yield f'<line x1="{LEFT}" y1="{y}" x2="{RIGHT}" y2="{y}" stroke="#eceff5"/>'
        yield f'<line x1="{LEFT - 4}" y1="{y}" x2="{LEFT}" y2="{y}" stroke="#5b6577"/>'
        yield (f'<text class="tick y" x="{LEFT - 6}" y="{_c(y_of(t, top) + 3.5)}" text-anchor="end" {FONT}>'
               f"{_share(t)}</text>")
    yield (f'<text x="{LEFT + PLOT_W / 2:g}" y="{BOTTOM + 27}" text-anchor="middle" {FONT}>'
           f"share of cases automated</text>")
    mid = TOP + PLOT_H / 2
    yield (f'<text x="12" y="{mid:g}" text-anchor="middle" transform="rotate(-90 12 {mid:g})" {FONT}>'
           f"error of automatic decisions</text>")


def _legend(conf: float | None, target: float | None, current: float | None, cert: Point | None) -> str:
    """Two rows under the axis label: the lines, then the markers drawn. Each entry is a sample drawn at its
    x, its text, and the room it takes."""
    y1, y2 = BOTTOM + 44, BOTTOM + 59
    mid1, mid2 = y1 - 3, y2 - 3

    def line(x: float, colour: str, extra: str = "") -> str:
        return f'<line x1="{x}" y1="{mid1}" x2="{x + 18}" y2="{mid1}" stroke="{colour}" stroke-width="1.5"{extra}/>'

    row1: list[tuple[str, str, int]] = [
        (line(0, BOUND_COLOUR) + f'<circle cx="9" cy="{mid1}" r="2.2" fill="{BOUND_COLOUR}"/>',
         "error bound" if conf is None else f"error bound ({_share(conf)})", 125),
        (line(0, SEEN_COLOUR, f' stroke-dasharray="{SEEN_DASH}"') + f'<rect x="7" y="{mid1 - 2}" width="4" '
         f'height="4" fill="#fff" stroke="{SEEN_COLOUR}" stroke-width="1"/>', "error seen", 85)]
    if target is not None:
        row1.append((line(0, TARGET_COLOUR, f' stroke-dasharray="{TARGET_DASH}"'), f"target {_share(target)}", 0))
    row2: list[tuple[str, str, int]] = []
    if current is not None:
        row2.append((f'<polygon points="{_diamond(9, mid2, 4)}" fill="none" stroke="{CURRENT_COLOUR}" '
                     f'stroke-width="1.5"/>', f"in force {_t(current)}", 125))
    if cert is not None:
        row2.append((f'<polygon points="{_triangle(9, mid2, 4)}" fill="{CERTIFIED_COLOUR}"/>',
                     f"certified {_t(cert.threshold)}", 0))
    parts = ['<g class="legend">']
    for row, y in ((row1, y1), (row2, y2)):
        x = LEFT - 40
        for sample, text, width in row:  # each sample drawn at 0, moved to its place
            parts.append(f'<g transform="translate({x} 0)">{sample}</g>'
                         f'<text x="{x + 22}" y="{y}" {FONT}>{escape(text)}</text>')
            x += width
    parts.append("</g>")
    return "".join(parts)


def risk_chart_svg(evidence: Any, *, target: Any, confidence: Any, current: Any = None,
                   name: str = "the model") -> Markup:
    """The chart of one evidence source of a threshold suggestion (`suggestion["live"]` or `["training"]`)
    for `name`: per threshold, the error among the cases it would automate (its upper bound at `confidence`,
    and the error seen) against the share it would automate, with the `target` error, the policy in force
    (`current`, a threshold: at the nearest curve point) and the certified threshold. Hovering a point tells
    its figures; with no labelled case the frame says so."""
    source = evidence if isinstance(evidence, Mapping) else {}
    pts = points(source.get("curve"))
    goal = _unit(target)
    goal = goal if goal else None
    conf = _unit(confidence)
    level = "upper bound" if conf is None else f"{_share(conf)} upper bound"
    top = y_top(goal, pts)
    now = _unit(current)
    here = None if now is None else nearest(pts, now)
    cert = certified(source.get("overall"), pts)
    labelled = any(p.error_seen is not None for p in pts)

    span = f"thresholds {pts[0].threshold:.2f} down to {pts[-1].threshold:.2f}" if pts else "no thresholds"
    summary = [f"Risk–coverage chart of {name}: error of automatic decisions against the share of cases "
               f"automated, for {span}. Solid line: the {level} on the error; dashed: the error seen"
               + (f"; dotted: the target of {_share(goal)}." if goal is not None else ".")]
    if here is not None and now is not None:
        summary.append(f"In force: threshold {_t(now)}, "
                       f"{_figures(here.automates, here.error_seen, here.error_bound, None)}.")
    summary.append(f"Certified: threshold {_t(cert.threshold)}, "
                   f"{_figures(cert.automates, cert.error_seen, cert.error_bound, None)}." if cert is not None
                   else "No threshold is certified.")
    if not labelled:
        summary.append("No labelled cases yet.")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="riskchart" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(" ".join(summary))}">',
             f"<title>{escape(f'Risk–coverage of {name}: error bound and error seen against share automated')}</title>",
             *_axes(top)]
    if goal is not None:
        parts.append(_target_line(goal, top))
    if pts:
        parts += [_curve("bound", pts, top), _curve("seen", pts, top)]
    if goal is not None:
        parts.append(_target_label(goal, top))
    if not labelled:
        parts.append(f'<text class="empty" x="{LEFT + 8}" y="{TOP + 22}" {FONT}>no labelled cases yet</text>')
    if here is not None and now is not None:
        parts.append(_current_marker(here, now, top))
    if cert is not None:
        parts.append(_certified_marker(cert, top))
    parts += [_legend(conf, goal, now if here is not None else None, cert), "</svg>"]
    return Markup("".join(parts))


SOURCES = (("live", "live evidence"), ("training", "training-time evidence"))


def charts(suggestion: Mapping[str, Any], *, current: Any = None) -> dict[str, Markup]:
    """One chart per evidence source of evidence.suggestion(), marking the threshold in force (`current`)."""
    model = suggestion.get("model_version") or "the model"
    return {source: risk_chart_svg(suggestion.get(source), target=suggestion.get("target_error"),
                                   confidence=suggestion.get("confidence"), current=current,
                                   name=f"{model}, {label}")
            for source, label in SOURCES}
