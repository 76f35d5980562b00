"""How numbers are written for people (pages, reports, the CLI, reasons given to clients): at most a few
significant digits, whatever the size. Pure: no I/O.

A feature a client sent at 1e300 must not print as a 300-digit number, and NaN or a missing value reads as
a dash rather than as Python's repr.
"""

from __future__ import annotations

import math


def num(value: object, digits: int = 4) -> str:
    """`5.1`, `0.0312`, `2.1e+08`: `%g` with `digits` significant digits; `–` for None or NaN."""
    if value is None or isinstance(value, bool):
        return "–" if value is None else str(value)
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x):
        return "–"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return f"{x:.{digits}g}"


def pct(value: float | None, digits: int = 1) -> str:
    """A share as a percentage, `12.5%`; `–` for None."""
    return "–" if value is None else f"{100 * value:.{digits}f}%"
