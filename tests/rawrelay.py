"""A relay that misbehaves on purpose: raw sockets on 127.0.0.1, one thread per connection.

aiosmtpd always answers correctly; the faults that broke the journal's promise are
replies a correct server never sends (250 where 354 is due, a line without a code,
an extra reply, none at all, a reply drip-fed byte by byte). This server plays a
script of such faults and records what it really accepted: a message counts as
delivered the moment its final dot arrives and the script says the relay keeps
it, whatever it answers afterwards. That record is the truth the tests hold the
journal to.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

# What the relay does at the final dot: (keeps the message?, what it answers).
END_FAULTS: dict[str, bool] = {
    "good": True,  # 250
    "nocode": True,  # keeps it, answers a line without a code
    "extra": True,  # 250, then a second 250 nobody asked for
    "silent": True,  # keeps it, never answers
    "drip": True,  # keeps it, answers one byte at a time, slower than the deadline
    "delay": True,  # 250 after a short pause, within the deadline
    "close_after": True,  # keeps it, closes without answering
    "refuse5": False,  # 550
    "refuse4": False,  # 451
    "close_before": False,  # closes without keeping it
}
# Faults before the data: the relay never gets the message.
EARLY_FAULTS = ("data250", "mail_nocode", "rcpt_extra")
FAULTS = (*END_FAULTS, *EARLY_FAULTS)


@dataclass
class Relay:
    port: int
    faults: deque[str]  # one per transaction, in turn; "good" when used up
    greetings: deque[str] = field(default_factory=deque)  # per connection: "good", "ehlo_bad", "greeting_bad"
    drip_pause: float = 0.3
    delivered: list[str] = field(default_factory=list)  # recipients, in order of arrival
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_fault(self) -> str:
        with self.lock:
            return self.faults.popleft() if self.faults else "good"

    def next_greeting(self) -> str:
        with self.lock:
            return self.greetings.popleft() if self.greetings else "good"

    @property
    def env(self) -> dict[str, str]:
        return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.port), "SMTP_SECURITY": "none", "SMTP_TIMEOUT": "1"}


class _Connection:
    def __init__(self, relay: Relay, sock: socket.socket) -> None:
        self.relay = relay
        self.sock = sock
        self.buffer = b""

    def line(self) -> bytes | None:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def say(self, text: str) -> None:
        self.sock.sendall(text.encode())

    def serve(self) -> None:
        greeting = self.relay.next_greeting()
        self.say("22O not a greeting\r\n" if greeting == "greeting_bad" else "220 relay.test ESMTP\r\n")
        recipient, fault = "", "good"
        while (line := self.line()) is not None:
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                bad = "PIPELINING\r\n" if greeting == "ehlo_bad" else ""
                self.say(f"250-relay.test\r\n{bad}250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 10000000\r\n")
            elif verb == b"MAIL":
                fault = self.relay.next_fault()
                self.say("ok\r\n" if fault == "mail_nocode" else "250 2.1.0 ok\r\n")
            elif verb == b"RCPT":
                recipient = line.decode().split("<", 1)[1].split(">", 1)[0]
                self.say("250 2.1.5 ok\r\n250 2.1.5 again\r\n" if fault == "rcpt_extra" else "250 2.1.5 ok\r\n")
            elif verb == b"DATA":
                if fault == "data250":
                    self.say("250 2.0.0 ok\r\n")
                    continue
                self.say("354 go ahead\r\n")
                if not self.data(recipient, fault):
                    return
            elif verb == b"RSET":
                self.say("250 ok\r\n")
            elif verb == b"QUIT":
                self.say("221 bye\r\n")
                return
            else:
                self.say("502 unknown command\r\n")

    def data(self, recipient: str, fault: str) -> bool:
        """Read the message to its final dot and play `fault`; False when the connection ends."""
        while (line := self.line()) != b".":
            if line is None:
                return False
        if fault not in END_FAULTS:  # an early fault the client did not notice: refuse the data
            self.say("554 5.0.0 transaction failed\r\n")
            return True
        if END_FAULTS[fault]:
            with self.relay.lock:
                self.relay.delivered.append(recipient)
        if fault in ("good", "extra", "delay"):
            if fault == "delay":
                time.sleep(0.2)
            self.say("250 2.0.0 queued\r\n250 2.0.0 queued again\r\n" if fault == "extra" else "250 2.0.0 queued\r\n")
        elif fault == "nocode":
            self.say("queued\r\n250 2.0.0 queued\r\n")
        elif fault == "refuse5":
            self.say("550 5.1.1 no such user\r\n")
        elif fault == "refuse4":
            self.say("451 4.3.0 try later\r\n")
        elif fault == "drip":
            for byte in "250 2.0.0 queued\r\n":
                time.sleep(self.relay.drip_pause)
                self.say(byte)
        elif fault == "silent":
            time.sleep(3)
            return False
        else:  # close_after, close_before
            return False
        return True


@contextmanager
def misbehaving_relay(faults: Iterable[str] = (), greetings: Iterable[str] = ()) -> Iterator[Relay]:
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    relay = Relay(listener.getsockname()[1], deque(faults), deque(greetings))
    stopping = threading.Event()

    def handle(sock: socket.socket) -> None:
        with sock, suppress(OSError):
            _Connection(relay, sock).serve()

    def accept() -> None:
        while not stopping.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(sock,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        stopping.set()
        listener.close()
