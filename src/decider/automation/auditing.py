"""Keeps each server process's audit plan (decider/audits.py) current when `automation.audit_budget` is set.

Every PLAN_SECONDS the plan is rebuilt from the live model's automatic decisions of the last day and its
labelled audits; every reload period the day's audits so far are counted across all processes, and once
they reach the budget the plan falls back to the floor (`audit_rate`) until the next UTC day.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from decider.audits import AuditPlan, plan
from decider.cases.service import CASE
from decider.db import now
from decider.runtime import Runtime

PLAN_SECONDS = 60.0
MAX_ROWS = 100_000


def start_of_day(at: datetime) -> datetime:
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class Auditor:
    runtime: Runtime
    plan_seconds: float = PLAN_SECONDS
    _built: float = float("-inf")
    _plan: AuditPlan | None = None

    def tick(self, _runtime: Runtime | None = None) -> None:
        a = self.runtime.settings.automation
        if a.audit_budget <= 0:
            self.runtime.audit_plan = None
            return
        if self._plan is None or time.monotonic() - self._built >= self.plan_seconds:
            self._plan, self._built = self.build(), time.monotonic()
        spent = self.spent_today()
        self.runtime.audit_plan = self._plan if spent < a.audit_budget else AuditPlan(a.audit_rate)

    def spent_today(self) -> int:
        with self.runtime.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(CASE).where(
                CASE.c.audit.is_(True), CASE.c.created_at >= start_of_day(now()))).scalar_one())

    def build(self) -> AuditPlan:
        a, model = self.runtime.settings.automation, self.runtime.deployment.live.id
        mine = (CASE.c.model_version == model, CASE.c.model_role == "live", CASE.c.route == "auto",
                CASE.c.prediction.is_not(None), CASE.c.confidence.is_not(None))
        with self.runtime.engine.connect() as conn:
            decided = conn.execute(select(CASE.c.prediction, CASE.c.confidence).where(
                *mine, CASE.c.created_at >= now() - timedelta(days=1)).order_by(CASE.c.id.desc()).limit(MAX_ROWS)).all()
            audited = conn.execute(select(CASE.c.prediction, CASE.c.confidence, CASE.c.review_label).where(
                *mine, CASE.c.audit.is_(True), CASE.c.review_status == "done", CASE.c.review_label.is_not(None))
                .order_by(CASE.c.id.desc()).limit(MAX_ROWS)).all()
        return plan([(p, c) for p, c in decided], [(p, c, label != p) for p, c, label in audited],
                    budget=a.audit_budget, floor=a.audit_rate, delta=1 - a.confidence)
