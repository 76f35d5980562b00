"""The monitoring figures for a window: tally its cases (through the cache), then compute. Shared by the API,
page and report."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from decider.automation.evidence import audit_rates
from decider.config import MonitoringSettings
from decider.db import as_utc, now
from decider.errors import InvalidInput
from decider.monitoring import background as bg
from decider.monitoring import figures, queries
from decider.monitoring.buckets import hour_index, hour_start
from decider.monitoring.cache import Window, cache_for
from decider.monitoring.drift import THRESHOLDS, Thresholds

DEFAULT_SPAN = timedelta(days=7)


def thresholds_of(settings: MonitoringSettings) -> Thresholds:
    """The `[monitoring]` section of config.toml as drift thresholds."""
    return Thresholds(**settings.model_dump())


def default_since() -> datetime:
    """Seven days ago, from the start of that hour: a window that begins on an hour is summed from the cache alone."""
    return hour_start(hour_index(now() - DEFAULT_SPAN))


def aware(at: datetime | None) -> datetime | None:
    """A time without a zone is taken as UTC; one that has no UTC equivalent (year 1 or 9999 with an
    offset) is refused, instead of overflowing in the database driver."""
    if at is None:
        return None
    try:
        return as_utc(at)
    except OverflowError:
        raise InvalidInput(f"since/until: {at.isoformat()} is out of range", field="since") from None


def monitoring_figures(*, engine: Engine, card: dict[str, Any], since: datetime | None = None,
                       until: datetime | None = None, last: int | None = None,
                       bucket: figures.Bucket | None = None, thresholds: Thresholds = THRESHOLDS,
                       progress: Callable[[int], None] | None = None, background: bool = False) -> dict[str, Any]:
    """Figures for the cases created in [since, until), cut to the newest `last` when given.

    With neither `since` nor `last`, the window is the last seven days (from the start of that hour). With
    `background`, a long first read runs in the background and this raises background.Computing meanwhile.
    """
    since, until = aware(since), aware(until)
    if since is None and last is None:
        since = default_since()
    if since is not None and until is not None and since >= until:
        raise InvalidInput("query.since: must be before until", field="query.since")
    with engine.connect() as conn:
        rates = audit_rates(conn)
        cache = cache_for(engine, card, rates)
        window = _window(conn, since, until, last)
        if background and window:
            bg.ensure(engine, cache, conn, window)
        with cache.lock:
            parts = cache.parts(conn, window, progress) if window else []
    return figures.from_parts(parts, card, cache.bins, since=since, until=until or now(), last=last, bucket=bucket,
                              thresholds=thresholds, audit_rates=rates)


def _window(conn: Connection, since: datetime | None, until: datetime | None, last: int | None) -> Window | None:
    """The window's bounds; with `last`, from the last-th newest case (None: no case at all)."""
    if last is not None:
        cut = queries.newest_cut(conn=conn, since=since, until=until, last=last)
        if cut is not None:
            return Window(cut[0], until, cut)
        since = since or queries.first_created(conn=conn, since=since, until=until)
    return Window(since, until) if since is not None else None
