"""The preview web server: standard-library HTTP on 127.0.0.1, GET and HEAD only.

Nothing in a request is ever joined to a filesystem path: the page's own files
come from a fixed table of package resources and everything else is rendered
from the campaign, so there is nothing to traverse to. Requests whose Host is not
127.0.0.1 or localhost are refused, which keeps a web page on another site from
reaching the server through DNS rebinding. The email's HTML is served under a
Content-Security-Policy sandbox with no scripts, whatever the templates contain,
and with nothing fetched from elsewhere (images, CSS `url()`, fonts, media,
prefetches) until the page's "Load remote images" asks for it, as mail clients do.

A connection costs a thread, so none may be held for free: a connection idle for
`idle_seconds` is closed, and a request whose line and headers have not all
arrived `request_seconds` after the server started waiting for it is cut off,
however slowly its bytes drip in. A GET or HEAD carrying a body is refused and
its connection closed: the body is never read as a second request.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from newsletter.errors import InputError
from newsletter.web.preview.live import LiveCampaign, State
from newsletter.web.preview.views import message_payload, recipients_payload

HOST = "127.0.0.1"
ALLOWED_HOSTS = frozenset({"127.0.0.1", "localhost"})

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def email_csp(*, remote: bool) -> str:
    """The email frame's policy: never a script, a form or navigating the page around it.

    Nothing comes from another host (a remote image tells the sender that, when and
    from where the preview was opened) unless `remote`: the page's "Load remote
    images", as in an inbox. `default-src 'none'` covers what has no directive of
    its own here, prefetches included.
    """
    web = "http: https: " if remote else ""
    media = "http: https:" if remote else "'none'"
    return (
        "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; "
        f"img-src {web}data: cid:; style-src {web}'unsafe-inline'; font-src {web}data:; media-src {media}; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
    )


EMAIL_CSP = email_csp(remote=False)
EMAIL_CSP_REMOTE = email_csp(remote=True)
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
    "/static/icon.svg": ("icon.svg", "image/svg+xml"),
}


@dataclass
class Response:
    status: HTTPStatus
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


def json_response(data: Any, status: HTTPStatus = HTTPStatus.OK) -> Response:
    body = json.dumps(data, ensure_ascii=False).encode("utf-8")
    return Response(status, body, "application/json; charset=utf-8")


def problem(status: HTTPStatus, message: str) -> Response:
    return json_response({"error": {"kind": "http", "message": message}}, status)


def static_file(name: str) -> bytes:
    return (resources.files("newsletter.web.preview") / "static" / name).read_bytes()


Query = dict[str, list[str]]


def _param(query: Query, name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


class Routes:
    """The server's URLs, each a method over the live campaign."""

    def __init__(self, live: LiveCampaign) -> None:
        self.live = live
        self.table: dict[str, Callable[[Query], Response]] = {
            "/api/version": self.version,
            "/api/recipients": self.recipients,
            "/api/message": self.message,
            "/message.html": self.html,
            "/message.eml": self.eml,
        }

    def version(self, query: Query) -> Response:
        return json_response({"version": self.live.version()})

    def recipients(self, query: Query) -> Response:
        state = self.live.state()
        if state.index is None:  # the list could not be read: the page says so, not "no valid recipient"
            return json_response({"count": 0, "total": 0, "matches": [], "truncated": False, "unavailable": True})
        return json_response(recipients_payload(state.index, _param(query, "q") or ""))

    def _position(self, state: State, query: Query) -> int | None:
        """The wanted recipient's place in the list; the first one if the address is gone."""
        if state.index is None:
            return None
        position = state.index.find(_param(query, "email"))
        return state.index.find(None) if position is None else position

    def message(self, query: Query) -> Response:
        state = self.live.state()
        position = self._position(state, query)
        rendition = self.live.render(state, position) if position is not None else None
        folder = self.live.folder.resolve()
        payload = message_payload(state, rendition, self.live.campaign_findings(state), folder)
        return json_response(payload)

    def _rendition_data(self, query: Query) -> tuple[str, str, bytes] | Response:
        state = self.live.state()
        if state.index is None or (position := state.index.find(_param(query, "email"))) is None:
            return problem(HTTPStatus.NOT_FOUND, "no such recipient in the list")
        rendition = self.live.render(state, position)
        if rendition.error is not None:
            raise rendition.error
        assert rendition.rendered is not None and rendition.outgoing is not None
        return rendition.recipient.email, rendition.rendered.html, rendition.outgoing.data

    def html(self, query: Query) -> Response:
        found = self._rendition_data(query)
        if isinstance(found, Response):
            return found
        _, html, _ = found
        csp = EMAIL_CSP_REMOTE if _param(query, "remote") == "1" else EMAIL_CSP
        headers = {"Content-Security-Policy": csp}
        return Response(HTTPStatus.OK, html.encode("utf-8"), "text/html; charset=utf-8", headers)

    def eml(self, query: Query) -> Response:
        found = self._rendition_data(query)
        if isinstance(found, Response):
            return found
        email, _, data = found
        stem = re.sub(r"[^A-Za-z0-9@._+-]", "_", email)
        disposition = f"attachment; filename=\"{stem}.eml\"; filename*=UTF-8''{quote(stem)}.eml"
        return Response(HTTPStatus.OK, data, "message/rfc822", {"Content-Disposition": disposition})


class PreviewHandler(BaseHTTPRequestHandler):
    """One request: check the Host, route by exact path, answer with the security headers."""

    server: PreviewServer
    server_version = "newsletter-preview"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.idle_seconds)  # on every read: an idle client is let go

    def handle_one_request(self) -> None:
        self.server.deadlines.watch(self.connection, self.server.request_seconds)
        try:
            super().handle_one_request()
        finally:
            self.server.deadlines.forget(self.connection)

    def parse_request(self) -> bool:
        parsed = super().parse_request()  # reads the headers too: the request is in, however slowly
        self.server.deadlines.forget(self.connection)
        return parsed

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _has_body(self) -> bool:
        """A Content-Length other than 0, or any Transfer-Encoding: GET and HEAD carry no body here."""
        lengths = self.headers.get_all("Content-Length") or []
        return bool(self.headers.get_all("Transfer-Encoding")) or any(value.strip() != "0" for value in lengths)

    def _refuse_method(self) -> None:
        response = problem(HTTPStatus.METHOD_NOT_ALLOWED, "only GET and HEAD are allowed")
        response.headers["Allow"] = "GET, HEAD"
        self.close_connection = True
        self._send(response, head=False)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse_method

    def _host_allowed(self) -> bool:
        host = self.headers.get("Host", "")
        name, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
        return name.lower() in ALLOWED_HOSTS and port in ("", str(self.server.port))

    def _discard_input(self) -> None:
        """Read and drop what the client sent after the headers, briefly, so that closing the
        connection with unread bytes does not reset it before the refusal is read."""
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.settimeout(0.2)
            for _ in range(16):
                if not self.connection.recv(65536):
                    break

    def _route(self) -> Response:
        if not self._host_allowed():
            return problem(HTTPStatus.FORBIDDEN, "this server answers only to 127.0.0.1 and localhost")
        url = urlsplit(self.path)
        static = STATIC.get(url.path)
        if static is not None:
            name, content_type = static
            return Response(HTTPStatus.OK, static_file(name), content_type)
        route = self.server.routes.table.get(url.path)
        if route is None:
            return problem(HTTPStatus.NOT_FOUND, "not found")
        query = parse_qs(url.query, max_num_fields=10)
        try:
            return route(query)
        except InputError as exc:
            return json_response(
                {"error": {"kind": "input", "message": str(exc)}}, HTTPStatus.UNPROCESSABLE_ENTITY
            )

    def _answer(self, *, head: bool) -> None:
        if self._has_body():
            # Never read: whatever follows the headers could be taken for a second request.
            self.close_connection = True
            response = problem(HTTPStatus.BAD_REQUEST, "a GET or HEAD request must not carry a body")
            response.headers["Connection"] = "close"
            self._send(response, head=head)
            self._discard_input()
            return
        try:
            response = self._route()
        except Exception as exc:  # a bug must cost one request, not the preview
            response = problem(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")
        self._send(response, head=head)

    def _send(self, response: Response, *, head: bool) -> None:
        headers = {
            "Content-Type": response.content_type,
            "Content-Length": str(len(response.body)),
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cross-Origin-Resource-Policy": "same-origin",
            "Content-Security-Policy": PAGE_CSP,
            **response.headers,
        }
        try:
            self.send_response(response.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if not head:
                self.wfile.write(response.body)
        except ConnectionError:
            self.close_connection = True  # the page went away mid-answer; nothing to tell it

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the page polls every second and the terminal is the user's."""


class Deadlines:
    """Connections that must finish sending a request by a time; the server's loop cuts off the late."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._due: dict[socket.socket, float] = {}

    def watch(self, connection: socket.socket, seconds: float) -> None:
        with self._lock:
            self._due[connection] = time.monotonic() + seconds

    def forget(self, connection: socket.socket) -> None:
        with self._lock:
            self._due.pop(connection, None)

    def expire(self) -> int:
        """Shut down every connection past its time (its thread's read returns at once); how many."""
        now = time.monotonic()
        with self._lock:
            late = [connection for connection, due in self._due.items() if due <= now]
            for connection in late:
                del self._due[connection]
        for connection in late:
            with contextlib.suppress(OSError):  # already closed by its handler
                connection.shutdown(socket.SHUT_RDWR)
        return len(late)


class PreviewServer(ThreadingHTTPServer):
    """A threaded HTTP server bound to 127.0.0.1 only; `port=0` takes any free port."""

    daemon_threads = True
    address_family = socket.AF_INET
    request_queue_size = 128  # a page opening several requests at once is never refused
    idle_seconds = 5.0  # a connection waiting this long for its next byte is closed
    request_seconds = 10.0  # a request line and headers not all in by then are cut off

    def __init__(self, live: LiveCampaign, *, port: int = 0) -> None:
        self.routes = Routes(live)
        self.deadlines = Deadlines()
        super().__init__((HOST, port), PreviewHandler)

    def service_actions(self) -> None:
        """Called by `serve_forever` between requests and at least every poll interval."""
        super().service_actions()
        self.deadlines.expire()

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for the host's full name; loopback needs no lookup.
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()[:2]
        self.server_name = HOST
        self.server_port = self.server_address[1]

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def url_for(self, email: str | None) -> str:
        return self.url + (f"?email={quote(email, safe='@')}" if email else "")


@contextmanager
def running(live: LiveCampaign, *, port: int = 0) -> Iterator[PreviewServer]:
    """The server answering in a background thread until the block ends (tests, embedding)."""
    server = PreviewServer(live, port=port)
    # A short poll interval: shutdown() waits up to one interval for the loop to notice.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="newsletter-preview", daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
