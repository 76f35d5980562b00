"""Bounded requests: uvicorn's httptools protocol with a limit on the request head and timeouts on reading it
and the body (uvicorn 0.54 has only the keep-alive timeout).

`decider serve` runs uvicorn with `http="decider.serving:BoundedHttpToolsProtocol"`. Per connection:

- `server.header_limit_bytes`: a request head (request line and headers) larger than this is answered 431
  `{"detail": ..., "field": "headers"}` and the connection closed. Bytes are counted as they arrive, so a huge
  or endless head is refused after at most the limit plus one read, never buffered whole (httptools itself
  buffers a header of any size).
- `server.header_timeout_seconds`: a head not complete this long after the connection opened, or after the
  previous response, is answered 408 (`field: "headers"`) and the connection closed. An idle kept-alive
  connection (no byte of a next request) is closed without an answer, as uvicorn's keep-alive timeout does.
- `server.body_timeout_seconds`: a body not complete this long after its head: 408 (`field: "body"`) if no
  response has started, else just closed. The app sees `http.disconnect` and its answer is dropped; decider
  reads a whole body before it stores anything, so nothing is stored.

The limits come from the settings: `configure` (called by `decider serve`) or, in a worker process started by
`--workers N` (spawned: it does not share the parent's module state), read once from `$DECIDER_CONFIG` and the
environment, like `app_from_env`. The hot path adds a few attribute reads and writes per read from the socket
and a `loop.time()` per response; the timeouts share one `loop.call_at` timer per connection (see the class).

Each connection's writes within one event-loop callback leave as one send (`OneSendPerTick`): uvicorn writes a
response's head and body separately.
"""

from __future__ import annotations

import asyncio
import json
from asyncio import TimerHandle
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

if TYPE_CHECKING:
    from decider.config import ServerSettings

PROTOCOL = "decider.serving:BoundedHttpToolsProtocol"  # uvicorn's `http=` option
LINGER_SECONDS = 2.0  # after a refusal, how long to keep reading (and dropping) what the client still sends


@dataclass(frozen=True)
class Limits:
    header_limit_bytes: int = 16_384
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0


_limits: Limits | None = None


def configure(server: ServerSettings) -> Limits:
    """Use these settings for every connection this process serves from now on."""
    global _limits
    _limits = Limits(server.header_limit_bytes, server.header_timeout_seconds, server.body_timeout_seconds)
    return _limits


def current_limits() -> Limits:
    """The configured limits; in a fresh process (a worker), read from the settings once."""
    if _limits is not None:
        return _limits
    from decider.config import load_settings

    return configure(load_settings().server)


class _Refused(Exception):
    """Raised from a parser callback to stop httptools parsing a request that was just refused."""


class _Discard:
    """Stands in for the parser once a connection has been answered: what the client still sends is dropped."""

    def feed_data(self, data: bytes) -> None:
        pass


_DISCARD: Any = _Discard()


class OneSendPerTick:
    """A connection's transport whose writes within one event-loop callback go out as one send: uvicorn writes a
    response's head and its body in two calls, and each was a send(2), and a TCP segment for the client to
    take, of its own (~1 in 6 of the loop thread's samples went to the two). Writes are joined until the end
    of the callback (`call_soon`), or at once past FLUSH_BYTES, so a large streamed answer still meets the
    transport's flow control; close() and write_eof() send what is held first."""

    __slots__ = ("transport", "loop", "held", "held_bytes")
    FLUSH_BYTES = 65_536

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        self.held: list[bytes] = []
        self.held_bytes = 0

    def write(self, data: bytes) -> None:
        if not self.held:
            self.loop.call_soon(self.flush)
        self.held.append(data)
        self.held_bytes += len(data)
        if self.held_bytes > self.FLUSH_BYTES:
            self.flush()

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        if self.held:
            data = self.held[0] if len(self.held) == 1 else b"".join(self.held)
            self.held = []
            self.held_bytes = 0
            if not self.transport.is_closing():
                self.transport.write(data)

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def abort(self) -> None:
        self.held = []
        self.held_bytes = 0
        self.transport.abort()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + self.held_bytes

    def __getattr__(self, name: str) -> Any:  # everything else (get_extra_info, pause_reading, ...) as it is
        return getattr(self.transport, name)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's HttpToolsProtocol with `Limits`. One timer per connection, `watchdog`, serves both timeouts:
    the protocol only moves `deadline` (a float) as requests go by, and the timer, when it fires, either acts
    or sleeps on until the deadline of the moment; so a steady keep-alive connection creates a timer only
    about once per timeout period, not per request. Per-request callbacks call the base class by name rather
    than through super(), which measurably costs more on this path."""

    # Slots, not the instance dict: uvicorn sets 28 attributes, and past 30 CPython (3.11) stops sharing the
    # dict's keys between instances, which made every attribute access in uvicorn's code slower (+2 us/request).
    __slots__ = ("header_limit", "header_timeout", "body_timeout", "in_head", "head_seen", "deadline", "watchdog",
                 "watchdog_at", "linger_timer")

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = current_limits()
        self.header_limit = limits.header_limit_bytes
        self.header_timeout = limits.header_timeout_seconds
        self.body_timeout = limits.body_timeout_seconds
        self.in_head = True  # waiting for a head or reading one (not a body)
        self.head_seen = 0  # bytes received since this head started (an upper bound on its size)
        self.deadline: float | None = None  # loop time by which the head or body being waited for must be in
        self.watchdog: TimerHandle | None = None
        self.watchdog_at = 0.0
        self.linger_timer: TimerHandle | None = None

    # Connection events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = OneSendPerTick(transport, self.loop)  # type: ignore[assignment]
        self.expect(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.deadline = None
        for timer in (self.watchdog, self.linger_timer):
            if timer is not None:
                timer.cancel()
        self.watchdog = self.linger_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn 0.54's data_received, with the head counted and the body's deadline set.
        self._unset_keepalive_if_required()
        if self.in_head:
            self.head_seen += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.parser is _DISCARD:  # refused from a callback (on_headers_complete), already answered
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self.in_head:
            if self.head_seen > self.header_limit and self.parser is not _DISCARD:
                self.refuse_head()  # still no end of the head after more than the limit
        elif self.deadline is None and self.parser is not _DISCARD:
            self.expect(self.body_timeout)  # a head is in and its body is not (yet)

    # Parser callbacks

    def on_headers_complete(self) -> None:
        previous = self.cycle
        # head_seen is an upper bound on the head's size, unless the head began inside a read that also held
        # the end of the previous request (pipelining; the previous response is then still under way).
        if self.head_seen > self.header_limit or (previous is not None and not previous.response_complete):
            if self.head_size() > self.header_limit:
                self.refuse_head()
                raise _Refused
        self.in_head = False
        self.deadline = None
        HttpToolsProtocol.on_headers_complete(self)

    def on_message_complete(self) -> None:
        HttpToolsProtocol.on_message_complete(self)
        self.in_head = True
        self.head_seen = 0
        self.deadline = None
        if self.cycle is not None and self.cycle.response_complete:
            self.expect(self.header_timeout)  # answered before its body was in: the next head's time starts

    def on_response_complete(self) -> None:
        HttpToolsProtocol.on_response_complete(self)
        # Idle now (uvicorn armed its keep-alive timer, and the body is in): the next head's time starts.
        if self.timeout_keep_alive_task is not None and self.in_head:
            self.expect(self.header_timeout)

    # Limits

    def expect(self, seconds: float) -> None:
        """What is awaited now (a head, or a body) must be in within `seconds`."""
        self.deadline = deadline = self.loop.time() + seconds
        if self.watchdog is None or deadline < self.watchdog_at:
            if self.watchdog is not None:
                self.watchdog.cancel()
            self.watchdog = self.loop.call_at(deadline, self.on_watchdog)
            self.watchdog_at = deadline

    def on_watchdog(self) -> None:
        self.watchdog = None
        deadline = self.deadline
        if deadline is None or self.transport.is_closing() or self.parser is _DISCARD:
            return  # nothing awaited now; the next expect() arms a new timer
        if self.loop.time() < deadline:
            self.watchdog = self.loop.call_at(deadline, self.on_watchdog)  # the deadline moved on
            self.watchdog_at = deadline
        elif self.in_head:
            self.head_timed_out()
        else:
            self.body_timed_out()

    def head_size(self) -> int:
        """The size of the head just parsed, from its parts (whitespace around values is not counted)."""
        size = len(self.url) + 4 * len(self.headers) + 16  # method, "HTTP/1.1", CRLFs
        for name, value in self.headers:
            size += len(name) + len(value)
        return size

    def refuse_head(self) -> None:
        self.logger.warning("Request head larger than %d bytes refused (server.header_limit_bytes).",
                            self.header_limit)
        self.answer(431, f"request head (request line and headers) larger than the limit of {self.header_limit} "
                         "bytes (server.header_limit_bytes)", "headers")

    def head_timed_out(self) -> None:
        if self.head_seen == 0 and self.cycle is not None:
            self.parser = _DISCARD
            self.transport.close()  # an idle kept-alive connection: no request to answer
            return
        self.answer(408, f"request head not received within {self.header_timeout:g} seconds "
                         "(server.header_timeout_seconds)", "headers")

    def body_timed_out(self) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_started or self.pipeline:
            self.parser = _DISCARD
            self.transport.close()  # uvicorn tells the app (http.disconnect) in connection_lost
            return
        cycle.disconnected = True  # from now on the app receives http.disconnect and what it sends is dropped
        cycle.message_event.set()
        self.answer(408, f"request body not received within {self.body_timeout:g} seconds "
                         "(server.body_timeout_seconds)", "body")

    def answer(self, status: int, detail: str, field: str) -> None:
        """Answer `status` with decider's JSON error and close, reading and dropping what else arrives for a
        moment first (closing with unread data would reset the connection and could lose the answer)."""
        self.parser = _DISCARD
        self.deadline = None
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        self._unset_keepalive_if_required()
        transport = self.transport
        if transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete and not self.cycle.disconnected:
            transport.close()  # a response is under way (pipelining): no room for another one
            return
        body = json.dumps({"detail": detail, "field": field}).encode()
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"content-type: application/json\r\ncontent-length: ", str(len(body)).encode(),
                        b"\r\nconnection: close\r\n\r\n", body])
        transport.write(b"".join(content))
        self.flow.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()  # the client reads the answer, then the end; it closes, or we do soon
            self.linger_timer = self.loop.call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()
