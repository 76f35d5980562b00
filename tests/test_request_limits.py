"""Bounded requests (serving.py) against a real `decider serve`, over raw sockets: a head over the limit gets
431, a head or body that stops arriving gets 408 and the connection closed, and normal requests (also two on
one kept-alive connection, and with --workers 2) still work."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from decider.cases.tables import Case
from decider.config import Settings, load_settings
from decider.db import make_engine
from helpers import SETOSA, seed_credentials, server, write_config

HEADER_LIMIT = 2048
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
SLACK = 3.0  # "closed within the timeout plus a few seconds"
CASE = json.dumps({"features": SETOSA}).encode()


class Server:
    def __init__(self, base: str, settings: Settings, key: str, log: Path) -> None:
        self.port = int(base.rsplit(":", 1)[1])
        self.settings = settings
        self.key = key
        self.log = log

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def post_case(self, body: bytes = CASE, extra: str = "") -> bytes:
        return (f"POST /api/v1/cases HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {self.key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body

    def stored(self) -> int:
        engine = make_engine(self.settings.database_url)
        try:
            with engine.connect() as conn:
                return conn.execute(select(func.count()).select_from(Case)).scalar_one()
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server with small limits for the whole module (starting one takes seconds)."""
    tmp = tmp_path_factory.mktemp("limits")
    config = write_config(tmp, f"sqlite:///{tmp / 'd.db'}", extra=(
        f"[server]\nheader_limit_bytes = {HEADER_LIMIT}\nheader_timeout_seconds = {HEADER_TIMEOUT}\n"
        f"body_timeout_seconds = {BODY_TIMEOUT}\n"))
    settings = load_settings(config)
    key = seed_credentials(settings)
    with server(config) as base:
        yield Server(base, settings, key, tmp / f"server-{base.rsplit(':', 1)[1]}.log")


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response (with a Content-Length) from `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole response head: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of a response body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def read_to_close(sock: socket.socket, within: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes; fail if it has not closed `within` seconds from now."""
    started, data = time.monotonic(), b""
    sock.settimeout(within)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        raise AssertionError(f"still open after {within} s; received {data!r}") from None
    except ConnectionResetError:
        pass  # closed, though less politely
    return data, time.monotonic() - started


def refused(data: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    return int(head.split()[1]), json.loads(body)


def test_a_head_over_the_limit_gets_431_and_the_connection_is_closed(limited):
    padding = "x" * (HEADER_LIMIT + 500)
    complete = f"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Pad: {padding}\r\n\r\n".encode()
    endless = f"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Pad: {padding}".encode()  # the head never ends
    huge = f"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Pad: {'y' * 5_000_000}\r\n\r\n".encode()
    for request in (complete, endless, huge):
        with limited.connect() as sock:
            sock.sendall(request)
            status, body = refused(read_to_close(sock, SLACK)[0])
        assert status == 431 and body["field"] == "headers" and str(HEADER_LIMIT) in str(body["detail"])
    many = "".join(f"X-H{i}: {'z' * 40}\r\n" for i in range(60))  # many small headers add up
    with limited.connect() as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: test\r\n{many}\r\n".encode())
        assert refused(read_to_close(sock, SLACK)[0])[0] == 431


def test_only_the_head_counts_towards_the_limit(limited):
    """A head just under the limit with a body several times the limit, in one write: accepted."""
    before = limited.stored()
    pad = "p" * (HEADER_LIMIT - 400)
    with limited.connect() as sock:
        sock.sendall(limited.post_case(CASE + b" " * (4 * HEADER_LIMIT), extra=f"X-Pad: {pad}\r\n"))
        status, _, body = read_response(sock)
    assert status == 201, body
    assert limited.stored() == before + 1


def test_a_half_sent_head_gets_408_within_the_timeout(limited):
    def half_sent(request: bytes) -> tuple[bytes, float]:
        with limited.connect() as sock:
            sock.sendall(request)
            return read_to_close(sock, HEADER_TIMEOUT + SLACK)

    with ThreadPoolExecutor(3) as pool:  # at once: each waits out the timeout
        results = list(pool.map(half_sent, [b"", b"POST /api/v1/cases HTTP/1.1\r\nHost: te", b"GET /heal"]))
    for data, took in results:
        status, body = refused(data)
        assert (status, body["field"]) == (408, "headers") and "header_timeout_seconds" in str(body["detail"])
        assert took >= HEADER_TIMEOUT - 0.2


def test_a_half_sent_body_gets_408_and_nothing_is_stored(limited):
    before = limited.stored()
    with limited.connect() as sock:
        sock.sendall(limited.post_case()[: -len(CASE) // 2])  # the head and half the body
        data, took = read_to_close(sock, BODY_TIMEOUT + SLACK)
    status, body = refused(data)
    assert (status, body["field"]) == (408, "body") and "body_timeout_seconds" in str(body["detail"])
    assert took >= BODY_TIMEOUT - 0.2
    time.sleep(0.5)  # the app has seen the disconnect by now
    assert limited.stored() == before
    log = limited.log.read_text()
    assert "Traceback" not in log and "unhandled error" not in log


def test_normal_requests_work_also_two_on_one_kept_alive_connection(limited):
    before = limited.stored()
    with limited.connect() as sock:
        for _ in range(2):
            sock.sendall(limited.post_case())
            status, headers, body = read_response(sock)
            assert status == 201, body
            assert json.loads(body)["status"] == "decided" and headers.get("connection") != "close"
        # The next request's head has header_timeout_seconds from the previous response, not forever.
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        status, body = refused(read_to_close(sock, HEADER_TIMEOUT + SLACK)[0])
        assert (status, body["field"]) == (408, "headers")
    assert limited.stored() == before + 2
    with limited.connect() as sock:  # an idle kept-alive connection is closed without an answer
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        assert read_response(sock)[0] == 200
        assert read_to_close(sock, HEADER_TIMEOUT + SLACK)[0] == b""


def data_segments_in(sock: socket.socket) -> int:
    """TCP segments with data this socket has received (Linux's tcp_info.tcpi_data_segs_in, at byte 152)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_INFO", 11), 256)
    if len(info) < 156:
        pytest.skip("tcp_info without tcpi_data_segs_in (Linux 4.6 or later)")
    return int.from_bytes(info[152:156], "little")


def test_each_answer_goes_out_as_one_send_and_large_or_closing_ones_whole(limited):
    """serving.OneSendPerTick: uvicorn writes a response's head and body separately; they leave as one segment.
    A batch answer over the flush size, and an answer on a connection the client asked to close, arrive whole."""
    with limited.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        before = data_segments_in(sock)
        for _ in range(20):
            sock.sendall(limited.post_case())
            assert read_response(sock)[0] == 201
        assert data_segments_in(sock) - before == 20  # 40 when the head and the body are sent apart
        cases = json.dumps({"cases": [{"features": SETOSA} for _ in range(1000)]}).encode()
        sock.sendall(f"POST /api/v1/batches HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {limited.key}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(cases)}\r\n\r\n".encode() + cases)
        status, _, body = read_response(sock)
        assert status == 200 and len(body) > 65_536
        assert [r["status"] for r in json.loads(body)["results"]] == [201] * 1000
    with limited.connect() as sock:
        sock.sendall(limited.post_case(extra="Connection: close\r\n"))
        data, _ = read_to_close(sock, SLACK)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201") and json.loads(body)["status"] == "decided"


@pytest.mark.slow
def test_workers_enforce_the_configured_limits_and_keep_alive(tmp_path):
    """--workers 2 spawns processes that read the limits themselves (defaults would pass none of this)."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'd.db'}", extra=(
        "[server]\nheader_limit_bytes = 1024\nheader_timeout_seconds = 60\nkeep_alive_seconds = 1\n"))
    settings = load_settings(config)
    key = seed_credentials(settings)
    with server(config, args=("--workers", "2"), seconds=120) as base:
        s = Server(base, settings, key, tmp_path / "unused.log")

        def check(_: int) -> None:
            with s.connect() as sock:  # a head of 1,500 bytes: over 1024, far under the default 16384
                sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Pad: {'x' * 1500}\r\n\r\n".encode())
                assert refused(read_to_close(sock, SLACK)[0])[0] == 431
            with s.connect() as sock:  # keep_alive_seconds = 1 reaches uvicorn (its default is 5)
                sock.sendall(s.post_case())
                assert read_response(sock)[0] == 201
                assert read_to_close(sock, 1 + 2)[0] == b""  # 3 s: less than the default 5

        with ThreadPoolExecutor(6) as pool:  # new connections, spread by the kernel over both workers
            list(pool.map(check, range(6)))
        assert s.stored() == 6
