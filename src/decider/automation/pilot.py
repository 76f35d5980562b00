"""Autopilot's I/O around the pure rules in decider/autopilot.py: each class's state in `autopilot_class`,
its evidence read from the cases, every move stored with the policy it puts in force (the policy history's
`evidence`), and each server process following the stored state.

Every `automation.autopilot_seconds` one process weighs the evidence (a PostgreSQL advisory lock lets one
at a time do it); every `server.reload_seconds` each process reads the stored state and puts the policy it
gives in force, so a move reaches every process within one period. State is kept per model version: a
newly promoted model starts every class at assist and earns its own thresholds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import Counter
from sqlalchemy import Connection, insert, select, text, update

from decider.automation import evidence as live
from decider.automation import history
from decider.automation.guard import record_change, replay_loosening
from decider.automation.tables import AutopilotClass
from decider.autopilot import Move, Rules, State, step
from decider.certify import live_evidence, stratum_of
from decider.db import now as utc_now
from decider.format import pct
from decider.runtime import Runtime, configured_policy, policy_from

log = logging.getLogger("decider.automation")
STATE = AutopilotClass.__table__  # type: ignore[attr-defined]
SOURCE = "autopilot"
_LOCK_KEY = 0x5DEC1DE5  # PostgreSQL advisory lock: one evaluation at a time across processes
MOVES = Counter("decider_autopilot_moves", "Autopilot's steps, by class and kind: earn (starts deciding alone), "
                "widen (a lower threshold), fallback (back to assist), look (a test spent, no move)",
                ["label", "kind"])


def states(conn: Connection, model_id: str) -> dict[str, State]:
    rows = conn.execute(select(STATE).where(STATE.c.model_version == model_id)).mappings()
    return {r["label"]: State(r["threshold"], r["since"], r["looks"], r["deciding_since"]) for r in rows}


def earned(found: Mapping[str, State]) -> dict[str, float]:
    return {label: s.threshold for label, s in found.items() if s.deciding}


def save(conn: Connection, model_id: str, label: str, old: State, new: State) -> bool:
    """Store `new` where `old` still stands (compare-and-set); False when another process moved first."""
    values = {"threshold": new.threshold, "since": new.since, "looks": new.looks,
              "deciding_since": new.deciding_since, "updated_at": utc_now()}
    if old == State():  # no row yet, or one at the start state
        exists = conn.execute(select(STATE.c.id).where(STATE.c.model_version == model_id,
                                                      STATE.c.label == label)).first()
        if exists is None:
            conn.execute(insert(STATE).values(model_version=model_id, label=label, **values))
            return True
    result = conn.execute(update(STATE).where(
        STATE.c.model_version == model_id, STATE.c.label == label, STATE.c.threshold == old.threshold,
        STATE.c.looks == old.looks).values(**values))
    return bool(result.rowcount)


def class_inputs(rows: Iterable[Mapping[str, Any]], label: str, state: State,
                 rates: Mapping[str, float]) -> dict[str, Any]:
    """What `autopilot.step` weighs for one class: the evidence since its episode began, the labels of the
    class among it, the cases scored, and its audits since it began deciding alone (oldest review first)."""
    mine = [r for r in rows if state.since is None or r["created_at"] >= state.since]
    labelled, audits = 0, []
    for r in mine:
        if r["prediction"] != label:
            continue
        _, wrong, drawn = stratum_of(r, rates)
        reviewed = r["review_status"] == "done" and r["review_label"] is not None
        labelled += reviewed and (r["route"] == "queue" or drawn)
        if drawn and reviewed and state.deciding_since is not None and r["created_at"] >= state.deciding_since:
            audits.append((r["reviewed_at"], r["id"], bool(wrong)))
    evidence, _ = live_evidence(mine, rates)
    return {"evidence": evidence, "labelled": labelled, "scored": len(mine),
            "audits": [wrong for _, _, wrong in sorted(audits)]}


def describe(move: Move) -> dict[str, Any]:
    return {"label": move.label, "kind": move.kind, "from": move.old.threshold, "to": move.new.threshold,
            **move.evidence}


def rules_for(runtime: Runtime) -> Rules:
    """The rules for the live model's classes under the settings in force; the ceilings are the configured
    thresholds."""
    a, model = runtime.settings.automation, runtime.deployment.live
    config_policy = configured_policy(runtime.settings)
    return Rules(a.target_error, a.confidence, a.autopilot_window, tuple(model.labels),
                 {label: config_policy.threshold_for(label) for label in model.labels})


def because(move: Move) -> str:
    e = move.evidence
    if move.kind == "fallback":
        return (f"{e['wrong']} wrong of the last {e['audited']} audits, error at least {pct(e['error_lower_bound'])}"
                f" at {pct(e['confidence'], 0)} confidence, above the {pct(e['target'])} target")
    return (f"certified {e['certified']}, error at most {pct(e['error_bound'])} over {e['labelled']} labels "
            f"(look {e['look']})")


@dataclass
class Pilot:
    """One per server process: weighs the evidence every `autopilot_seconds`, follows the stored state."""

    runtime: Runtime
    _last: float = float("-inf")

    def tick(self, _runtime: Runtime | None = None) -> None:
        """The config watcher's period (automation/reload.py)."""
        a = self.runtime.settings.automation
        if a.mode != SOURCE:
            self.follow({})
            return
        if time.monotonic() - self._last >= a.autopilot_seconds:
            self._last = time.monotonic()
            self.evaluate()
        self.refresh()

    def refresh(self, *, record: bool = True) -> None:
        """Put in force the thresholds stored for the live model (another process may have moved them)."""
        if self.runtime.settings.automation.mode != SOURCE:
            return
        with self.runtime.engine.connect() as conn:
            found = states(conn, self.runtime.deployment.live.id)
        self.follow(earned(found), record=record)

    def follow(self, thresholds: Mapping[str, float], *, record: bool = True,
               evidence: dict[str, Any] | None = None) -> None:
        runtime = self.runtime
        old = runtime.policy
        runtime.earned = dict(thresholds)
        new = policy_from(runtime.settings, runtime.earned, runtime.deployment.live.labels)
        if new.version == old.version:
            return
        runtime.policy = new
        if record:
            record_change(engine=runtime.engine, old=old, new=new, source=SOURCE)

    def evaluate(self, at: datetime | None = None) -> list[Move]:
        """Weigh each class's evidence once; store the moves, and the policy they give with their evidence."""
        runtime = self.runtime
        settings, model = runtime.settings, runtime.deployment.live
        rules = rules_for(runtime)
        at = at or utc_now()
        moves: list[Move] = []
        with runtime.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _LOCK_KEY}).scalar():
                    return []  # another process is weighing the same evidence now
            found = states(conn, model.id)
            starts = [found.get(label, State()).since for label in model.labels]
            since = None if any(s is None for s in starts) else min(s for s in starts if s is not None)
            rows = live.live_rows(conn, model.id, since)
            rates = live.audit_rates(conn)
            for label in model.labels:
                state = found.get(label, State())
                move = step(label, state, rules, now=at, **class_inputs(rows, label, state, rates))
                if move is not None and save(conn, model.id, label, state, move.new):
                    found[label] = move.new
                    moves.append(move)
            changed = [m for m in moves if m.changes_policy]
            new = policy_from(settings, earned(found), model.labels)
            change_id = None
            if changed:
                change_id = history.record_in(conn, policy=new, source=SOURCE, evidence={
                    "model_version": model.id, "moves": [describe(m) for m in changed]})
        for m in moves:
            MOVES.labels(m.label, m.kind).inc()
            if m.changes_policy:
                log.warning("autopilot: %s class %s %s, threshold %g -> %g: %s", model.id, m.label, m.kind,
                            m.old.threshold, m.new.threshold, because(m))
        if changed:
            old = runtime.policy
            runtime.earned = earned(found)
            runtime.policy = new
            replay_loosening(engine=runtime.engine, change_id=change_id, old=old, new=new)
        return moves


def view(runtime: Runtime) -> dict[str, Any]:
    """Where each class stands, what the next look or a fallback needs, and the moves stored: for the admin
    page and `GET /api/v1/policy/autopilot`."""
    a, model = runtime.settings.automation, runtime.deployment.live
    rules = rules_for(runtime)
    with runtime.engine.connect() as conn:
        found = states(conn, model.id)
        moves = [{"at": h["started_at"], "version": h["version"], **m}
                 for h in history.history(conn=conn, limit=1000) if h["source"] == SOURCE and h.get("evidence")
                 for m in h["evidence"].get("moves", [])]
    classes = []
    for label in model.labels:
        s = found.get(label, State())
        classes.append({"label": label, "threshold": s.threshold, "deciding": s.deciding,
                        "ceiling": rules.ceiling[label], "since": s.since, "deciding_since": s.deciding_since,
                        "looks_spent": s.looks, "next_look_at_labels": rules.first_look * 2 ** s.looks})
    return {"enabled": a.mode == SOURCE, "model_version": model.id, "target_error": a.target_error,
            "confidence": a.confidence, "window": a.autopilot_window, "every_seconds": a.autopilot_seconds,
            "fallback_errors": {n: rules.fallback_errors(n) for n in sorted({5, 10, 20, 50, a.autopilot_window})
                                if n <= a.autopilot_window},
            "classes": classes, "moves": moves}
