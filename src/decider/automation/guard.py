"""The full-automation guard: a change that hands the model more decisions still takes effect, but the
log and the admin page show what the new policy would have done on recent cases next to the old one."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine

from decider.automation import history
from decider.automation.simulate import Figures, compare, describe_error
from decider.policy import Policy, loosenings

log = logging.getLogger("decider.automation")
RECENT_CASES = 5000


def record_change(*, engine: Engine, old: Policy | None, new: Policy, source: str) -> dict[str, Any] | None:
    """Store `new` in the history if it is new; when it loosens automation, attach and log the replay.

    `old` is the policy in force before (None: take the newest stored one). Only the process whose row
    was inserted runs the replay, so several workers noticing one edit replay it once.
    """
    if old is None:
        with engine.connect() as conn:
            old = history.stored_policy(history.latest(conn=conn))
    change_id = history.record(engine=engine, policy=new, source=source)
    return replay_loosening(engine=engine, change_id=change_id, old=old, new=new)


def replay_loosening(*, engine: Engine, change_id: int | None, old: Policy | None,
                     new: Policy) -> dict[str, Any] | None:
    """For a stored change (`change_id`) that loosens automation: attach and log the replay."""
    if change_id is None or old is None or old.version == new.version:
        return None
    reasons = loosenings(old, new)
    if not reasons:
        return None
    replay = {"reasons": reasons, **compare(engine, old, new, limit=RECENT_CASES)}
    history.attach_replay(engine=engine, change_id=change_id, replay=replay)
    log.warning("policy %s loosens automation (%s); replayed on the last %d scored cases: %s",
                new.version, "; ".join(reasons), replay["cases"], summary(replay))
    return replay


def summary(replay: dict[str, Any]) -> str:
    """One line: auto-decided share and error rate, old -> new."""
    def side(d: dict[str, Any]) -> str:
        f = Figures(cases=d["cases"], auto=d["auto"], labelled_auto=d["labelled_auto"], errors=d["errors"])
        c = d.get("corrected_error") or {}
        corrected = "" if c.get("error") is None else \
            f", corrected {100 * c['error']:.1f}% (95% {100 * c['low']:.1f}-{100 * c['high']:.1f}%)"
        return f"{f.auto}/{f.cases} auto-decided, error {describe_error(f)}{corrected}"

    return f"old {replay['old']['version']}: {side(replay['old'])} -> new {replay['new']['version']}: " \
           f"{side(replay['new'])}"
