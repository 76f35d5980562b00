"""The monitoring cache's long first reads, run in the background so that no request waits on one.

A first read of a million cases takes tens of seconds (see README, "Monitoring"). Each process starts one for
the default window (the last seven days) of the live model when it starts (`warm_up`), and a request whose
window needs more than INLINE_ROWS cases read that the cache does not hold starts another (`ensure`). A
request that finds one running waits for it if it is small, else WAIT_SECONDS, then answers `Computing`: the
page says since when and how far it has read, and reloads; the API answers 503 with Retry-After. Reads of
fewer cases are done in the request, as before, and so is bringing the cache up to date (new cases, reviews,
outcomes).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine

from decider.automation.evidence import audit_rates
from decider.db import now
from decider.monitoring.cache import Cache, Window, cache_for

if TYPE_CHECKING:
    from decider.runtime import Runtime

log = logging.getLogger("decider.monitoring")
INLINE_ROWS = 20_000  # a first read of more cases than this runs in the background (about 0.3 s on SQLite)
SIZE_SECONDS = 0.5  # how long a request waits for a new read to count its cases (milliseconds, usually)
WAIT_SECONDS = 0.1  # how long a request waits for a long running read before it answers "computing"
RETRY_SECONDS = 5


class Cancelled(Exception):
    """The process is stopping: the read gives up between two chunks."""


@dataclass(eq=False)
class Build:
    """One background read of a window into a cache: since when, how far, and how it ended."""

    window: Window
    started: datetime = field(default_factory=now)
    expected: int | None = None  # cases to read, once counted
    read: int = 0
    finished: datetime | None = None
    error: str | None = None
    sized: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def progress(self, n: int) -> None:
        if self.stop.is_set():
            raise Cancelled
        self.read += n

    def run(self, engine: Engine, cache: Cache) -> None:
        """Read the window into the cache (in the calling thread); never raises."""
        try:
            with engine.connect() as conn:
                if self.expected is None:
                    self.expected = cache.unread(conn, self.window)
                self.sized.set()
                with cache.lock:
                    cache.parts(conn, self.window, self.progress)
            seconds = (now() - self.started).total_seconds()
            log.info("read %d cases since %s in %.1f s", self.read, self.window.start.date(), seconds)
        except Cancelled:
            self.error = "stopped: the process is shutting down"
        except Exception as exc:  # a background thread has no caller to raise to: log it, show it
            log.exception("monitoring: reading the cases failed")
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.finished = now()
            self.sized.set()
            self.done.set()

    def as_dict(self) -> dict[str, Any]:
        return {"started": self.started.isoformat(), "since": self.window.start.isoformat(),
                "read": self.read, "expected": self.expected, "error": self.error,
                "seconds": ((self.finished or now()) - self.started).total_seconds()}


class Computing(Exception):
    """The figures asked for wait on a background read; `build` says since when and how far."""

    def __init__(self, build: Build) -> None:
        super().__init__(f"monitoring figures are being computed since {build.started:%H:%M:%S} UTC")
        self.build = build


def start(engine: Engine, cache: Cache, window: Window, expected: int | None = None) -> Build:
    """A background read of `window` into `cache`, started."""
    build = cache.build = Build(window, expected=expected)
    threading.Thread(target=build.run, args=(engine, cache), name="decider-monitoring", daemon=True).start()
    return build


def ensure(engine: Engine, cache: Cache, conn: Connection, window: Window) -> None:
    """Return when the cache can answer for `window` within the request; raise Computing while a background
    read it waits on runs (started here when the window needs more than INLINE_ROWS cases read)."""
    running = cache.build
    if running is not None and not running.done.is_set():
        _wait(running)
    with cache.starting:
        running = cache.build
        if running is not None and not running.done.is_set():
            build = running
        else:
            unread = cache.unread(conn, window)
            if unread <= INLINE_ROWS:
                return
            build = start(engine, cache, window, unread)
    _wait(build)


def _wait(build: Build) -> None:
    """Wait for a small read to end, for WAIT_SECONDS on a large one; Computing if it has not ended well."""
    build.sized.wait(SIZE_SECONDS)
    small = build.expected is not None and build.expected <= INLINE_ROWS
    if not build.done.wait(None if small else WAIT_SECONDS) or build.error:
        raise Computing(build)


@dataclass
class WarmUp:
    """The read started with the process; `stop` ends it (and any read a request started) between chunks."""

    engine: Engine
    thread: threading.Thread
    cache: Cache | None = None

    def stop(self, timeout: float = 5.0) -> None:
        if self.cache is not None and self.cache.build is not None:
            self.cache.build.stop.set()
        self.thread.join(timeout)


def warm_up(runtime: Runtime) -> WarmUp:
    """Start reading the default window of the live model's cases into the cache, in a background thread, so
    that the first look at /monitoring after a start finds the figures ready (or being read)."""
    from decider.monitoring.service import default_since

    def body() -> None:
        try:
            engine = runtime.engine
            with engine.connect() as conn:
                cache = warm.cache = cache_for(engine, runtime.deployment.live.card, audit_rates(conn))
            with cache.starting:
                if cache.build is not None and not cache.build.done.is_set():
                    return
                build = cache.build = Build(Window(default_since(), None))
            build.run(engine, cache)
        except Exception:
            log.exception("monitoring: the warm-up read did not start")

    warm = WarmUp(runtime.engine, threading.Thread(target=body, name="decider-monitoring-warm-up", daemon=True))
    warm.thread.start()
    return warm
