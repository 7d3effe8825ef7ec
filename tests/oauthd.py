"""Real OAuth counterparts for tests: an XOAUTH2 SMTP server and an HTTPS token endpoint, both on 127.0.0.1.

`xoauth2_server` is aiosmtpd with STARTTLS (the test CA) whose only AUTH mechanism
is XOAUTH2: it accepts the given user with the given tokens, answers anything else
with Google's refusal sequence (`334 <base64 JSON>`, the client's empty line, then
`535`), and can let a token expire after N messages (the connection using it is
then dropped at its next MAIL, and the token is refused from then on).

`token_endpoint` is an HTTPS server that answers form POSTs from a script of
JSON replies per path, recording every request's fields.
"""

from __future__ import annotations

import base64
import json
import shlex
import ssl
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tests.smtpd import Recorder, Server, free_port

REFUSAL = {"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"}


class XOAuth2Recorder(Recorder):
    def __init__(self, user: str, tokens: dict[str, int | None]) -> None:
        super().__init__()
        self.user = user
        self.tokens = dict(tokens)  # token -> messages it may still carry (None: no limit)
        self.attempts: list[str] = []  # every token tried, in order
        self.continuations: list[bytes] = []  # what the client answered to each 334 refusal

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> AuthResult:
        try:
            decoded = base64.b64decode(args[1], validate=True).decode()
            user_part, auth_part, _, _ = decoded.split("\x01")
            user, token = user_part.removeprefix("user="), auth_part.removeprefix("auth=Bearer ")
        except (IndexError, ValueError):
            await server.push("501 5.5.2 malformed XOAUTH2")
            return AuthResult(success=False, handled=True)
        with self.lock:
            self.attempts.append(token)
            allowed = token in self.tokens and self.tokens[token] != 0
        if user == self.user and allowed:
            return AuthResult(success=True, auth_data=token)
        answer = await server.challenge_auth(json.dumps(REFUSAL).encode(), encode_to_b64=True)
        self.continuations.append(answer if isinstance(answer, bytes) else b"<missing>")
        return AuthResult(success=False, handled=False, message="535 5.7.8 Username and Password not accepted")

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        token = session.auth_data
        with self.lock:
            expired = self.tokens.get(token, 0) == 0
        if expired:  # the token ran out while this connection was open: hang up, as a relay may
            server.transport.abort()
            return "421 never seen"
        reply: str = await super().handle_MAIL(server, session, envelope, address, options)
        return reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply: str = await super().handle_DATA(server, session, envelope)
        with self.lock:
            left = self.tokens.get(session.auth_data)
            if left is not None:
                self.tokens[session.auth_data] = left - 1
        return reply


@dataclass
class OAuthServer(Server):
    recorder: XOAuth2Recorder = field(default_factory=lambda: XOAuth2Recorder("", {}))


@contextmanager
def xoauth2_server(
    tls: ssl.SSLContext, ca_file: Path, *, user: str, tokens: dict[str, int | None]
) -> Iterator[OAuthServer]:
    recorder = XOAuth2Recorder(user, tokens)
    port = free_port()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        server_hostname="localhost",
        tls_context=tls,
        require_starttls=True,
        auth_require_tls=True,
        auth_required=True,
        auth_exclude_mechanism=["PLAIN", "LOGIN"],
    )
    controller.start()
    try:
        yield OAuthServer("127.0.0.1", port, recorder, ca_file)
    finally:
        controller.stop()


def token_command(folder: Path, tokens: list[str], *, extra: str = "") -> str:
    """A command that prints `tokens` in turn, one per run (the last one again when they run out);
    its runs are counted in `runs` beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "token.py"
    script.write_text(
        "import pathlib, sys\n"
        f"here = pathlib.Path({str(folder)!r})\n"
        f"tokens = {tokens!r}\n"
        "runs = here / 'runs'\n"
        "n = int(runs.read_text()) if runs.exists() else 0\n"
        "runs.write_text(str(n + 1))\n"
        f"{extra}\n"
        "print(tokens[min(n, len(tokens) - 1)])\n",
        encoding="utf-8",
    )
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"


def command_runs(folder: Path) -> int:
    runs = folder / "runs"
    return int(runs.read_text()) if runs.exists() else 0


@dataclass
class Endpoint:
    port: int
    answers: dict[str, list[tuple[int, dict[str, Any]]]]  # path -> (status, JSON) in turn; the last repeats
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"


@contextmanager
def token_endpoint(tls: ssl.SSLContext, answers: dict[str, list[tuple[int, dict[str, Any]]]]) -> Iterator[Endpoint]:
    endpoint = Endpoint(0, answers)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            fields = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            with lock:
                endpoint.requests.append((self.path, fields))
                queue = endpoint.answers.get(self.path) or [(404, {"error": "not_found"})]
                status, body = queue.pop(0) if len(queue) > 1 else queue[0]
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    endpoint.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()
