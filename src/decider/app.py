"""The FastAPI application: wiring only. Behaviour lives in the domain packages."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlmodel import Session

from decider import __version__
from decider.auth.service import shared_secret
from decider.auth.throttle import LoginGate
from decider.automation import reload as config_reload
from decider.automation.views import api_router as policy_api_router
from decider.automation.views import page_router as policy_page_router
from decider.cases.api import add_submit_route, batch_router
from decider.cases.api import router as cases_router
from decider.cases.export_api import router as export_router
from decider.cases.ingest import Ingestor
from decider.cases.schemas import CaseIn, contract_schema
from decider.config import Settings
from decider.db import make_engine
from decider.deps import RuntimeDep
from decider.http import BodyLimit, PageSessions, install_error_handlers
from decider.monitoring.background import warm_up as monitoring_warm_up
from decider.monitoring.metrics import MetricsMiddleware
from decider.monitoring.metrics import router as metrics_router
from decider.monitoring.outcomes import router as outcomes_router
from decider.monitoring.views import api_router as monitoring_api_router
from decider.monitoring.views import page_router as monitoring_page_router
from decider.registry import deploy
from decider.registry.api import router as models_api_router
from decider.registry.views import router as models_page_router
from decider.review.api import router as review_api_router
from decider.review.views import router as review_router
from decider.runtime import Runtime
from decider.web.admin_users import router as admin_users_router
from decider.web.headers import SecurityHeaders
from decider.web.pages import router as pages_router
from decider.web.readiness import ReadyOut, readiness
from decider.web.submit import router as submit_router
from decider.webhooks.api import router as webhooks_router
from decider.webhooks.courier import Courier
from decider.webhooks.views import router as webhooks_page_router

log = logging.getLogger("decider")
STATIC_DIR = __file__.rsplit("/", 1)[0] + "/static"
YOUNG_GC_THRESHOLD = 20_000  # see lifespan
# Swagger UI from the vendored files, started by a static script: the page has no inline code (see web/headers.py).
DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>decider API</title>
  <link rel="stylesheet" href="/static/vendor/swagger-ui.css">
  <link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/static/vendor/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script>
</body>
</html>
"""


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    """Build the app for a migrated database. Loading the model here makes a bad one stop start-up."""
    if runtime is None:
        runtime = Runtime.start(settings, make_engine(settings.database_url))
    with Session(runtime.engine) as session:
        secret = settings.server.secret_key or shared_secret(session=session, name="session_secret")
        session.commit()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Everything loaded so far (scikit-learn, the model, SQLAlchemy, the routes) lives as long as the
        # process: freeze it out of the cyclic collector, whose full passes over it stalled requests for
        # ~100 ms (ingest p99 120 ms -> 21 ms in bench/ingest.py).
        gc.collect()
        gc.freeze()
        # CPython's young generation of 700 net allocations is crossed by a single request's peak here: under
        # bench/ingest.py's load it ran ~130 collections a second and a full one every second (11-18 ms, a
        # stall for every request in flight). At 20,000 none ran in a 10 s load; the few cycles requests leave
        # (~25 a second) still reach it within minutes.
        gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
        # Model switches and shadow models; shadows score what ingest has committed.
        deployments = deploy.Background(runtime, getattr(app.state, "ingestor", None)).start()
        watcher = config_reload.start(runtime)  # each worker process follows config.toml edits
        courier = asyncio.get_running_loop().create_task(
            Courier(runtime.engine, lambda: runtime.settings.webhooks).run(), name="decider-webhooks")
        monitoring = monitoring_warm_up(runtime)  # reads the cases for /monitoring in a background thread
        yield
        monitoring.stop()
        deployments.stop()
        watcher.cancel()
        courier.cancel()
        await app.state.ingestor.close()
        runtime.engine.dispose()

    app = FastAPI(
        title="decider",
        version=__version__,
        description="Submit cases for a scikit-learn model to score; confident ones are decided "
        "automatically, the rest wait for a person. Authenticate with `Authorization: Bearer <credential>`: "
        "a client key (`decider keys create NAME`) for cases and outcomes, a person's review token "
        "(`decider users token NAME`) for the review API and, for admins, the monitoring, models and policy APIs.",
        lifespan=lifespan,
        # decider exports its own Prometheus metrics; FastAPI's OpenTelemetry hooks would cost every request a
        # check for a configured provider.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        openapi_url="/openapi.json" if settings.server.docs else None,  # server.docs = false: both 404
        docs_url=None,  # served below from vendored files: the default loads Swagger UI from a CDN
        redoc_url=None,  # ReDoc would load from a CDN too; one documentation page is enough
    )
    app.state.runtime = runtime
    app.state.ingestor = Ingestor(runtime)
    app.state.login_gate = LoginGate(settings.review.login_hash_concurrency)
    app.add_middleware(PageSessions, secret_key=secret, https_only=settings.server.secure_cookies)
    # Our own limit rather than FastAPI's max_body_size: its 413 is plain text that names no field.
    # The batch endpoint has its own limit: a full batch is many cases' worth of bytes.
    app.add_middleware(BodyLimit, max_bytes=settings.server.max_body_bytes,
                       per_path={"/api/v1/batches": settings.server.batch_max_body_bytes})
    app.add_middleware(SecurityHeaders)  # CSP and friends on every response, BodyLimit's 413s included
    app.add_middleware(MetricsMiddleware)  # outermost: times everything, labels by route template
    install_error_handlers(app)
    add_submit_route(app)  # first: the busiest route
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(export_router)  # before cases_router, whose /{case_id} would take 'export'
    app.include_router(cases_router)
    app.include_router(batch_router)
    app.include_router(webhooks_router)
    app.include_router(review_api_router)
    app.include_router(pages_router)
    app.include_router(review_router)
    app.include_router(submit_router)
    app.include_router(outcomes_router)
    app.include_router(monitoring_api_router)
    app.include_router(monitoring_page_router)
    app.include_router(metrics_router)
    app.include_router(policy_api_router)
    app.include_router(policy_page_router)
    app.include_router(models_api_router)
    app.include_router(models_page_router)
    app.include_router(admin_users_router)
    app.include_router(webhooks_page_router)

    def openapi() -> dict[str, Any]:
        """The API description with the live input contract in the case schema, rebuilt when it changes."""
        dep = runtime.deployment
        key = (dep.live.id, dep.required)
        cached = app.state.openapi
        if cached is None or cached[0] != key:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            # POST /api/v1/cases reads its own body (cases/api.py), so CaseIn is added here, not by FastAPI.
            case_in = schema.setdefault("components", {}).setdefault("schemas", {}).setdefault(
                "CaseIn", CaseIn.model_json_schema(ref_template="#/components/schemas/{model}"))
            case_in["properties"]["features"] = contract_schema(dep.contract, dep.required)
            cached = app.state.openapi = (key, schema)
        return cached[1]

    app.state.openapi = None
    app.openapi = openapi  # type: ignore[method-assign]

    if settings.server.docs:
        @app.get("/docs", include_in_schema=False)
        def docs() -> HTMLResponse:
            return HTMLResponse(DOCS_HTML)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> RedirectResponse:
        return RedirectResponse("/static/favicon.svg", 301)

    @app.head("/healthz", include_in_schema=False)  # uptime checkers often ask with HEAD
    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.head("/readyz", include_in_schema=False)
    @app.get("/readyz", tags=["health"], response_model=ReadyOut,
             responses={503: {"model": ReadyOut, "description": "Cannot serve: the database does not answer"}})
    def readyz(runtime: RuntimeDep, request: Request) -> JSONResponse:
        """200 while this process can serve, also when degraded (a rejected config edit or a refused model
        switch: it serves on the last good policy and models); 503 only when it cannot (no database). A
        load balancer needs only the status code. The reasons name no path, key or value; with an admin's
        review token the answer adds `details`, as on /admin/policy and /admin/models."""
        return readiness(runtime, request.headers.get("authorization", ""))
    return app


def configure_logging() -> None:
    """decider's own log lines (reloads, refused models, failed batches) to stderr, at INFO."""
    logger = logging.getLogger("decider")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def app_from_env() -> FastAPI:
    """The factory uvicorn calls in each worker: settings from $DECIDER_CONFIG and the environment."""
    from decider.config import load_settings

    configure_logging()
    return create_app(load_settings())
