"""Security headers on every HTTP response: a strict Content-Security-Policy and the usual companions.

The pages load only their own scripts and stylesheets (no inline code, no style attributes), so the policy
allows nothing but the server itself. `img-src data:` is for the icons Swagger UI's stylesheet embeds.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'self'; "
                           "form-action 'self'; object-src 'none'")
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    """Add SECURITY_HEADERS to the start of every HTTP response, whoever answered (routes, errors, 413s)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A new list, not an in-place extend: a response object sent twice must not gain them twice.
                message["headers"] = [*message.get("headers", ()), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)
