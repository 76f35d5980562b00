"""Live reload: every `server.reload_seconds` each server process looks at its config file, and puts a
valid edit in force as a whole or rejects an invalid one as a whole.

Each worker process runs its own watcher, so an edit reaches every process within one period. A rejected
edit leaves the old policy (and models) in force, is logged with the key at fault, and is reported by
`/readyz` (503) and the admin page through `runtime.problems["config"]` until the file is fixed.

Model deployments hook in here: after an accepted edit is in force, `decider.registry.deploy.refresh`
rebuilds `runtime.deployment` from the new `[models]` section, keeping the old one (and reporting it) when
the new one cannot be built; `decider.registry.deploy.poll` runs every period, for switches stored in the
database by `decider models promote/rollback`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from decider.automation.guard import record_change
from decider.config import ConfigError, Settings, load_settings
from decider.policy import Policy
from decider.runtime import Runtime

log = logging.getLogger("decider.automation")
ConfigHook = Callable[[Runtime, Settings], object]  # what a hook returns is ignored
TickHook = Callable[[Runtime], None]
SETTLE_SECONDS = 0.2  # a file younger than this may be half written: look again once it has settled
RESTART_ONLY = ("max_body_bytes", "secret_key", "access_log", "header_limit_bytes", "header_timeout_seconds",
                "body_timeout_seconds", "keep_alive_seconds", "docs")  # server keys read once, at start


def keep_restart_only(old: Settings, new: Settings) -> tuple[Settings, list[str]]:
    """Settings read once at start keep their old value; return the keys that wait for a restart.
    `models.dir` is one: models are loaded by name from the folder the server started with."""
    waiting = ["database.url"] if new.database != old.database else []
    waiting += ["models.dir"] if new.models_dir != old.models_dir else []
    kept = {key: getattr(old.server, key) for key in RESTART_ONLY}
    waiting += [f"server.{key}" for key, value in kept.items() if getattr(new.server, key) != value]
    settings = new.model_copy(update={"database": old.database, "server": new.server.model_copy(update=kept),
                                      "models": new.models.model_copy(update={"dir": old.models.dir})})
    return settings, waiting


def stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


def digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


@dataclass
class Watcher:
    runtime: Runtime
    path: Path
    on_config: list[ConfigHook] = field(default_factory=list)
    on_tick: list[TickHook] = field(default_factory=list)
    _stamp: tuple[int, int] | None = None
    _digest: str | None = None
    # A policy put in force but not yet stored (the database was down, or the server just started).
    _unrecorded: tuple[Policy | None, Policy, str] | None = None

    def __post_init__(self) -> None:
        self._stamp, self._digest = stamp(self.path), digest(self.path)
        self._unrecorded = (None, self.runtime.policy, "start")

    def round(self) -> None:
        """One period's work: the config file, the history, then the registry's poll."""
        self.check()
        self.record()
        for tick in self.on_tick:
            tick(self.runtime)

    def check(self) -> bool:
        """Look at the file once; True when an edit took effect."""
        current = self._settled_stamp()
        if current == self._stamp:
            return False
        self._stamp = current
        content = digest(self.path)
        if content == self._digest:
            return False  # touched, not changed
        self._digest = content
        try:
            new, waiting = keep_restart_only(self.runtime.settings, load_settings(self.path))
        except ConfigError as exc:
            self.reject(str(exc))
            return False
        if waiting:
            log.warning("config %s: %s changed; that takes effect on restart", self.path, ", ".join(waiting))
            # Reported by /readyz until a restart (or undoing the edit): the file says what is not in force.
            serving = f", serving models from {new.models_dir}" if "models.dir" in waiting else ""
            self.runtime.problems["restart"] = (f"config {self.path}: {', '.join(waiting)} changed; that takes "
                                                f"effect on restart; until then the values read at start hold{serving}")
        else:
            self.runtime.problems.pop("restart", None)
        self.apply(new)
        # After the switch, so a hook and anything it races with read the same, new settings.
        for hook in self.on_config:
            hook(self.runtime, new)
        return True

    def _settled_stamp(self) -> tuple[int, int] | None:
        """The file's stamp once it has been still for SETTLE_SECONDS (an editor may be mid-write)."""
        current = stamp(self.path)
        for _ in range(10):
            age = time.time() - current[0] / 1e9 if current else SETTLE_SECONDS
            if age >= SETTLE_SECONDS:
                break
            time.sleep(SETTLE_SECONDS - age)
            current = stamp(self.path)
        return current

    def reject(self, message: str) -> None:
        problem = f"edit of {self.path} rejected, policy {self.runtime.policy.version} stays in force: {message}"
        if self.runtime.problems.get("config") != problem:
            log.error("config %s", problem)
        self.runtime.problems["config"] = problem

    def apply(self, new: Settings) -> None:
        old = self.runtime.policy
        self.runtime.apply_settings(new)
        fixed = self.runtime.problems.pop("config", None)
        if fixed:
            log.warning("config %s: fixed; the edit is accepted", self.path)
        if self.runtime.policy.version != old.version:
            log.warning("config %s: policy %s -> %s now in force: %s", self.path, old.version,
                        self.runtime.policy.version, self.runtime.policy.as_dict())
            self._unrecorded = (old, self.runtime.policy, "config")

    def record(self) -> None:
        """Store the policy in force in the history (and the guard's replay), retrying next period."""
        if self._unrecorded is None:
            return
        old, new, source = self._unrecorded
        if new is not self.runtime.policy:  # superseded before it was stored: store what is in force
            old, new = old, self.runtime.policy
        record_change(engine=self.runtime.engine, old=old, new=new, source=source)
        self._unrecorded = None

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.round)
            except Exception:  # keep watching: a database hiccup must not end live reload
                log.exception("config watcher: this round failed; trying again in the next")
            await asyncio.sleep(self.runtime.settings.server.reload_seconds)


def start(runtime: Runtime) -> asyncio.Task[None]:
    """Start this process's watcher on the running event loop (from the app's lifespan)."""
    from decider.automation.auditing import Auditor
    from decider.automation.pilot import Pilot
    from decider.registry import deploy
    from decider.review import deadlines, insight

    pilot = Pilot(runtime)
    pilot.refresh(record=False)  # the thresholds earned so far are in the policy this process starts with
    auditor = Auditor(runtime)
    auditor.tick()
    def sweep(rt: Runtime) -> None:
        deadlines.sweep(rt.engine, rt.settings.review)

    watcher = Watcher(runtime, runtime.settings.config_path, [deploy.refresh],
                      [deploy.poll, pilot.tick, auditor.tick, sweep, insight.refresh_precedents])
    return asyncio.get_running_loop().create_task(watcher.run(), name="decider-config-watcher")
