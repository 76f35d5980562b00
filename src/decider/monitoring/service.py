"""The monitoring figures for a window: read the cases, then compute. Shared by the API, page and report."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from decider.automation.evidence import audit_rates
from decider.db import as_utc, now
from decider.errors import InvalidInput
from decider.monitoring import figures, queries

DEFAULT_SPAN = timedelta(days=7)


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
                       bucket: figures.Bucket | None = None,
                       progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Figures for the cases created in [since, until), cut to the newest `last` when given.

    With neither `since` nor `last`, the window is the last seven days.
    """
    since, until = aware(since), aware(until)
    if since is None and last is None:
        since = now() - DEFAULT_SPAN
    if since is not None and until is not None and since >= until:
        raise InvalidInput("query.since: must be before until", field="query.since")
    with engine.connect() as conn:
        rows, cut = queries.window_rows(conn=conn, since=since, until=until, last=last, progress=progress)
        rates = audit_rates(conn)
    return figures.compute(rows, card, since=since, until=until or now(), last=last, bucket=bucket,
                           truncated=cut, audit_rates=rates)
