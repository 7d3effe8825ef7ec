"""The SMTP conversation on the socket: strict replies, real deadlines, nothing read out of turn.

We own this small client instead of using smtplib's because the journal's promise
rests on matching every reply to the command it answers. smtplib reads a reply
line by line with a timeout per `recv`, takes a line without a code as code -1,
skips EHLO lines it cannot parse, and never notices a reply nobody asked for;
each of those let a relay make us record a message `sent` that never went out,
or send one twice. Here:

- a reply is complete lines of `ddd-text` ending in one `ddd text` with the same
  code; anything else (no code, a code out of 200-599, a changing code, an over-long
  or endless reply) is a `ProtocolError` and the connection is never used again;
- `timeout` bounds each whole reply, each connect and each TLS handshake, however
  slowly the relay drip-feeds its bytes (`ReplyTimeout`);
- bytes that arrive when no reply is due (an extra reply, or one meant for a
  command we did not send) are a `ProtocolError` found before the next command.

The policy (which replies a stage accepts, what a failure means for the journal)
lives in `newsletter.delivery.transports.smtp`.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from dataclasses import dataclass

MAX_LINE = 4096  # RFC 5321 allows 512 octets a reply line; real relays stay far below this
MAX_LINES = 200  # an EHLO reply of Postfix or Exchange has about a dozen
MIN_WRITE_RATE = 16384  # bytes a second: below this the relay is taken as not reading


class ProtocolError(Exception):
    """The relay broke the protocol: no later reply on this connection can be trusted."""


class ReplyTimeout(ProtocolError, TimeoutError):
    """No complete reply (or connect, or TLS handshake) within the deadline."""


class Closed(ProtocolError, ConnectionError):
    """The relay closed the connection."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete reply: its code and the text of each line."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()


def parse_line(line: bytes) -> tuple[int, bool, str]:
    """(code, last line of the reply?, text) of one reply line without its line ending.

    RFC 5321 4.2: three digits, then a space (last line), a hyphen (more follow) or
    nothing (a last line without text). Anything else is a protocol error.
    """
    if len(line) < 3 or not line[:3].isdigit() or not (b"2" <= line[:1] <= b"5"):
        raise ProtocolError(f"malformed reply line {_shown(line)}")
    separator = line[3:4]
    if separator not in (b"", b" ", b"-"):
        raise ProtocolError(f"malformed reply line {_shown(line)}")
    return int(line[:3]), separator != b"-", line[4:].decode("utf-8", "replace")


def _shown(line: bytes) -> str:
    return repr(line[:80].decode("utf-8", "replace"))


class Wire:
    """One connection's socket, with the reply reader. Not shared between threads."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout
        self._buffer = bytearray()

    # -- opening ------------------------------------------------------------------

    @classmethod
    def connect(cls, host: str, port: int, timeout: float) -> Wire:
        """A TCP connection within `timeout` (name lookup included)."""
        sock = socket.create_connection((host, port), timeout=timeout)
        # The message data and its final dot go out in separate writes (see `send_data`):
        # without NODELAY, Nagle's algorithm would hold the dot back for the peer's ACK.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock, timeout)

    def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        """Wrap the socket in TLS, the whole handshake bounded by the timeout."""
        if self._buffer or self._readable():
            raise ProtocolError("the relay sent data before the TLS handshake (a plaintext injection)")
        tls = context.wrap_socket(self.sock, server_hostname=server_hostname, do_handshake_on_connect=False)
        self.sock = tls
        # The ssl module turns a socket timeout into one deadline for the whole handshake.
        tls.settimeout(self.timeout)
        try:
            tls.do_handshake()
        except TimeoutError:
            raise ReplyTimeout(f"TLS handshake not finished within {self.timeout:g} s") from None

    # -- writing ------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Write `data` whole within the timeout, plus time for its size at a slow link's pace.

        sendall's timeout covers the whole call: a relay that stops reading fails it, and
        a big attachment over a slow uplink still gets the time it needs.
        """
        self.sock.settimeout(self.timeout + len(data) / MIN_WRITE_RATE)
        self.sock.sendall(data)

    # -- reading ------------------------------------------------------------------

    def reply(self) -> Reply:
        """The next complete reply, within the timeout whatever the pace of its bytes."""
        deadline = time.monotonic() + self.timeout
        code: int | None = None
        lines: list[str] = []
        while True:
            line = self._line(deadline)
            this, last, text = parse_line(line)
            if code is not None and this != code:
                raise ProtocolError(f"reply code changed from {code} to {this} within one reply")
            code = this
            lines.append(text)
            if last:
                return Reply(code, tuple(lines))
            if len(lines) >= MAX_LINES:
                raise ProtocolError(f"a reply of more than {MAX_LINES} lines")

    def _line(self, deadline: float) -> bytes:
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line[:-1] if line.endswith(b"\r") else line
            start = len(self._buffer)
            if start > MAX_LINE:
                raise ProtocolError(f"a reply line longer than {MAX_LINE} bytes")
            self._fill(deadline)

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ReplyTimeout(f"no complete reply within {self.timeout:g} s")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise ReplyTimeout(f"no complete reply within {self.timeout:g} s") from None
        if not chunk:
            raise Closed("the relay closed the connection")
        self._buffer += chunk

    def expect_silence(self) -> None:
        """Raise ProtocolError if the relay has sent anything nobody asked for.

        Called before each new command group: a reply that arrives out of turn would
        otherwise be read as the answer to the next command, one step late for ever.
        """
        if not self._buffer and self._readable():
            self.sock.settimeout(0.001)
            try:
                chunk = self.sock.recv(4096)
            except (TimeoutError, ssl.SSLWantReadError):
                chunk = None  # a TLS record without data (a session ticket): nothing was said
            if chunk == b"":
                raise Closed("the relay closed the connection")
            self._buffer += chunk or b""
        if self._buffer:
            raise ProtocolError(f"unexpected data from the relay: {_shown(bytes(self._buffer))}")

    def _readable(self) -> bool:
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return bool(readable)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
