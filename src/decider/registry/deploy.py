"""Deployments: which version is live, which is the candidate (with its canary share), which are shadows;
every change in one history; running servers following it.

The deployment in force is, per role, the latest `model_switch` row of that role, unless the config names
something its own (`config`) rows have not recorded yet: that is an edit, it wins, and it is recorded the
first time a server or the CLI sees it, once however many processes see it (`_serialised`). A person's
change (`apply`: from /admin/models as their name, from `decider models` as `cli:<user>`) is checked
before it is recorded (the input contract, sha256, trusted types), so a refused version never displaces
the one in service. `rollback` undoes the last switch of the live version: run twice, it returns to where
it started; `promote` any earlier version to go back further.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, Engine, false, func, insert, select, text, update

from decider.auth.service import machine_actor
from decider.config import Settings
from decider.errors import Conflict, DeciderError, InvalidInput, ModelRefused
from decider.registry.artifacts import LoadedModel, load
from decider.registry.tables import ModelSwitch
from decider.runtime import Deployment, Runtime, deployment_from, require_fits, require_replaces

log = logging.getLogger("decider.deploy")
SWITCH = ModelSwitch.__table__  # type: ignore[attr-defined]
CONFIG_ACTOR = "config"
ACTIONS = ("promote", "rollback", "candidate", "shadow-add", "shadow-remove")
_LOCK_KEY = 0x5DEC1DE5  # PostgreSQL advisory lock: "is this edit recorded yet? then record it", one at a time
_refresh_lock = threading.Lock()  # a config reload and a poll may both refresh
_seen: dict[int, int] = {}  # id(runtime) -> the newest switch row its deployment reflects


class NothingToDo(DeciderError):
    """The change asked for is already in force: not a refusal (a script may repeat a promote)."""

    status_code = 409


@dataclass(frozen=True)
class Roles:
    """A whole deployment by name: what serves in which role."""

    live: str
    candidate: str = ""  # "" for none
    canary_percent: float = 0.0
    shadows: tuple[str, ...] = ()

    def settings(self, settings: Settings) -> Settings:
        """`settings` with this deployment as its `[models]` roles (what `deployment_from` loads)."""
        models = settings.models.model_copy(update={"live": self.live, "candidate": self.candidate,
                                                    "canary_percent": self.canary_percent,
                                                    "shadow": list(self.shadows)})
        return settings.model_copy(update={"models": models})


@dataclass(frozen=True)
class LiveState:
    """The live version as the history and the config file say, and a config edit not yet recorded."""

    model_id: str
    previous: str | None
    config_edit: bool  # the config names a version that no `config` row records yet


@dataclass(frozen=True)
class State:
    """The deployment in force, the live version before it (rollback's target), and the config edits to record."""

    roles: Roles
    previous: str | None
    edits: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Change:
    """What a person asks for: `promote` target, `rollback`, `candidate` target ("" for none) at `percent`,
    `shadow-add` or `shadow-remove` target."""

    action: str
    target: str = ""
    percent: float = 0.0


def default_actor() -> str:
    """Who runs a `decider models` command: `cli:<user>` (a machine login, not a checked identity)."""
    return machine_actor()


def latest_switch(conn: Connection, role: str = "live", actor: str | None = None) -> dict | None:
    query = select(SWITCH).where(SWITCH.c.role == role)
    if actor is not None:
        query = query.where(SWITCH.c.actor == actor)
    found = conn.execute(query.order_by(SWITCH.c.id.desc()).limit(1)).mappings().first()
    return dict(found) if found else None


def latest_switch_id(conn: Connection) -> int:
    return conn.execute(select(func.coalesce(func.max(SWITCH.c.id), 0))).scalar_one()


def live_state(conn: Connection, settings: Settings) -> LiveState:
    """A config value the history has not recorded yet wins (it is an edit); otherwise the latest switch."""
    latest = latest_switch(conn)
    last_config = latest_switch(conn, actor=CONFIG_ACTOR)
    configured = settings.models.live
    if configured != (last_config["model_id"] if last_config else None):
        previous = latest["model_id"] if latest else None
        if latest and previous == configured:  # the config caught up with a promote: no new switch
            previous = latest["previous"]
        return LiveState(configured, previous, config_edit=True)
    assert latest is not None  # a config row exists, so a latest row does
    return LiveState(latest["model_id"], latest["previous"], config_edit=False)


def _candidate_of(row: dict | None) -> tuple[str, float]:
    return (row["model_id"], row["canary_percent"] or 0.0) if row else ("", 0.0)


def _shadows_of(row: dict | None) -> tuple[str, ...]:
    return tuple(row["shadows"] or ()) if row else ()


def shadow_row(before: tuple[str, ...], after: tuple[str, ...]) -> dict[str, Any]:
    """A shadow change as a row: the versions added in `model_id`, those removed in `previous`."""
    added, removed = [s for s in after if s not in before], [s for s in before if s not in after]
    return {"role": "shadow", "model_id": ", ".join(added)[:100], "previous": ", ".join(removed)[:100] or None,
            "shadows": list(after)}


def state(conn: Connection, settings: Settings) -> State:
    """The deployment in force now, role by role (see the module's docstring)."""
    m = settings.models
    live = live_state(conn, settings)
    edits: list[dict[str, Any]] = []
    if live.config_edit:
        edits.append({"role": "live", "model_id": live.model_id, "previous": live.previous})
    latest, configured = latest_switch(conn, "candidate"), (m.candidate, m.canary_percent if m.candidate else 0.0)
    candidate = _candidate_of(latest)
    if configured != _candidate_of(latest_switch(conn, "candidate", CONFIG_ACTOR)):
        edits.append({"role": "candidate", "model_id": configured[0], "previous": candidate[0] or None,
                      "canary_percent": configured[1]})
        candidate = configured
    latest_shadow, wanted = latest_switch(conn, "shadow"), tuple(m.shadow)
    shadows = _shadows_of(latest_shadow)
    if wanted != _shadows_of(latest_switch(conn, "shadow", CONFIG_ACTOR)):
        edits.append(shadow_row(shadows, wanted))
        shadows = wanted
    roles = Roles(live.model_id, candidate[0], candidate[1], shadows)
    return State(roles, live.previous, tuple(edits))


def record_switch(conn: Connection, *, model_id: str, previous: str | None, actor: str, role: str = "live",
                  canary_percent: float | None = None, shadows: list[str] | None = None) -> int:
    values = {"role": role, "model_id": model_id, "previous": previous, "actor": actor,
              "canary_percent": canary_percent, "shadows": shadows}
    return conn.execute(insert(SWITCH).values(values).returning(SWITCH.c.id)).scalar_one()


@contextmanager
def _serialised(engine: Engine) -> Iterator[Connection]:
    """A transaction in which reading the state and recording a change run one process at a time, so two
    servers seeing the same config edit record it once."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        else:  # a write first takes SQLite's write lock for the whole transaction: what is read after is current
            conn.execute(update(SWITCH).where(false()).values(actor=SWITCH.c.actor))
        yield conn


def record_config_edits(engine: Engine, settings: Settings) -> int:
    """Record the config edits no row records yet; return the newest switch id."""
    with _serialised(engine) as conn:
        for row in state(conn, settings).edits:
            record_switch(conn, **row, actor=CONFIG_ACTOR)
        return latest_switch_id(conn)


def history(conn: Connection, limit: int = 50) -> list[dict]:
    """The most recent changes of every role first."""
    rows = conn.execute(select(SWITCH).order_by(SWITCH.c.id.desc()).limit(limit)).mappings()
    return [dict(r) for r in rows]


def describe(row: dict[str, Any]) -> str:
    """A history row in words: `iris-v2 (was iris-v1)`, `iris-v2 at 10% (was none)`, `+iris-v4; now: iris-v4`."""
    if row["role"] == "shadow":
        parts = [f"+{row['model_id']}"] if row["model_id"] else []
        parts += [f"-{row['previous']}"] if row["previous"] else []
        return f"{' '.join(parts) or 'unchanged'}; now: {', '.join(row['shadows'] or ()) or 'none'}"
    if row["role"] == "candidate":
        now = f"{row['model_id']} at {row['canary_percent'] or 0:g}%" if row["model_id"] else "none"
        return f"{now} (was {row['previous'] or 'none'})"
    return f"{row['model_id']} (was {row['previous'] or '–'})"


def check_switch(settings: Settings, *, current: str, target: str) -> LoadedModel:
    """Load `target` with every check, and refuse it when clients would have to send other fields."""
    if target == current:
        raise NothingToDo(f"model {target!r} is already live")
    new = load(settings.models_dir, target)
    try:
        old = load(settings.models_dir, current)
    except ModelRefused:  # the old one is gone or broken: nothing to compare with
        return new
    require_replaces(new, old.contract)
    return new


def _check_beside(settings: Settings, roles: Roles, target: str, role: str) -> None:
    """A candidate or shadow must be another version than the live one, and score what clients send."""
    if target == roles.live:
        raise InvalidInput(f"model {target!r} is live; a {role} is another version", field="target")
    require_fits(load(settings.models_dir, target), load(settings.models_dir, roles.live).contract)


def plan(conn: Connection, settings: Settings, change: Change) -> tuple[State, Roles]:
    """The state now and the deployment `change` makes, after every check; nothing is written.

    Raises ModelRefused (a version that cannot serve), InvalidInput (a request that makes no sense) or
    NothingToDo (already so)."""
    current = state(conn, settings)
    roles, target = current.roles, change.target
    if change.action in ("promote", "rollback"):
        if change.action == "rollback":
            if current.previous is None:
                raise ModelRefused(f"nothing to roll back to: {roles.live!r} is the first live version")
            target = current.previous
        check_switch(settings, current=roles.live, target=target)
        return current, replace(roles, live=target)
    if change.action == "candidate":
        if not 0 <= change.percent <= 100:  # NaN fails too
            raise InvalidInput("canary_percent: a share from 0 to 100", field="canary_percent")
        after = replace(roles, candidate=target, canary_percent=change.percent if target else 0.0)
        if target and target != roles.candidate:
            _check_beside(settings, roles, target, "candidate")
    elif change.action == "shadow-add":
        if target in roles.shadows:
            raise NothingToDo(f"model {target!r} is already a shadow")
        _check_beside(settings, roles, target, "shadow")
        after = replace(roles, shadows=(*roles.shadows, target))
    elif change.action == "shadow-remove":
        if target not in roles.shadows:
            raise InvalidInput(f"model {target!r} is not a shadow", field="target")
        after = replace(roles, shadows=tuple(s for s in roles.shadows if s != target))
    else:
        raise InvalidInput(f"action {change.action!r}: one of {', '.join(ACTIONS)}", field="action")
    if after == roles:
        raise NothingToDo("the deployment already is so")
    return current, after


def _row(before: Roles, after: Roles, action: str) -> dict[str, Any]:
    if action in ("promote", "rollback"):
        return {"role": "live", "model_id": after.live, "previous": before.live}
    if action == "candidate":
        return {"role": "candidate", "model_id": after.candidate, "previous": before.candidate or None,
                "canary_percent": after.canary_percent}
    return shadow_row(before.shadows, after.shadows)


def apply(engine: Engine, settings: Settings, change: Change, *, actor: str,
          seen: int | None = None) -> tuple[Roles, Roles]:
    """Check `change` (models are loaded outside the lock), then record it as `actor`; return (before, after).

    `seen`: the newest switch id the person confirmed against; anything recorded since is a Conflict, so
    nobody confirms one change and gets another."""
    with engine.connect() as conn:
        checked, after = plan(conn, settings, change)
    with _serialised(engine) as conn:
        current = state(conn, settings)
        if current.roles != checked.roles or (seen is not None and latest_switch_id(conn) > seen):
            raise Conflict("the deployment changed since this change was checked: look at it again")
        for row in current.edits:  # keep the history whole: the config's versions held until now
            record_switch(conn, **row, actor=CONFIG_ACTOR)
        record_switch(conn, **_row(current.roles, after, change.action), actor=actor)
    return current.roles, after


def switch(engine: Engine, settings: Settings, *, target: str | None, actor: str) -> tuple[str, str]:
    """Make `target` live (None: undo the last switch); return (old, new). Raises ModelRefused."""
    before, after = apply(engine, settings, Change("promote" if target else "rollback", target or ""), actor=actor)
    return before.live, after.live


def same_deployment(dep: Deployment, roles: Roles) -> bool:
    return (
        dep.live.id == roles.live
        and (dep.candidate.id if dep.candidate else "") == roles.candidate
        and dep.canary_percent == roles.canary_percent
        and tuple(s.id for s in dep.shadows) == roles.shadows
    )


def refresh(runtime: Runtime, settings: Settings | None = None) -> bool:
    """Rebuild the deployment from `settings` and the history; True when a new one went live.

    Call it after a config reload (with the new settings) or when the history has a new row. A refused
    version leaves the old deployment serving and is reported in `runtime.problems["models"]`.
    """
    settings = settings or runtime.settings
    with _refresh_lock:
        with runtime.engine.connect() as conn:
            current = state(conn, settings)
            seen = latest_switch_id(conn)
        old = runtime.deployment
        new = None
        if not same_deployment(old, current.roles):
            try:
                new = deployment_from(current.roles.settings(settings))
                if new.live.id != old.live.id:  # clients keep sending what they send: it must still be accepted
                    require_replaces(new.live, old.contract)
            except (ModelRefused, OSError, ValueError, KeyError) as exc:  # a broken card is refused too
                reason = exc.message if isinstance(exc, ModelRefused) else f"{type(exc).__name__}: {exc}"
                runtime.problems["models"] = f"{reason}; still serving {old.live.id!r}"
                log.error("model switch refused: %s", runtime.problems["models"])
                _seen[id(runtime)] = seen
                return False
        if current.edits:
            seen = record_config_edits(runtime.engine, settings)
        _seen[id(runtime)] = seen
        runtime.problems.pop("models", None)
        if new is None:
            return False
        runtime.deployment = new  # one assignment: a request sees the old or the new, never a mix
        log.info("deployment: live %s -> %s, candidate %s, shadows %s", old.live.id, new.live.id,
                 new.candidate.id if new.candidate else "-", ", ".join(s.id for s in new.shadows) or "-")
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
