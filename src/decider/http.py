"""HTTP plumbing: error answers (JSON on /api, a page elsewhere), the body limit, page-only sessions.

Every error the API, health and metrics paths answer is JSON `{"detail": ..., "field": ...}` (`field` null
where no field is to blame): decider's own errors, invalid input, Starlette's 404 and 405, and unexpected
exceptions (500, logged with their traceback). A body that cannot be parsed as JSON at all (not JSON, not
UTF-8, nested too deep) is a 422 with `field: "body"`, like any other invalid input.
"""

from __future__ import annotations

import email.message
import json
import logging
from collections.abc import Callable, Coroutine, Mapping
from functools import lru_cache
from http import HTTPStatus
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import ClientDisconnect
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from decider.errors import DeciderError
from decider.web.headers import SECURITY_HEADERS

log = logging.getLogger("decider")
Model = TypeVar("Model", bound=BaseModel)
# FastAPI's answer (a 400 naming no field) when reading the body fails other than by a JSON syntax error.
BODY_PARSE_DETAIL = "There was an error parsing the body"
METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def field_of(loc: tuple) -> str:
    """('body', 'features', 'petal width (cm)') -> 'features.petal width (cm)'."""
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def validation_message(err: dict) -> tuple[str, str]:
    if err.get("type") == "json_invalid":
        return "body", f"body: not valid JSON ({err.get('ctx', {}).get('error', 'parse error')})"
    if tuple(err.get("loc", ())) == ("body",) and err.get("type") in ("model_attributes_type", "dict_type"):
        return "body", ('body: send a JSON object such as {"features": {...}} with '
                        "Content-Type: application/json")
    field = field_of(tuple(err.get("loc", ())))
    return field, f"{field}: {err.get('msg')}"


def for_people(request: Request) -> bool:
    """Pages answer errors with a page; the API, health and metrics with JSON."""
    return not request.url.path.startswith(("/api/", "/healthz", "/readyz", "/metrics", "/docs", "/openapi"))


def allowed_methods(request: Request) -> list[str]:
    """Every method some route on this path accepts (FastAPI's 405 names only the first route's), asked of
    the routes themselves with a bare scope per method, so included routers and mounts answer too."""
    base = {"type": "http", "path": request.scope["path"], "root_path": request.scope.get("root_path", ""),
            "headers": [], "query_string": b""}
    return [method for method in METHODS
            if any(route.matches({**base, "method": method})[0] == Match.FULL for route in request.app.router.routes)]


def body_parse_message(exc: BaseException) -> str:
    """Why a body FastAPI could not read is refused, from the exception that stopped it."""
    cause = exc.__cause__
    if isinstance(cause, UnicodeError):
        return "body: not valid JSON (not UTF-8 text)"
    if isinstance(cause, RecursionError):
        return "body: not valid JSON (nested too deep)"
    return "body: could not be parsed"


@lru_cache(maxsize=64)  # clients send the same header every time; parsing it cost ~2% of a submission
def is_json(content_type: str | None) -> bool:
    """FastAPI's rule for a JSON body: `application/json` or `application/*+json`, parameters allowed."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


class DirectRoute(APIRoute):
    """A route whose endpoint takes the Request and returns the Response itself: FastAPI documents it as
    declared (openapi_extra, response_model), but solves no dependencies and encodes no response for it.
    For the busiest endpoint, where that machinery cost ~9% of a request; errors still reach the app's
    handlers, and the middleware (body limit, metrics, headers) still wraps it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint  # type: ignore[no-any-return]


async def parse_body(request: Request, model: type[Model]) -> Model:
    """A JSON body as `model`, refused as FastAPI refuses a declared body (the same 422s, through the same
    handlers), for a hot endpoint that reads its body itself: one pass of pydantic's JSON parser instead of
    `json.loads` and then validation of the Python objects."""
    try:
        raw = await request.body()
    except ClientDisconnect:  # the client went (or serving.py timed the body out and answered 408)
        raise HTTPException(400, BODY_PARSE_DETAIL) from None
    content_type = request.headers.get("content-type")
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required",
                                       "input": None}])
    if not is_json(content_type):
        raise RequestValidationError([{"type": "model_attributes_type", "loc": ("body",),
                                       "msg": "Input should be a valid dictionary or object", "input": None}])
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError([_in_body(e) for e in exc.errors(include_url=False)]) from None


def _in_body(error: Mapping[str, Any]) -> dict[str, Any]:
    """A pydantic error located in the body, in the words FastAPI's own parser gives (body_parse_message)."""
    error = {**error, "loc": ("body", *error["loc"])}
    reason = str(error.get("ctx", {}).get("error", ""))
    if error["type"] == "json_invalid" and ("unicode" in reason or "utf-8" in reason.lower()):
        error["ctx"] = {"error": "not UTF-8 text"}
    elif error["type"] == "json_invalid" and "recursion limit" in reason:
        error["ctx"] = {"error": "nested too deep"}
    return error


def json_body(content: Any) -> bytes:
    """The JSON of an answer that decider built itself (cases: str keys, numbers, strings, aware UTC times), byte
    for byte as pydantic_core.to_json writes it (`Z` for UTC), by orjson: a batch's 1,000 cases in ~1.7 ms
    against ~5.2."""
    return orjson.dumps(content, option=orjson.OPT_UTC_Z)


def json_error(detail: str, status_code: int, field: str | None = None,
               headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "field": field}, status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DeciderError)
    async def _decider_error(request: Request, exc: DeciderError) -> Response:
        if for_people(request):
            from decider.web.pages import error_page

            return error_page(request, exc.message, exc.status_code)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse({"detail": exc.message, "field": exc.field}, exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        field, message = validation_message(errors[0]) if errors else ("body", "invalid request")
        if for_people(request):
            from decider.web.pages import error_page

            return error_page(request, message, 422)
        return JSONResponse({"detail": message, "field": field, "errors": [
            {"field": validation_message(e)[0], "message": validation_message(e)[1]} for e in errors
        ]}, 422)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        """Starlette's own errors (no route, wrong method, an unreadable body) in decider's format."""
        status, field, headers = exc.status_code, None, dict(exc.headers or {})
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else None
        if status == 400 and exc.detail == BODY_PARSE_DETAIL:
            # Not UTF-8, or nested deeper than the JSON parser goes: invalid JSON, so the 422 of invalid JSON.
            status, field, detail = 422, "body", body_parse_message(exc)
        elif status == 404:
            detail = detail or f"{request.url.path}: no such page or API route"
        elif status == 405:
            allowed = allowed_methods(request) or [m.strip() for m in headers.get("Allow", "").split(",") if m]
            headers["Allow"] = ", ".join(allowed)
            detail = detail or f"{request.method} is not allowed on {request.url.path} (allowed: {headers['Allow']})"
        detail = detail or phrase
        if status == 404 and exc.detail in (None, "", phrase):
            from decider.web.pages import not_found_page, wants_html

            if wants_html(request):  # no such route, asked for by a browser: a page with a way back
                return not_found_page(request)
            if "application/json" in request.headers.get("accept", ""):  # an API client, wherever it asked
                return json_error(detail, status, field, headers or None)
        if for_people(request):
            from decider.web.pages import error_page

            response = error_page(request, detail, status)
            response.headers.update({k: v for k, v in headers.items() if k.lower() == "allow"})
            return response
        return json_error(detail, status, field, headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        """A bug: log it with its traceback, answer 500 without details (they could leak secrets). Starlette
        sends this answer from outside every middleware, so it gets the security headers here."""
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        response = None
        if for_people(request) and "session" in request.scope:
            from decider.web.pages import error_page

            try:
                response = error_page(request, "Something went wrong on our side; it has been logged.", 500)
            except Exception:  # the page itself failed: still answer, in the API's format
                log.exception("the error page failed too")
        response = response or json_error("internal error", 500)
        response.headers.update({name.decode(): value.decode() for name, value in SECURITY_HEADERS})
        return response


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, whether or not they declare a length; a path in
    `per_path` has its own limit (the batch endpoint's body holds many cases)."""

    def __init__(self, app: ASGIApp, max_bytes: int, per_path: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = per_path or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.max_bytes)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._refuse(send, limit)
            return
        if declared is not None:  # the server delivers no more than the declared length: nothing to count
            await self.app(scope, receive, send)
            return
        # Without a declared length (chunked), read the whole body first (it is small by definition), so an
        # oversized stream is refused before the app sees any of it; the app then reads the buffered body.
        chunks, seen, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, receive, send)  # a disconnect: let the app see it
                return
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            more = message.get("more_body", False)
            if seen > limit:
                await self._refuse(send, limit)
                return
        replayed = False

        async def buffered() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, buffered, send)

    async def _refuse(self, send: Send, limit: int) -> None:
        body = json.dumps({"detail": f"body: larger than the limit of {limit} bytes",
                           "field": "body"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class PageSessions:
    """Signed session cookies for the pages only: the JSON API authenticates by key and skips the work."""

    def __init__(self, app: ASGIApp, secret_key: str, https_only: bool) -> None:
        self.app = app
        self.with_session = SessionMiddleware(app, secret_key=secret_key, session_cookie="decider_session",
                                              max_age=12 * 3600, same_site="lax", https_only=https_only)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
        else:
            await self.with_session(scope, receive, send)
