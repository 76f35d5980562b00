"""Blue/green switching: which version is live, every switch in a history, and running servers following it.

The live model is the latest `model_switch` row with role `live`. `decider models promote` and `rollback`
add rows; an edit of `[models] live` in the config is recorded as a row too (actor `config`), the first time
a server or the CLI sees the new value. A switch is checked before it is recorded or served (the input
contract, sha256, trusted types), so a refused version never displaces the one in service.
"""

from __future__ import annotations

import getpass
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select

from decider.config import Settings
from decider.errors import ModelRefused
from decider.registry.artifacts import LoadedModel, load
from decider.registry.tables import ModelSwitch
from decider.runtime import Deployment, Runtime, deployment_from, require_replaces

log = logging.getLogger("decider.deploy")
SWITCH = ModelSwitch.__table__  # type: ignore[attr-defined]
CONFIG_ACTOR = "config"
_refresh_lock = threading.Lock()  # a config reload and a poll may both refresh
_seen: dict[int, int] = {}  # id(runtime) -> the newest switch row its deployment reflects


@dataclass(frozen=True)
class LiveState:
    """The live version as the history and the config file say, and a config edit not yet recorded."""

    model_id: str
    previous: str | None
    config_edit: bool  # the config names a version that no `config` row records yet


def default_actor() -> str:
    return os.environ.get("USER") or getpass.getuser()


def latest_switch(conn: Connection) -> dict | None:
    row = conn.execute(select(SWITCH).where(SWITCH.c.role == "live").order_by(SWITCH.c.id.desc()).limit(1))
    found = row.mappings().first()
    return dict(found) if found else None


def latest_switch_id(conn: Connection) -> int:
    return conn.execute(select(func.coalesce(func.max(SWITCH.c.id), 0))).scalar_one()


def live_state(conn: Connection, settings: Settings) -> LiveState:
    """A config value the history has not recorded yet wins (it is an edit); otherwise the latest switch."""
    latest = latest_switch(conn)
    last_config = conn.execute(
        select(SWITCH.c.model_id).where(SWITCH.c.role == "live", SWITCH.c.actor == CONFIG_ACTOR)
        .order_by(SWITCH.c.id.desc()).limit(1)
    ).scalar_one_or_none()
    configured = settings.models.live
    if configured != last_config:
        previous = latest["model_id"] if latest else None
        if latest and previous == configured:  # the config caught up with a promote: no new switch
            previous = latest["previous"]
        return LiveState(configured, previous, config_edit=True)
    assert latest is not None  # a config row exists, so a latest row does
    return LiveState(latest["model_id"], latest["previous"], config_edit=False)


def record_switch(conn: Connection, *, model_id: str, previous: str | None, actor: str) -> int:
    values = {"role": "live", "model_id": model_id, "previous": previous, "actor": actor}
    return conn.execute(insert(SWITCH).values(values).returning(SWITCH.c.id)).scalar_one()


def history(conn: Connection, limit: int = 50) -> list[dict]:
    """The most recent switches first."""
    rows = conn.execute(select(SWITCH).order_by(SWITCH.c.id.desc()).limit(limit)).mappings()
    return [dict(r) for r in rows]


def check_switch(settings: Settings, *, current: str, target: str) -> LoadedModel:
    """Load `target` with every check, and refuse it when clients would have to send other fields."""
    if target == current:
        raise ModelRefused(f"model {target!r} is already live")
    new = load(settings.models_dir, target)
    try:
        old = load(settings.models_dir, current)
    except ModelRefused:  # the old one is gone or broken: nothing to compare with
        return new
    require_replaces(new, old.contract)
    return new


def switch(engine: Engine, settings: Settings, *, target: str | None, actor: str) -> tuple[str, str]:
    """Make `target` live (None: the previous live version); return (old, new). Raises ModelRefused."""
    with engine.begin() as conn:
        state = live_state(conn, settings)
        if target is None:
            if state.previous is None:
                raise ModelRefused(f"nothing to roll back to: {state.model_id!r} is the first live version")
            target = state.previous
        check_switch(settings, current=state.model_id, target=target)
        if state.config_edit:  # keep the history whole: the config's version was live until now
            record_switch(conn, model_id=state.model_id, previous=state.previous, actor=CONFIG_ACTOR)
        record_switch(conn, model_id=target, previous=state.model_id, actor=actor)
    return state.model_id, target


def same_deployment(dep: Deployment, settings: Settings, live_id: str) -> bool:
    m = settings.models
    return (
        dep.live.id == live_id
        and (dep.candidate.id if dep.candidate else "") == m.candidate
        and dep.canary_percent == m.canary_percent
        and tuple(s.id for s in dep.shadows) == tuple(m.shadow)
    )


def refresh(runtime: Runtime, settings: Settings | None = None) -> bool:
    """Rebuild the deployment from `settings` and the latest switch; True when a new one went live.

    Call it after a config reload (with the new settings) or when the history has a new row. A refused
    version leaves the old deployment serving and is reported in `runtime.problems["models"]`.
    """
    settings = settings or runtime.settings
    with _refresh_lock:
        with runtime.engine.connect() as conn:
            state = live_state(conn, settings)
            seen = latest_switch_id(conn)
        old = runtime.deployment
        new = None
        if not same_deployment(old, settings, state.model_id):
            try:
                new = deployment_from(settings, state.model_id)
                if new.live.id != old.live.id:  # clients keep sending what they send: it must still be accepted
                    require_replaces(new.live, old.contract)
            except (ModelRefused, OSError, ValueError, KeyError) as exc:  # a broken card is refused too
                reason = exc.message if isinstance(exc, ModelRefused) else f"{type(exc).__name__}: {exc}"
                runtime.problems["models"] = f"{reason}; still serving {old.live.id!r}"
                log.error("model switch refused: %s", runtime.problems["models"])
                _seen[id(runtime)] = seen
                return False
        if state.config_edit:
            with runtime.engine.begin() as conn:
                seen = record_switch(conn, model_id=state.model_id, previous=state.previous, actor=CONFIG_ACTOR)
        _seen[id(runtime)] = seen
        runtime.problems.pop("models", None)
        if new is None:
            return False
        runtime.deployment = new  # one assignment: a request sees the old or the new, never a mix
        log.info("deployment: live %s -> %s", old.live.id, new.live.id)
        return True


def poll(runtime: Runtime) -> None:
    """Act on a new row in the switch history (the config watcher calls this every period)."""
    with runtime.engine.connect() as conn:
        latest = latest_switch_id(conn)
    if _seen.get(id(runtime)) != latest:
        refresh(runtime)


class Background:
    """What a serving process runs beside requests for deployments: shadow scoring after each commit.
    New switches are followed by the config watcher, which calls `poll` every period."""

    def __init__(self, runtime: Runtime, ingestor: Any | None) -> None:
        from decider.registry.shadow import ShadowRunner

        self.runtime = runtime
        self.ingestor = ingestor
        self.shadows = ShadowRunner(runtime)

    def start(self) -> Background:
        poll(self.runtime)  # a switch made while this server was down holds from the first request
        self.shadows.start()
        if self.ingestor is not None:  # shadows score what ingest has committed
            self.ingestor.after_commit.append(self.shadows.enqueue_rows)
        return self

    def stop(self) -> None:
        if self.ingestor is not None and self.shadows.enqueue_rows in self.ingestor.after_commit:
            self.ingestor.after_commit.remove(self.shadows.enqueue_rows)
        self.shadows.stop()
        _seen.pop(id(self.runtime), None)
