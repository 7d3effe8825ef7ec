"""Finding 10 of the security review: the preview server's connections and the email frame.

A connection costs the server a thread: idle or dripping connections must be let go,
or a few hundred sockets hold a few hundred threads. A GET whose body holds a second
request must not have it served. The email shown must not call its sender's servers
(a remote image reports that, when and where the preview was opened) until the user
asks for remote content; the browser half of that is in tests/test_preview_browser.py.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter import project as api
from newsletter.inputs.folder import CampaignFolder
from newsletter.web.preview import LiveCampaign, PreviewServer, Source, running
from tests.test_preview_server import request, server

__all__ = ["server"]  # the fixture, shared with the preview tests



def _read_all(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def quick_server(campaign: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PreviewServer]:
    monkeypatch.setattr(PreviewServer, "idle_seconds", 1.0, raising=False)
    monkeypatch.setattr(PreviewServer, "request_seconds", 2.0, raising=False)
    source = Source(CampaignFolder(campaign), load=lambda: api.load_project(campaign, environ={}))
    with running(LiveCampaign(source)) as preview:
        yield preview


def _handler_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name.startswith("Thread-"))


def test_idle_connections_are_closed_and_their_threads_released(quick_server: PreviewServer) -> None:
    before = _handler_threads()
    idle = [socket.create_connection(("127.0.0.1", quick_server.port), timeout=10) for _ in range(60)]
    try:
        deadline = time.monotonic() + 5
        while _handler_threads() < before + 60 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _handler_threads() >= before + 60  # one thread each, while they are open
        assert request(quick_server, "/api/version").status == 200  # meanwhile, a request is answered
        started = time.monotonic()
        for sock in idle:
            assert _read_all(sock) == b""  # closed by the server, nothing sent
        assert time.monotonic() - started < 5
        deadline = time.monotonic() + 5
        while _handler_threads() > before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _handler_threads() <= before
    finally:
        for sock in idle:
            sock.close()
    assert request(quick_server, "/api/version").status == 200


def test_a_keep_alive_connection_is_closed_when_idle(quick_server: PreviewServer) -> None:
    with socket.create_connection(("127.0.0.1", quick_server.port), timeout=10) as sock:
        sock.sendall(f"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1:{quick_server.port}\r\n\r\n".encode())
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1") == 1


def test_a_request_dripping_in_is_cut_off(quick_server: PreviewServer) -> None:
    """Slowloris: one header byte every half second never lets the idle timeout fire."""
    with socket.create_connection(("127.0.0.1", quick_server.port), timeout=10) as sock:
        sock.sendall(f"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1:{quick_server.port}\r\n".encode())
        started = time.monotonic()
        closed = False
        for byte in b"X-Slow: " + b"a" * 40:
            try:
                sock.sendall(bytes([byte]))
                time.sleep(0.5)
                sock.setblocking(False)
                try:
                    closed = sock.recv(1) == b""
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
            except OSError:
                closed = True
            if closed:
                break
        assert closed, "the server kept a dripping request open"
        assert time.monotonic() - started < 6


@pytest.mark.parametrize(
    "framing",
    ["Content-Length: {n}\r\n", "Transfer-Encoding: chunked\r\n", "Content-Length: {n}\r\nContent-Length: 0\r\n"],
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_get_with_a_body_is_refused_not_served_as_a_second_request(
    server: PreviewServer, framing: str, method: str
) -> None:
    host = f"Host: 127.0.0.1:{server.port}\r\n"
    smuggled = f"GET /api/recipients HTTP/1.1\r\n{host}\r\n".encode()
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(smuggled), smuggled) if "chunked" in framing else smuggled
    head = f"{method} /api/version HTTP/1.1\r\n{host}{framing.format(n=len(body))}\r\n".encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + body)
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert answer.count(b"HTTP/1.1 ") == 1  # one answer, and the connection closed after it
    assert b"matches" not in answer and b"Connection: close" in answer


def test_a_get_with_an_empty_body_is_served(server: PreviewServer) -> None:
    answer = request(server, "/api/version", body=b"")
    assert answer.status == 200


def test_the_email_frame_loads_nothing_remote_unless_asked(server: PreviewServer) -> None:
    address = "pavel.novak@vse.example.com"
    blocked = request(server, f"/message.html?email={address}").headers["Content-Security-Policy"]
    allowed = request(server, f"/message.html?email={address}&remote=1").headers["Content-Security-Policy"]
    for csp in (blocked, allowed):
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if " " in d.strip())
        assert directives["default-src"] == "'none'" and "script-src" not in directives
        assert csp.startswith("sandbox ") and "allow-scripts" not in csp
    blocked_directives = {d.strip().split(" ", 1)[0]: d.strip() for d in blocked.split(";")}
    for name in ("img-src", "style-src", "font-src", "media-src"):
        assert "http:" not in blocked_directives[name] and "https:" not in blocked_directives[name], name
    allowed_directives = {d.strip().split(" ", 1)[0]: d.strip() for d in allowed.split(";")}
    for name in ("img-src", "style-src", "font-src", "media-src"):
        assert "https:" in allowed_directives[name], name

