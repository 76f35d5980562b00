"""Prometheus metrics at /metrics: requests, cases and outcomes counted in-process; queue and reviews read
from the database at scrape time, so every worker reports the same figures.

With several workers (`decider serve --workers N`) each process writes its counters to files in
$PROMETHEUS_MULTIPROC_DIR and /metrics sums them (prometheus_client's multiprocess mode). The variable
must be set before the workers start; `prepare_multiprocess_dir` does that for `decider serve`.
"""

from __future__ import annotations

import glob
import hmac
import os
import tempfile
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from time import perf_counter
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import Connection, Engine, func, select
from starlette.routing import Mount, get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from decider.cases.service import CASE
from decider.db import now
from decider.errors import Unauthorized
from decider.monitoring.queries import totals

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
LATENCY_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("decider_http_requests", "HTTP requests answered, by route template and status",
                   ["method", "route", "status"])
LATENCY = Histogram("decider_http_request_duration_seconds", "Time to answer an HTTP request, by route template",
                    ["method", "route"], buckets=LATENCY_BUCKETS)
CASES = Counter("decider_cases", "Cases created, by route (auto|queue), decision at creation and model version",
                ["route", "decision", "model_version"])
NOVEL_CASES = Counter("decider_novel_cases", "Cases created with an input unlike the training data, once per "
                      "kind of reason (range|combination|unscorable), by route (auto: novelty allowed)",
                      ["kind", "route"])
NOVELTY_KINDS = frozenset({"range", "combination", "unscorable"})  # anything else counts as "other"
OUTCOMES = Counter("decider_outcomes", "Outcomes reported; `decision` says whether the final decision matched",
                   ["decision"])
SHADOW_DROPPED = Counter("decider_shadow_dropped", "Cases the shadow models did not score because their queue "
                         "was full (ingest outran them)")

router = APIRouter(include_in_schema=False)


def prepare_multiprocess_dir() -> str:
    """Point $PROMETHEUS_MULTIPROC_DIR at an empty folder before the workers start; returns the folder."""
    path = os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="decider-metrics-")
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):  # counters restart with the server
        os.remove(stale)
    os.environ[MULTIPROC_ENV] = path
    return path


UNMATCHED = "<unmatched>"


class MetricsMiddleware:
    """Counts and times every HTTP request under its route template (`/api/v1/cases/{case_id}`), never the
    raw path, so the number of series stays bounded. Pure ASGI; the labelled children are cached.

    The `route` label is the template of the route that answered; for a mounted app, its mount path
    (`/static` for every static file, found or not). `<unmatched>` is left for requests no route took:
    paths that match nothing (404), and requests refused before routing, such as a body over
    `server.max_body_bytes` (413, answered by the body limit further in than this middleware).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        path = get_route_path(scope)  # before routing, which moves a mount's prefix into root_path
        status = 500  # an exception escaping the app is answered with 500 further out

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or mount_path(scope, path) or UNMATCHED
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            key = (method, route, status)
            child = self.children.get(key)
            if child is None:
                child = self.children[key] = (REQUESTS.labels(method, route, str(status)),
                                              LATENCY.labels(method, route))
            child[0].inc()
            child[1].observe(perf_counter() - start)


def mount_path(scope: Scope, path: str) -> str | None:
    """The path of the mount (`/static`) that `path` falls under: FastAPI sets no `scope["route"]` there."""
    for route in getattr(scope.get("app"), "routes", ()):
        if isinstance(route, Mount) and (path == route.path or path.startswith(route.path + "/")):
            return route.path
    return None


_case_children: dict[tuple[str, str, str], Any] = {}
_novel_children: dict[tuple[str, str], Any] = {}


def record_case(row: dict[str, Any]) -> None:
    """Count one newly created case, and each kind of novelty it was flagged for."""
    record_cases([row])


def record_cases(rows: Iterable[dict[str, Any]]) -> None:
    """Count newly created cases: tallied first (by Counter's C loop), so a batch of 1,000 costs one increment
    per label set."""
    rows = list(rows)
    cases = Tally((row["route"], row["decision"] or "none", row["model_version"] or "none") for row in rows)
    # Each kind of novelty once per case; novelty None: not checked, []: nothing unusual.
    novel = Tally((kind if kind in NOVELTY_KINDS else "other", row["route"]) for row in rows if row.get("novelty")
                  for kind in {r.get("kind") for r in row["novelty"]})
    for key, n in cases.items():
        child = _case_children.get(key)
        if child is None:
            child = _case_children[key] = CASES.labels(*key)
        child.inc(n)
    for novel_key, n in novel.items():
        counter = _novel_children.get(novel_key)
        if counter is None:
            counter = _novel_children[novel_key] = NOVEL_CASES.labels(*novel_key)
        counter.inc(n)


def record_outcome(case: dict[str, Any], label: str) -> None:
    verdict = "none" if case["decision"] is None else ("correct" if case["decision"] == label else "wrong")
    OUTCOMES.labels(verdict).inc()


class DatabaseCollector:
    """Queue depth, oldest pending age, reviews done and overturned audits, read when Prometheus scrapes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("decider_database_up", "1 when the scrape could read the database")
        try:
            with self.engine.connect() as conn:
                t = totals(conn=conn)
        except Exception:  # report the failure as a value; a scrape should not fail with it
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily("decider_queue_depth", "Cases waiting for a review (queued or audit)",
                                value=t.queue_depth)
        yield GaugeMetricFamily("decider_queue_oldest_pending_seconds",
                                "Age of the oldest case waiting for a review; 0 when none waits",
                                value=t.oldest_pending_seconds)
        reviews = CounterMetricFamily("decider_reviews", "Reviews done: decisions on queued cases, and audits",
                                      labels=["kind"])
        for kind, n in sorted(t.reviews_done.items()):
            reviews.add_metric([kind], n)
        yield reviews
        yield CounterMetricFamily("decider_audit_overturned",
                                  "Automatic decisions a blind audit labelled differently", value=t.overturned)
        try:
            with self.engine.connect() as conn:
                overdue, waits = deadline_figures(conn)
        except Exception:  # decider_database_up says the database answered a moment ago; skip these
            return
        yield GaugeMetricFamily("decider_queue_overdue", "Cases waiting for a review past their deadline "
                                "(review.due_minutes, fallback escalate)", value=overdue)
        took = GaugeMetricFamily("decider_time_to_decision_seconds", "From arrival to a person's decision, over the "
                                 "queued cases decided in the last 24 hours (at most the newest 10,000)",
                                 labels=["quantile"])
        for q, value in waits.items():
            took.add_metric([q], value)
        yield took


def deadline_figures(conn: Connection) -> tuple[int, dict[str, float]]:
    """Overdue cases now, and the 0.5/0.9/0.99 quantiles of the time people took to decide recent cases."""
    overdue = conn.execute(select(func.count()).select_from(CASE).where(
        CASE.c.review_status == "pending", CASE.c.overdue_at.is_not(None))).scalar_one()
    rows = conn.execute(select(CASE.c.created_at, CASE.c.decided_at).where(
        CASE.c.route == "queue", CASE.c.status == "decided", CASE.c.decided_at >= now() - timedelta(days=1),
        CASE.c.decided_by.not_in(("model", "fallback"))).order_by(CASE.c.id.desc()).limit(10_000)).all()
    seconds = sorted((d - c).total_seconds() for c, d in rows)
    if not seconds:
        return int(overdue), {}
    pick = {q: seconds[min(len(seconds) - 1, int(float(q) * len(seconds)))] for q in ("0.5", "0.9", "0.99")}
    return int(overdue), pick


class ReadinessCollector:
    """Whether the answering process serves degraded: 1 while a config edit is rejected or a model switch
    refused (it serves on the last good policy and models; /readyz stays 200). Read at scrape time."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = problems

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("decider_config_rejected", "1 while the last config edit is rejected (the "
                                "previous policy serves)", value=int("config" in self.problems))
        yield GaugeMetricFamily("decider_model_switch_refused", "1 while a model switch is refused (the "
                                "previous models serve)", value=int("models" in self.problems))


def exposition(engine: Engine, problems: Mapping[str, str] | None = None) -> bytes:
    """The text format for one scrape: this process's (or all workers') metrics and the database's."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)  # type: ignore[arg-type]  # a registry is itself a collector
    registry.register(DatabaseCollector(engine))  # type: ignore[arg-type]
    if problems is not None:
        registry.register(ReadinessCollector(problems))  # type: ignore[arg-type]
    return generate_latest(registry)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus text format; behind `server.metrics_token` when one is set."""
    token = request.app.state.runtime.settings.server.metrics_token
    if token:
        sent = request.headers.get("authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            raise Unauthorized("/metrics needs 'Authorization: Bearer <server.metrics_token>'")
    runtime = request.app.state.runtime
    return Response(exposition(runtime.engine, runtime.problems), media_type=CONTENT_TYPE_LATEST)
