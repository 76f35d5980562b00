"""What-if replay: route stored, scored cases again under another policy, without writing anything.

The replay calls the same `policy.route` the API calls, so a figure here is what the server would have
done. Only cases the model scored can be replayed (those stored at `human_only` have no prediction).
The label a decision is checked against is the case's outcome when one was reported, else the human
review label (a queued case's reviewer, or a blind audit).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import Engine, func, select
from tqdm import tqdm

from decider.cases.tables import Case
from decider.certify import STRATUM_FIELDS, Counts, estimate
from decider.config import Settings
from decider.db import as_utc
from decider.format import pct
from decider.policy import Policy, route

CASE = Case.__table__  # type: ignore[attr-defined]
Z95 = 1.959963984540054
COLUMNS = (CASE.c.id, CASE.c.key, CASE.c.prediction, CASE.c.confidence, CASE.c.route, CASE.c.created_at,
           CASE.c.review_label, CASE.c.outcome, CASE.c.novelty, CASE.c.audit, CASE.c.review_status,
           CASE.c.policy_version, CASE.c.audit_probability)


def wilson(errors: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a proportion: sound at 0 errors and small n, unlike p ± z·se."""
    if n == 0:
        return 0.0, 1.0
    p = errors / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Figures:
    """How one way of routing the cases turned out."""

    cases: int = 0
    auto: int = 0
    queue_by_day: dict[str, int] = field(default_factory=dict)
    labelled_auto: int = 0  # automatic decisions on cases with a human label
    errors: int = 0  # ... where the model's decision differs from that label
    # The cases this routing decides automatically, tallied by how each was labelled: the corrected figure.
    strata: Counts = field(default_factory=lambda: Counts({}), repr=False)

    @property
    def queued(self) -> int:
        return self.cases - self.auto

    @property
    def auto_share(self) -> float:
        return self.auto / self.cases if self.cases else 0.0

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.labelled_auto if self.labelled_auto else None

    @property
    def error_ci(self) -> tuple[float, float]:
        return wilson(self.errors, self.labelled_auto)

    @property
    def corrected_error(self) -> dict[str, Any]:
        """The error among the cases this routing decides automatically, corrected for how their labels were
        gathered (certify.estimate): the cases queued when they were routed count whole, those decided then
        are scaled up from blind audits. The plain error rate above counts whatever was labelled, which for a
        looser policy is mostly the hard, queued cases."""
        est = estimate(self.strata)
        return {k: est[k] for k in ("error", "low", "high", "labelled", "cases")}

    def add(self, *, auto: bool, day: str, wrong: bool | None, row: Any = None) -> None:
        self.cases += 1
        if not auto:
            self.queue_by_day[day] = self.queue_by_day.get(day, 0) + 1
            return
        self.auto += 1
        if row is not None:
            self.strata.add({k: getattr(row, k, None) for k in STRATUM_FIELDS})
        if wrong is not None:
            self.labelled_auto += 1
            self.errors += wrong

    def as_dict(self) -> dict[str, Any]:
        low, high = self.error_ci
        plain = {k: v for k, v in asdict(self).items() if k != "strata"}
        return {**plain, "queued": self.queued, "auto_share": self.auto_share,
                "error_rate": self.error_rate, "error_ci95": [low, high] if self.labelled_auto else None,
                "corrected_error": self.corrected_error}


def label_of(row: Any) -> str | None:
    return row.outcome if row.outcome is not None else row.review_label


def tally(rows: Iterable[Any], policies: list[Policy], audit_rates: dict[str, float] | None = None
          ) -> tuple[Figures, list[Figures]]:
    """One pass over the cases: how they were routed, and how each policy would route them."""
    rates = audit_rates or {}
    routed, replayed = Figures(strata=Counts(rates)), [Figures(strata=Counts(rates)) for _ in policies]
    for row in rows:
        label = label_of(row)
        wrong = None if label is None else row.prediction != label
        day = row.created_at.astimezone(UTC).date().isoformat()
        routed.add(auto=row.route == "auto", day=day, wrong=wrong, row=row)
        for policy, figures in zip(policies, replayed, strict=True):
            r = route(policy, case_key=row.key, prediction=row.prediction, confidence=row.confidence,
                      novel=bool(row.novelty))  # the novelty guard holds in the replay as it did live
            figures.add(auto=r.route == "auto", day=day, wrong=wrong, row=row)
    return routed, replayed


def start_of(since: date | datetime) -> datetime:
    """A date means its midnight, UTC; a time follows decider's one rule (db.as_utc)."""
    return as_utc(since) if isinstance(since, datetime) else datetime.combine(since, time(), UTC)


def _scored(since: date | None):  # type: ignore[no-untyped-def]
    query = select(*COLUMNS).where(CASE.c.confidence.is_not(None), CASE.c.prediction.is_not(None))
    if since is not None:
        query = query.where(CASE.c.created_at >= start_of(since))
    return query


def stored_cases(engine: Engine, *, since: date | None = None, progress: bool = False) -> Iterator[Any]:
    """The scored cases oldest first, streamed, with a progress bar on standard error if asked."""
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(_scored(since).subquery())).scalar_one()
        rows = conn.execution_options(yield_per=2000).execute(_scored(since).order_by(CASE.c.id))
        yield from tqdm(rows, total=total, disable=not progress, unit=" cases", desc="replaying", leave=False)


def recent_cases(engine: Engine, *, limit: int) -> list[Any]:
    """The newest `limit` scored cases."""
    with engine.connect() as conn:
        return list(conn.execute(_scored(None).order_by(CASE.c.id.desc()).limit(limit)))


@dataclass
class Report:
    policy: Policy
    since: date | None
    routed: Figures
    replayed: Figures

    def as_dict(self) -> dict[str, Any]:
        return {"policy": {"version": self.policy.version, **self.policy.as_dict()},
                "since": self.since.isoformat() if self.since else None,
                "as_routed": self.routed.as_dict(), "replayed": self.replayed.as_dict()}


def _rates(engine: Engine) -> dict[str, float]:
    from decider.automation.evidence import audit_rates

    with engine.connect() as conn:
        return audit_rates(conn)


def simulate(engine: Engine, policy: Policy, *, since: date | None = None, progress: bool = False) -> Report:
    """Replay every scored case (since `since`) under `policy`; reads only."""
    routed, (replayed,) = tally(stored_cases(engine, since=since, progress=progress), [policy], _rates(engine))
    return Report(policy=policy, since=since, routed=routed, replayed=replayed)


def describe_error(f: Figures) -> str:
    if not f.labelled_auto:
        return "no labelled automatic decisions"
    low, high = f.error_ci
    return f"{f.errors}/{f.labelled_auto} = {pct(f.error_rate)} (95% CI {pct(low)}–{pct(high)})"


def describe_corrected(f: Figures) -> str:
    c = f.corrected_error
    if c["error"] is None:
        return "no labels among them"
    return (f"{pct(c['error'])} (95% {pct(c['low'])}–{pct(c['high'])}; {c['labelled']} labels over "
            f"{c['cases']} cases)")


def format_report(report: Report, name: str = "replayed") -> str:
    """The report as a person reads it in a terminal."""
    r, n = report.routed, report.replayed
    since = f" since {report.since.isoformat()}" if report.since else ""
    p = report.policy
    lines = [
        f"{r.cases} scored cases{since}, replayed under policy {p.version} (level {p.level}, threshold "
        f"{p.threshold:g}, class thresholds "
        f"{', '.join(f'{k} {v:g}' for k, v in sorted(p.class_thresholds.items())) or 'none'}, "
        f"rollout {p.rollout_percent:g}%)",
        "",
        f"{'':28}{'as routed':>24}{name:>24}",
        f"{'auto-decided':28}{f'{r.auto} ({pct(r.auto_share)})':>24}{f'{n.auto} ({pct(n.auto_share)})':>24}",
        f"{'queued for people':28}{r.queued:>24}{n.queued:>24}",
        "",
        "Error among the automatic decisions, corrected for how labels were gathered (queued cases count",
        "whole, decided ones are scaled up from blind audits):",
        f"  as routed: {describe_corrected(r)}",
        f"  {name}: {describe_corrected(n)}",
        "Plain error rate of automatic decisions, on cases with a human label (outcome, review or audit):",
        f"  as routed: {describe_error(r)}",
        f"  {name}: {describe_error(n)}",
        "",
        "Queue volume per day (UTC):",
        f"{'  day':28}{'as routed':>24}{name:>24}",
    ]
    for day in sorted(set(r.queue_by_day) | set(n.queue_by_day)):
        lines.append(f"  {day:26}{r.queue_by_day.get(day, 0):>24}{n.queue_by_day.get(day, 0):>24}")
    return "\n".join(lines)


def compare(engine: Engine, old: Policy, new: Policy, *, limit: int = 5000) -> dict[str, Any]:
    """The old and the new policy replayed side by side on the newest `limit` scored cases."""
    rows = recent_cases(engine, limit=limit)
    _, (before, after) = tally(rows, [old, new], _rates(engine))
    days = [row.created_at.astimezone(UTC).date().isoformat() for row in rows]
    return {"cases": len(rows), "first_day": min(days, default=None), "last_day": max(days, default=None),
            "old": {"version": old.version, **before.as_dict()}, "new": {"version": new.version, **after.as_dict()}}


def run(settings: Settings, *, since: date | None, as_json: bool, progress: bool = True) -> str:
    """`decider simulate`: the config's policy replayed on its database, as text or JSON."""
    from decider.db import make_engine
    from decider.runtime import policy_from

    engine = make_engine(settings.database_url)
    try:
        report = simulate(engine, policy_from(settings), since=since, progress=progress)
    finally:
        engine.dispose()
    if as_json:
        return json.dumps(report.as_dict(), indent=2)
    return format_report(report, name=f"under {settings.config_path.name}")
