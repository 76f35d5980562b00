"""Group commit for the ingest path: concurrent submissions are scored and stored in batches.

One writer at a time keeps SQLite's single-writer lock free of contention, and one transaction per batch
pays for one fsync instead of one per case, while each client still gets its answer only after its case
is durably committed. At low load a batch is one case, so latency stays that of a single insert.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from decider.cases.service import Submission, score_batch, store_batch
from decider.errors import DeciderError
from decider.review import deadlines
from decider.runtime import Runtime
from decider.webhooks.outbox import decided_by_model

log = logging.getLogger("decider.ingest")
Result = tuple[dict[str, Any], bool]


class Ingestor:
    def __init__(self, runtime: Runtime, max_batch: int = 256) -> None:
        self.runtime = runtime
        self.max_batch = max_batch
        self.queue: asyncio.Queue[tuple[Submission, asyncio.Future[Result]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self.after_commit: list[Any] = []  # callables(rows) run after each committed batch, off the hot path

    async def submit(self, sub: Submission) -> Result:
        loop = asyncio.get_running_loop()
        if self.queue is None or self._task is None or self._task.done() or self._task.get_loop() is not loop:
            # Started on first use, in the loop that serves requests (a test client may bring a new one).
            self.queue = asyncio.Queue()
            self._task = loop.create_task(self._run(self.queue), name="decider-ingest")
        future: asyncio.Future[Result] = loop.create_future()
        self.queue.put_nowait((sub, future))
        return await future

    async def _run(self, queue: asyncio.Queue[tuple[Submission, asyncio.Future[Result]]]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                results: list[Result | Exception] = list(
                    await asyncio.to_thread(self.write, [sub for sub, _ in batch]))
            except Exception as exc:
                # One bad submission must not fail the others: write them one by one, so only it fails.
                results = [exc] if len(batch) == 1 else await asyncio.to_thread(self._write_each, batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)  # every waiting request hears about it, never hangs
                else:
                    future.set_result(result)

    def _write_each(self, batch: list[tuple[Submission, Any]]) -> list[Result | Exception]:
        results: list[Result | Exception] = []
        for sub, _ in batch:
            try:
                results += self.write([sub])
            except Exception as exc:
                if not isinstance(exc, DeciderError):
                    log.exception("ingest of one case failed")
                results.append(exc)
        return results

    def write(self, subs: list[Submission]) -> list[Result]:
        """Score and store submissions in one transaction (this writer's step, and the batch endpoint's)."""
        rows = score_batch(self.runtime, subs)
        deadlines.stamp(rows, self.runtime.settings.review)
        with self.runtime.engine.begin() as conn:
            results = store_batch(conn, rows)
            decided_by_model(conn, results)
        for hook in self.after_commit:
            try:
                hook([row for row, created in results if created])
            except Exception:  # a hook must never fail ingest
                log.exception("after-commit hook failed")
        return results

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
