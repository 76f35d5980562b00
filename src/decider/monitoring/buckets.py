"""The time axis of the monitoring charts: a step fitted to the span the data covers, and a label for each tick.
Pure: no I/O.

The axis starts at the bucket holding the window's first case (an empty stretch before it says nothing) and
ends at the bucket holding the window's end, so a silence since the last case shows. The step is the
shortest on the ladder that draws the span in at most MAX_BUCKETS buckets: hours for a young service, days
for a long window. Steps in hours divide a day and start at midnight UTC (3-hour buckets begin at 00, 03,
06...); steps in days start at midnight of the first case's day. Every bucket is a whole number of hours, so
the per-hour aggregates of monitoring/cache.py add up to it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_BUCKETS = 60  # an automatic step draws the span in at most this many buckets
MAX_EXPLICIT = 24 * 62  # `bucket=hour` asked for over a long span keeps the newest buckets up to this
LADDER_HOURS = (1, 2, 3, 4, 6, 8, 12, 24, 48, 72, 24 * 7, 24 * 14, 24 * 28)
MAX_TICKS = 12  # labelled ticks on an axis at most; the rest are blank, every bucket keeps its tooltip
NAMED = {"hour": 1, "day": 24}


@dataclass(frozen=True)
class Step:
    hours: int

    @property
    def delta(self) -> timedelta:
        return self.hours * HOUR

    @property
    def name(self) -> str:
        """"hour", "3 hours", "day", "2 days", "week", "2 weeks": as in "cases per 3 hours"."""
        if self.hours % (24 * 7) == 0 and self.hours >= 24 * 7:
            return _plural(self.hours // (24 * 7), "week")
        if self.hours % 24 == 0:
            return _plural(self.hours // 24, "day")
        return _plural(self.hours, "hour")

    def floor(self, at: datetime) -> datetime:
        """The start of the bucket holding `at`: whole hours from midnight UTC, or midnight for day steps."""
        at = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        if self.hours >= 24:
            return at.replace(hour=0)
        return at.replace(hour=at.hour - at.hour % self.hours)


def _plural(n: int, unit: str) -> str:
    return unit if n == 1 else f"{n} {unit}s"


def choose(first: datetime | None, end: datetime, asked: str | None = None) -> Step:
    """The step for an axis from the first case to `end`: the one asked for by name, else the shortest on the
    ladder that fits the span in MAX_BUCKETS."""
    if asked:
        return Step(NAMED[asked])
    for hours in LADDER_HOURS:
        if first is None or count(first, end, Step(hours)) <= MAX_BUCKETS:
            return Step(hours)
    return Step(LADDER_HOURS[-1])


def count(first: datetime, end: datetime, step: Step) -> int:
    """Buckets from the one holding `first` to the one holding the last instant before `end`."""
    last = max(end - timedelta(microseconds=1), first)
    return int((last - step.floor(first)) / step.delta) + 1


def starts(first: datetime | None, end: datetime, step: Step, cap: int = MAX_EXPLICIT) -> list[datetime]:
    """Every bucket from the one holding the first case to the one holding `end` (exclusive end: a window
    that ends on a bucket's start does not draw that bucket), empty ones included; none without a case.
    Past `cap` buckets, the newest are kept."""
    if first is None:
        return []
    origin, n = step.floor(first), count(first, end, step)
    return [origin + i * step.delta for i in range(max(0, n - cap), n)]


def hour_index(at: datetime) -> int:
    """Hours since 1970 of the hour holding `at`: how the cache names its blocks."""
    return int(at.timestamp() // 3600) if at.tzinfo is not None else int((at.replace(tzinfo=UTC) - EPOCH) // HOUR)


def hour_start(index: int) -> datetime:
    return EPOCH + index * HOUR


def labels(bucket_starts: list[datetime], step: Step) -> tuple[list[str], list[str | list[str]]]:
    """(a full label per bucket, for tooltips and tables; the tick text per bucket, "" where skipped).

    Every k-th bucket is labelled, k the smallest that shows at most MAX_TICKS, and on hour steps rounded up
    so that the ticks fall on round times (every 6 hours: 00:00, 06:00, 12:00, 18:00). An hour tick reads
    "14:00", with the date ("11-25") beneath it on the first tick and wherever the day changes; a day tick
    reads "11-25", with the year beneath the first.
    """
    every = _every(len(bucket_starts), step)
    ticks: list[str | list[str]] = []
    last_day = None
    for i, s in enumerate(bucket_starts):
        on_grid = hour_index(s) % (every * step.hours) == 0 if step.hours < 24 else i % every == 0
        if not on_grid:
            ticks.append("")
        elif step.hours < 24:
            day = f"{s:%m-%d}"
            ticks.append(f"{s:%H:%M}" if day == last_day else [f"{s:%H:%M}", day])
            last_day = day
        else:
            ticks.append(f"{s:%m-%d}" if last_day else [f"{s:%m-%d}", f"{s:%Y}"])
            last_day = f"{s:%m-%d}"
    return [_full(s, step) for s in bucket_starts], ticks


def _full(s: datetime, step: Step) -> str:
    if step.hours < 24:
        return f"{s:%Y-%m-%d %H:%M}–{s + step.delta:%H:%M} UTC"
    if step.hours == 24:
        return f"{s:%Y-%m-%d} (UTC)"
    return f"{s:%Y-%m-%d} to {s + step.delta - timedelta(days=1):%Y-%m-%d} (UTC)"


def _every(n: int, step: Step) -> int:
    k = max(1, -(-n // MAX_TICKS))
    if step.hours < 24 and k > 1:
        while (k * step.hours) % 24 and 24 % (k * step.hours):  # neither divides a day nor is whole days
            k += 1
    return k
