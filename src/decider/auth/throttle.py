"""Login throttling and the password-check gate.

Every login attempt is charged as a failure *before* its password is checked, to two counters: the name
from this address, and this address for any name (unknown names included). A counter at its limit makes
each further attempt wait, the wait doubling per failure up to a cap; a success refunds its charge. The
charge is a compare-and-set on the stored count, so N attempts racing each other check at most the limit.
Counting per name *and address* means nobody can keep another person locked out from elsewhere; the
per-address counter bounds what one address can try across many names. Counters are forgotten after
`lockout_max_seconds` without an attempt.

Password checks (argon2id, 46 MiB and one thread each) then run through a per-process gate: at most
`login_hash_concurrency` at once and a short queue; beyond it the attempt is refused as busy, so a flood
cannot take the memory and CPU that API traffic needs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, delete, select, update

from decider.auth.tables import LoginThrottle
from decider.config import ReviewSettings
from decider.db import as_utc, insert_unless_there, now

T_THROTTLE = LoginThrottle.__table__  # type: ignore[attr-defined]
R = TypeVar("R")


@dataclass(frozen=True)
class Limits:
    per_name: int
    per_address: int
    base_seconds: int
    max_seconds: int

    @classmethod
    def of(cls, review: ReviewSettings) -> Limits:
        return cls(review.max_failed_logins, review.max_failed_logins_per_address, review.lockout_seconds,
                   review.lockout_max_seconds)

    def wait(self, failures: int, free: int) -> timedelta | None:
        """After `failures` (counting this one): no wait below `free`, then base, 2x base, 4x ... up to max."""
        if failures < free:
            return None
        return timedelta(seconds=min(self.max_seconds, self.base_seconds * 2 ** min(failures - free, 30)))


def counters(name: str, address: str, limits: Limits) -> list[tuple[str, int]]:
    return [(f"n:{address}|{name}"[:200], limits.per_name), (f"a:{address}"[:200], limits.per_address)]


def _ensure(conn: Connection, key: str, at: datetime) -> None:
    insert_unless_there(conn, T_THROTTLE, {"key": key, "failures": 0, "updated_at": at}, ["key"])


class Waiting(dict[str, datetime]):
    """Counters this process has seen waiting (one per app): a flood from one address is refused from memory,
    touching the database once per counter every few seconds. Never more lenient than the database; a reset
    there (`decider users password`) holds within REMEMBER_SECONDS. Bounded in size."""

    LIMIT = 10_000
    REMEMBER_SECONDS = 5

    def waits(self, *, name: str, address: str, limits: Limits) -> bool:
        at = now()
        return any(self.get(key, at) > at for key, _ in counters(name, address, limits))

    def remember(self, key: str, until: datetime) -> None:
        if len(self) >= self.LIMIT:
            self.clear()
        self[key] = min(until, now() + timedelta(seconds=self.REMEMBER_SECONDS))


def _charge(conn: Connection, key: str, free: int, limits: Limits, at: datetime, memory: Waiting) -> bool:
    row = conn.execute(select(T_THROTTLE).where(T_THROTTLE.c.key == key)).mappings().first()
    if row is None:
        _ensure(conn, key, at)
        row = conn.execute(select(T_THROTTLE).where(T_THROTTLE.c.key == key)).mappings().one()
    if row["blocked_until"] is not None and as_utc(row["blocked_until"]) > at:
        memory.remember(key, as_utc(row["blocked_until"]))
        return False
    quiet = at - as_utc(row["updated_at"]) > timedelta(seconds=limits.max_seconds)
    failures = 1 if quiet else row["failures"] + 1
    wait = limits.wait(failures, free)
    taken = conn.execute(update(T_THROTTLE).where(T_THROTTLE.c.key == key,
                                                  T_THROTTLE.c.failures == row["failures"])
                         .values(failures=failures, blocked_until=at + wait if wait else None, updated_at=at))
    if taken.rowcount != 1:  # another attempt took this count first: this one waits
        return False
    if wait:  # a success refunds this; until then the counter waits (and a success forgets it below)
        memory.remember(key, at + wait)
    return True


def reserve(engine: Engine, *, name: str, address: str, limits: Limits, memory: Waiting) -> bool:
    """Charge an attempt to both counters; False (and nothing charged) when either says wait."""
    at = now()
    with engine.begin() as conn:
        charged: list[tuple[str, int]] = []
        for key, free in counters(name, address, limits):
            if not _charge(conn, key, free, limits, at, memory):
                for done in charged:
                    _refund(conn, done, limits)
                return False
            charged.append((key, free))
    return True


def _refund(conn: Connection, counter: tuple[str, int], limits: Limits) -> None:
    key, free = counter
    row = conn.execute(select(T_THROTTLE.c.failures).where(T_THROTTLE.c.key == key)).scalar()
    if row:
        values: dict[str, Any] = {"failures": row - 1}
        if row - 1 < free:
            values["blocked_until"] = None
        conn.execute(update(T_THROTTLE).where(T_THROTTLE.c.key == key).values(**values))


def refund(conn: Connection, *, name: str, address: str, limits: Limits, succeeded: bool,
           memory: Waiting) -> None:
    """Give back the charge of an attempt that succeeded (the name's counter starts again, the address's
    charge is returned) or that never checked a password because the gate was busy (the name's charge is
    returned; the address keeps its, so a flood from one address still meets its limit). Old counters are
    cleared here too."""
    name_counter, address_counter = counters(name, address, limits)
    memory.pop(name_counter[0], None)
    if succeeded:
        conn.execute(delete(T_THROTTLE).where(T_THROTTLE.c.key == name_counter[0]))
        memory.pop(address_counter[0], None)
        _refund(conn, address_counter, limits)
    else:
        _refund(conn, name_counter, limits)
    stale = now() - timedelta(seconds=2 * limits.max_seconds)
    conn.execute(delete(T_THROTTLE).where(T_THROTTLE.c.updated_at < stale,
                                          T_THROTTLE.c.blocked_until.is_(None) | (T_THROTTLE.c.blocked_until < stale)))


def forget_name(conn: Connection, name: str) -> None:
    """Clear the name's counters from every address: a new password starts with a clean slate."""
    keys = [k for k in conn.execute(select(T_THROTTLE.c.key).where(T_THROTTLE.c.key.like("n:%"))).scalars()
            if k.endswith(f"|{name}")]
    if keys:
        conn.execute(delete(T_THROTTLE).where(T_THROTTLE.c.key.in_(keys)))


class Busy(Exception):
    """More password checks are waiting than the gate queues."""


class LoginGate:
    """One app's login guard: the throttle's memory of waiting counters, and the password checks, at most
    `concurrency` at once on threads of their own (so they never hold the threads API requests use); at most
    `queue` more wait; beyond that, Busy at once."""

    def __init__(self, concurrency: int, queue: int | None = None) -> None:
        self.concurrency = concurrency
        self.queue = 4 * concurrency if queue is None else queue
        self.waiting = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="decider-login")
        self.memory = Waiting()  # the throttle's memory of this app's waiting counters

    @property
    def full(self) -> bool:
        return self.waiting >= self.concurrency + self.queue

    async def run(self, fn: Callable[..., R], *args: Any) -> R:
        with self._lock:
            if self.waiting >= self.concurrency + self.queue:
                raise Busy
            self.waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, partial(fn, *args))
        finally:
            with self._lock:
                self.waiting -= 1
