"""A real SMTP server for tests: aiosmtpd's Controller on 127.0.0.1 with scriptable faults.

The handler records every accepted message and can refuse (per address, a
sequence of replies such as 451 then 250), drop the connection after N
messages or right after DATA without replying, stall past the client's
timeout, or answer 421.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Behaviour:
    """What the server does; tests change it while the server runs."""

    replies: dict[str, list[str]] = field(default_factory=dict)  # rcpt -> replies, used in turn
    mail_reply: list[str] = field(default_factory=list)  # replies to MAIL, used in turn
    drop_after_messages: int | None = None  # drop the connection at the MAIL after this many 250s on it
    drop_after_data: set[str] = field(default_factory=set)  # rcpt: close without replying to DATA
    stall_data: float = 0.0  # seconds to wait before replying to DATA
    stall_rcpt: dict[str, float] = field(default_factory=dict)
    pipelining: bool = True  # advertise RFC 2920 PIPELINING (the client's fast path)


class Recorder:
    """The aiosmtpd handler: records messages, applies the Behaviour."""

    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.behaviour = Behaviour()
        self.lock = threading.Lock()
        self.connections = 0
        self.rcpt_commands = 0
        self.logins: list[tuple[str, str]] = []
        self._per_connection: dict[int, int] = {}

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.behaviour.pipelining:  # aiosmtpd reads pipelined commands fine; it just doesn't say so
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        drop = self.behaviour.drop_after_messages
        if drop is not None and self._per_connection.get(id(server), 0) >= drop:
            # Drop at the start of the next transaction: deterministic, and before any
            # data, so the client must retry the message on a new connection.
            server.transport.abort()
            return "421 never seen"
        with self.lock:
            reply = self.behaviour.mail_reply.pop(0) if self.behaviour.mail_reply else None
        if reply is not None and not reply.startswith("250"):
            if reply.startswith("421"):
                await server.push(reply)
                server.transport.close()
                return "421 closing"
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        stall = self.behaviour.stall_rcpt.get(address)
        if stall:
            await asyncio.sleep(stall)
        with self.lock:
            self.rcpt_commands += 1
            queue = self.behaviour.replies.get(address)
            reply = queue.pop(0) if queue else None
        if reply is not None and not reply.startswith("250"):
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        rcpts = set(envelope.rcpt_tos)
        if self.behaviour.stall_data:
            await asyncio.sleep(self.behaviour.stall_data)
        if rcpts & self.behaviour.drop_after_data:
            # The data arrived; the client never hears whether it was accepted.
            with self.lock:
                self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
            server.transport.abort()
            return "250 never seen"
        with self.lock:
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
            key = id(server)
            self._per_connection[key] = self._per_connection.get(key, 0) + 1
        return "250 Message accepted for delivery"

    def by_recipient(self) -> dict[str, list[Received]]:
        result: dict[str, list[Received]] = {}
        with self.lock:
            for received in self.messages:
                for rcpt in received.rcpt_tos:
                    result.setdefault(rcpt, []).append(received)
        return result


@dataclass
class Server:
    host: str
    port: int
    recorder: Recorder
    ca_file: Path | None = None

    @property
    def messages(self) -> list[Received]:
        return self.recorder.messages

    @property
    def behaviour(self) -> Behaviour:
        return self.recorder.behaviour

    def env(self, **extra: str) -> dict[str, str]:
        """Settings for the newsletter under test to reach this server."""
        values = {"SMTP_HOST": self.host, "SMTP_PORT": str(self.port), "SMTP_TIMEOUT": "5"}
        if self.ca_file is not None:
            values["SMTP_CA_FILE"] = str(self.ca_file)
            values["SMTP_SECURITY"] = "starttls"
        else:
            values["SMTP_SECURITY"] = "none"
        values.update(extra)
        return values


def authenticator(recorder: Recorder, auth: dict[str, str], failure: str | None = None) -> Any:
    """An aiosmtpd authenticator that records each login and accepts the pairs in `auth`."""

    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = data.login.decode(), data.password.decode()
        recorder.logins.append((login, password))
        if auth.get(login) == password:
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False, message=failure)

    return check


@contextmanager
def running_server(
    *,
    tls: Any = None,
    ca_file: Path | None = None,
    auth: dict[str, str] | None = None,
    smtputf8: bool = False,
    data_size_limit: int | None = 33554432,
    hostname: str = "localhost",
) -> Iterator[Server]:
    """Start a recording server; `tls` is a server SSLContext offered via STARTTLS."""
    recorder = Recorder()
    kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8, "data_size_limit": data_size_limit}
    if tls is not None:
        kwargs["tls_context"] = tls
        kwargs["require_starttls"] = True
    if auth is not None:
        kwargs["authenticator"] = authenticator(recorder, auth)
        kwargs["auth_require_tls"] = tls is not None
        kwargs["auth_required"] = True
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, server_hostname=hostname, **kwargs)
    controller.start()
    try:
        yield Server("127.0.0.1", port, recorder, ca_file)
    finally:
        controller.stop()
