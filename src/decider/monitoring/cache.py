"""Per-hour tallies of the cases, kept in the process and brought up to date on each request, so that a
window's figures cost a sum of tallies and a read of what changed since the last look, not a read of every case.

- The first request reads the window's cases once and keeps one `Block` per hour: its tally, and per case the
  judgement it counts under (monitoring/tally.py). A wider window later reads only the hours not held yet.
  That first read takes columns, not a mapping per case (queries.case_columns), and is long at a million
  cases (seconds to tens of seconds): monitoring/service.py runs it in the background (`Build`) when it is
  more than a few thousand cases, and starts one for the default window when the process starts.
- New cases: those created since the last look (less SETTLE: on PostgreSQL a case can become visible after one
  with a higher id) that no block holds yet are read and added.
- Changed cases: every change a monitoring figure reads (a review, an audit, an outcome) writes a
  `case_event`; the cases of the events past the last look are read again and their judgements replaced.
  So a change made to the table by hand, without its event, is not seen until the process restarts.
- The window's ends, where they cut an hour, are read from the database: the hours between come from blocks.

One cache per database engine and reference card; a new card (a promotion) starts a new one. Blocks past a
budget of counts (MAX_CELLS, mostly the drift cells) are dropped oldest first, never those of the window
asked for. Requests take turns on a lock: each sees the cache whole.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection, Engine

from decider.db import now
from decider.monitoring import queries
from decider.monitoring.buckets import hour_index, hour_start
from decider.monitoring.tally import (
    NO_REVIEW,
    Chunk,
    Judge,
    Judgement,
    Row,
    Tally,
    by_hour,
    read_columns,
    reference_bins,
    reviewed_hour,
    tally,
    tally_chunk,
)

if TYPE_CHECKING:
    from decider.monitoring.background import Build

SETTLE = timedelta(seconds=60)  # how late a committed case or event may show up after its timestamp
MAX_CELLS = 32_000_000  # counts kept across blocks (about 8 bytes each) before the oldest blocks are dropped

Progress = Callable[[int], None]


@dataclass
class Block:
    """One hour's cases: their tally, and per case (by id, sorted) the judgement and review hour counted."""

    tally: Tally
    ids: np.ndarray
    judged: np.ndarray  # index into Cache.judgements
    reviewed: np.ndarray  # buckets.hour_index, or NO_REVIEW

    @property
    def cells(self) -> int:
        return sum(f.size for f in self.tally.features.values()) + 64


@dataclass(frozen=True)
class Window:
    """Cases created in [start, end) (end None: up to now), and from `cut` on when `last` cut it."""

    start: datetime
    end: datetime | None
    cut: tuple[datetime, int] | None = None


class Cache:
    def __init__(self, card: Mapping[str, Any], audit_rates: Mapping[str, float]) -> None:
        self.card_id = card.get("id")
        self.bins = reference_bins(card)
        self.judge = Judge(audit_rates)
        self.judgements: list[Judgement] = []
        self.judgement_ids: dict[Judgement, int] = {}
        self.blocks: dict[int, Block] = {}
        self.covered_from: int | None = None  # every case created from this hour on is in a block
        self.looked_at: datetime | None = None
        self.event_mark = 0  # every event up to this id has been applied
        self.events_seen: dict[int, datetime] = {}  # applied events past the mark
        self.lock = threading.Lock()
        self.starting = threading.Lock()  # taken to start a background read (monitoring/background.py)
        self.build: Build | None = None  # the latest background read

    def fits(self, card: Mapping[str, Any], audit_rates: Mapping[str, float]) -> bool:
        """Whether this cache counts for `card` with these audit rates (a policy version's rate never changes
        once recorded; new versions only add rates)."""
        known = self.judge.audit_rates
        if card.get("id") != self.card_id or any(audit_rates.get(v, r) != r for v, r in known.items()):
            return False
        if set(audit_rates) - set(known):
            known.update(audit_rates)
            self.judge.seen.clear()
        return True

    # -- reading a window ------------------------------------------------------------------------------------

    def parts(self, conn: Connection, window: Window, progress: Progress | None = None) -> list[tuple[int, Tally]]:
        """The tallies of the window's cases, oldest first: whole hours from blocks, cut hours from the database."""
        looked = now()
        aligned, first = _first_whole(window)
        stop = hour_index(window.end) if window.end is not None else None  # the hour the end cuts, if any
        if stop is not None and stop < first:  # inside one hour
            return self._read(conn, window.start, window.end, window.cut)
        self._cover(conn, first, looked, progress)
        self._refresh(conn, looked)
        out = [] if aligned else self._read(conn, window.start, hour_start(first), window.cut)
        out += [(h, b.tally) for h, b in sorted(self.blocks.items()) if h >= first and (stop is None or h < stop)]
        if window.end is not None and window.end > hour_start(stop or 0):
            out += self._read(conn, hour_start(stop or 0), window.end, None)
        self._trim(keep_from=first)
        return out

    def unread(self, conn: Connection, window: Window) -> int:
        """How many cases `parts` would read for the window's whole hours that no block holds yet."""
        first = _first_whole(window)[1]
        if self.covered_from is not None and first >= self.covered_from:
            return 0
        until = hour_start(self.covered_from) if self.covered_from is not None else None
        return queries.count_window(conn=conn, since=hour_start(first), until=until)

    def _read(self, conn: Connection, since: datetime, until: datetime | None,
              cut: tuple[datetime, int] | None) -> list[tuple[int, Tally]]:
        rows = queries.window_rows(conn=conn, features=self.bins, since=since, until=until, cut=cut)
        return [(hour, self._tally(group)) for hour, group in by_hour(rows).items()]

    def _tally(self, rows: Sequence[Row], judged: Sequence[Judgement] | None = None) -> Tally:
        return tally(rows, self.bins, judged or [self.judge(r) for r in rows], read_columns(rows, self.bins))

    # -- keeping the blocks ----------------------------------------------------------------------------------

    def _cover(self, conn: Connection, first: int, looked: datetime, progress: Progress | None) -> None:
        """Read the hours from `first` that no block holds yet (on the first request: up to now)."""
        if self.covered_from is not None and first >= self.covered_from:
            return
        if self.covered_from is None:
            self.looked_at = looked
            self.event_mark = queries.event_mark(conn=conn, before=looked - 2 * SETTLE)
        until = hour_start(self.covered_from) if self.covered_from is not None else None
        held_before = set(self.blocks)
        held: list[Chunk] = []  # the cases read so far of the hour being read
        try:
            for chunk in queries.case_columns(conn=conn, bins=self.bins, since=hour_start(first), until=until,
                                              progress=progress):
                for hour, part in chunk.by_hour():
                    if held and int(held[0].hours[0]) != hour:
                        self._add_columns(conn, Chunk.join(held))
                        held = []
                    held.append(part)
            if held:
                self._add_columns(conn, Chunk.join(held))
        except BaseException:  # a read cut short (an error, a stop): keep no part of it, or a retry counts twice
            for hour in set(self.blocks) - held_before:
                del self.blocks[hour]
            raise
        self.covered_from = first

    def _add_columns(self, conn: Connection, c: Chunk) -> None:
        """Keep the block of one hour's cases read as columns."""
        hour = int(c.hours[0])
        ids = {key: self._judgement_id(self.judge.of_key(key)) for key in dict.fromkeys(c.keys)}
        judged = np.fromiter(map(ids.__getitem__, c.keys), dtype=np.int32, count=len(c))
        first, last = queries.hour_bounds(conn=conn, hour=hour)
        order = np.argsort(c.ids, kind="stable")
        self._merge(hour, Block(tally_chunk(c, self.bins, judged, self.judgements, first, last), c.ids[order],
                                judged[order], c.reviewed[order]))

    def _add_block(self, hour: int, rows: Sequence[Row]) -> None:
        judgements = [self.judge(r) for r in rows]
        judged = [self._judgement_id(j) for j in judgements]
        reviewed = [h if (h := reviewed_hour(r)) is not None else NO_REVIEW for r in rows]
        ids = np.array([r["id"] for r in rows], dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        self._merge(hour, Block(self._tally(rows, judgements), ids[order], np.array(judged, dtype=np.int32)[order],
                                np.array(reviewed, dtype=np.int64)[order]))

    def _merge(self, hour: int, fresh: Block) -> None:
        block = self.blocks.get(hour)
        if block is None:
            self.blocks[hour] = fresh
            return
        block.tally = Tally.total([block.tally, fresh.tally])
        ids = np.concatenate([block.ids, fresh.ids])
        order = np.argsort(ids, kind="stable")
        block.ids = ids[order]
        block.judged = np.concatenate([block.judged, fresh.judged])[order]
        block.reviewed = np.concatenate([block.reviewed, fresh.reviewed])[order]

    def _judgement_id(self, j: Judgement) -> int:
        got = self.judgement_ids.get(j)
        if got is None:
            got = self.judgement_ids[j] = len(self.judgements)
            self.judgements.append(j)
        return got

    def _refresh(self, conn: Connection, looked: datetime) -> None:
        """Add the cases created since the last look, then re-judge the cases changed since."""
        assert self.looked_at is not None and self.covered_from is not None
        held_from = hour_start(self.covered_from)
        new: list[int] = []
        for case_id, created in queries.created_since(conn=conn, since=self.looked_at - SETTLE):
            block = self.blocks.get(hour_index(created))
            if created >= held_from and (block is None or not _holds(block, case_id)):
                new.append(case_id)
        if new:
            rows = queries.rows_by_id(conn=conn, features=self.bins, ids=new)
            for hour, group in by_hour(rows).items():
                self._add_block(hour, group)
        events = queries.events_after(conn=conn, mark=self.event_mark)
        changed = {case_id for event_id, case_id, _ in events if event_id not in self.events_seen}
        if changed:
            for r in queries.rows_by_id(conn=conn, features=self.bins, ids=changed):
                self._rejudge(r)
        for event_id, _, at in events:
            self.events_seen[event_id] = at
        settled = [i for i, at in self.events_seen.items() if at < looked - 2 * SETTLE]
        if settled:
            self.event_mark = max(self.event_mark, *settled)
            for i in [i for i in self.events_seen if i <= self.event_mark]:
                del self.events_seen[i]
        self.looked_at = looked

    def _rejudge(self, r: Row) -> None:
        block = self.blocks.get(hour_index(r["created_at"]))
        if block is None:
            return
        i = int(np.searchsorted(block.ids, r["id"]))
        if i >= len(block.ids) or block.ids[i] != r["id"]:
            return
        new_j, new_h = self._judgement_id(self.judge(r)), reviewed_hour(r)
        old_j, old_h = int(block.judged[i]), int(block.reviewed[i])
        if (new_j, new_h if new_h is not None else NO_REVIEW) == (old_j, old_h):
            return
        block.tally.add_judged(self.judgements[old_j], old_h if old_h != NO_REVIEW else None, -1)
        block.tally.add_judged(self.judgements[new_j], new_h)
        block.judged[i], block.reviewed[i] = new_j, new_h if new_h is not None else NO_REVIEW

    def _trim(self, keep_from: int) -> None:
        """Drop the oldest blocks (never those from `keep_from` on) while the cache holds more than MAX_CELLS."""
        total = sum(b.cells for b in self.blocks.values())
        for hour in sorted(self.blocks):
            if total <= MAX_CELLS or hour >= keep_from:
                break
            total -= self.blocks.pop(hour).cells
            self.covered_from = hour + 1


def _first_whole(window: Window) -> tuple[bool, int]:
    """(whether the window starts on an hour, the first hour it holds whole)."""
    aligned = window.cut is None and window.start == hour_start(hour_index(window.start))
    return aligned, hour_index(window.start) + (0 if aligned else 1)


def _holds(block: Block, case_id: int) -> bool:
    i = int(np.searchsorted(block.ids, case_id))
    return i < len(block.ids) and int(block.ids[i]) == case_id


_CACHES: weakref.WeakKeyDictionary[Engine, Cache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def cache_for(engine: Engine, card: Mapping[str, Any], audit_rates: Mapping[str, float]) -> Cache:
    """The engine's cache for this card, a new one if it has none or counts for another."""
    with _CACHES_LOCK:
        cache = _CACHES.get(engine)
        if cache is None or not cache.fits(card, audit_rates):
            cache = _CACHES[engine] = Cache(card, audit_rates)
        return cache

