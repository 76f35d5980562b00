"""HTTP plumbing: error answers (JSON on /api, a page elsewhere), the body limit, page-only sessions."""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from decider.errors import DeciderError


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


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, whether or not they declare a length."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        # Read the whole body first (it is small by definition), so an oversized stream is refused
        # before the app sees any of it; the app then reads the buffered body.
        chunks, seen, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, receive, send)  # a disconnect: let the app see it
                return
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            more = message.get("more_body", False)
            if seen > self.max_bytes:
                await self._refuse(send)
                return
        replayed = False

        async def buffered() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, buffered, send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": f"body: larger than the limit of {self.max_bytes} bytes",
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
