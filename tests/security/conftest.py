"""Helpers for the adversarial suite: small campaigns with hostile parts, servers that
count what reached them, and the CLI run the way a user runs it.

Everything here is real: files in tmp_path, aiosmtpd servers on 127.0.0.1, the
installed `newsletter` package in a subprocess where the whole process's output
matters (secrets).
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from click.testing import Result

from newsletter.inputs.settings import KNOWN_SETTINGS
from tests.conftest import invoke
from tests.smtpd import Recorder, Server, authenticator, free_port

FRONT = """\
+++
id = "security-test"
subject = "{subject}"
from = "Research Institute <research@example.org>"
title = "A Book"
{extra}
+++

{body}
"""


def make_campaign(
    folder: Path,
    *,
    html: str = "<html><body><p>Dear {{ recipient.name }}, {{ campaign.title }}</p>{{ campaign.body }}</body></html>",
    text: str | None = "Dear {{ recipient.name }}, {{ campaign.title }}\n",
    subject: str = "News for you",
    extra: str = "",
    body: str = "The body.",
    csv: str = "email,name\nann@example.org,Ann\nbob@example.org,Bob\n",
) -> Path:
    """A minimal campaign folder; each test replaces the part it attacks."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "announcement.md").write_text(
        FRONT.format(subject=subject, extra=extra, body=body), encoding="utf-8"
    )
    templates = folder / "templates"
    templates.mkdir(exist_ok=True)
    (templates / "announcement.html").write_text(html, encoding="utf-8")
    if text is not None:
        (templates / "announcement.txt").write_text(text, encoding="utf-8")
    (folder / "recipients.csv").write_text(csv, encoding="utf-8")
    return folder


def cli(campaign: Path, *args: str) -> Result:
    """The CLI in-process (click's runner), for one campaign; output is stdout + stderr."""
    return invoke("--campaign", str(campaign), *args)


def run(campaign: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The CLI as a separate process, with this machine's settings removed from its environment."""
    env = {k: v for k, v in os.environ.items() if k not in KNOWN_SETTINGS}
    env["PYTHONIOENCODING"] = "utf-8"
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "--campaign", str(campaign), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


class CountingRecorder(Recorder):
    """The shared recorder, plus a count of every MAIL command that reached the server."""

    def __init__(self) -> None:
        super().__init__()
        self.mail_commands = 0

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        with self.lock:
            self.mail_commands += 1
        reply: str = await super().handle_MAIL(server, session, envelope, address, options)
        return reply


@dataclass
class CountingServer(Server):
    recorder: CountingRecorder = field(default_factory=CountingRecorder)


@contextmanager
def serve(
    *,
    implicit_tls: ssl.SSLContext | None = None,
    starttls: ssl.SSLContext | None = None,
    ca_file: Path | None = None,
    auth: dict[str, str] | None = None,
    auth_failure_message: str | None = None,
    smtputf8: bool = False,
    data_size_limit: int | None = 33554432,
) -> Iterator[CountingServer]:
    """Like tests.smtpd.running_server, with implicit TLS, a MAIL counter and a custom AUTH refusal."""
    recorder = CountingRecorder()
    kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8, "data_size_limit": data_size_limit}
    if implicit_tls is not None:
        kwargs["ssl_context"] = implicit_tls
    if starttls is not None:
        kwargs["tls_context"] = starttls
        kwargs["require_starttls"] = True
    if auth is not None:
        kwargs["authenticator"] = authenticator(recorder, auth, auth_failure_message)
        # aiosmtpd only knows STARTTLS as "TLS": with implicit TLS the whole session is encrypted anyway.
        kwargs["auth_require_tls"] = starttls is not None
        kwargs["auth_required"] = True
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, server_hostname="localhost", **kwargs)
    controller.start()
    try:
        yield CountingServer("127.0.0.1", port, recorder, ca_file)
    finally:
        controller.stop()


@dataclass
class Listener:
    """A TCP listener on 127.0.0.1 that records every connection (and what was asked)."""

    port: int
    requests: list[bytes] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def listener() -> Iterator[Listener]:
    """Anything that fetches from it is caught: tests assert it saw zero connections."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(0.1)
    result = Listener(sock.getsockname()[1])
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(1)
                try:
                    result.requests.append(conn.recv(4096) or b"<connected>")
                except OSError:
                    result.requests.append(b"<connected>")
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/css\r\n\r\np{color:red}")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join(2)
        sock.close()


def header_block(data: bytes) -> bytes:
    """The raw header section of a message, as it went over the wire."""
    return data.split(b"\r\n\r\n", 1)[0]


def header_names(data: bytes) -> list[str]:
    """The name of every header line; continuation lines (folded) belong to the one above."""
    names = []
    for line in header_block(data).split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            continue
        names.append(line.split(b":", 1)[0].decode("ascii").lower())
    return names
