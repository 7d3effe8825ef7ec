"""The reply reader on a real socket pair: strict lines, one deadline per reply, nothing out of turn."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.delivery.transports.smtp import ehlo_features
from newsletter.delivery.transports.wire import Closed, ProtocolError, Reply, ReplyTimeout, Wire, parse_line


@pytest.fixture
def pair() -> Iterator[tuple[Wire, socket.socket]]:
    ours, theirs = socket.socketpair()
    wire = Wire(ours, timeout=1.0)
    yield wire, theirs
    wire.close()
    theirs.close()


def test_a_multiline_reply_is_read_whole(pair: tuple[Wire, socket.socket]) -> None:
    wire, relay = pair
    relay.sendall(b"250-relay.test\r\n250-PIPELINING\r\n250 SIZE 100\r\n")
    assert wire.reply() == Reply(250, ("relay.test", "PIPELINING", "SIZE 100"))


@pytest.mark.parametrize(
    "data",
    [b"ok\r\n", b"25\r\n", b"2500 x\r\n", b"250_x\r\n", b"650 x\r\n", b"150 x\r\n", b"250-a\r\n251 b\r\n"],
)
def test_malformed_replies_are_protocol_errors(pair: tuple[Wire, socket.socket], data: bytes) -> None:
    wire, relay = pair
    relay.sendall(data)
    with pytest.raises(ProtocolError):
        wire.reply()


def test_the_deadline_covers_the_whole_reply_not_each_byte(pair: tuple[Wire, socket.socket]) -> None:
    wire, relay = pair

    def drip() -> None:
        for byte in b"250 ok, slowly\r\n":
            time.sleep(0.2)
            try:
                relay.send(bytes([byte]))
            except OSError:
                return

    threading.Thread(target=drip, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(ReplyTimeout):
        wire.reply()
    assert time.monotonic() - started < 1.5


def test_a_reply_nobody_asked_for_is_found_before_the_next_command(pair: tuple[Wire, socket.socket]) -> None:
    wire, relay = pair
    relay.sendall(b"250 one\r\n250 extra\r\n")
    assert wire.reply().code == 250
    with pytest.raises(ProtocolError, match="unexpected data"):
        wire.expect_silence()


def test_silence_is_silence_and_a_close_is_a_close(pair: tuple[Wire, socket.socket]) -> None:
    wire, relay = pair
    wire.expect_silence()
    relay.close()
    with pytest.raises(Closed):
        wire.expect_silence()


def test_ehlo_lines_that_are_not_extensions_are_refused() -> None:
    assert ehlo_features(Reply(250, ("relay", "PIPELINING", "SIZE 10", "AUTH=LOGIN PLAIN", ""))) == {
        "pipelining": "",
        "size": "10",
        "auth": "LOGIN PLAIN",
    }
    with pytest.raises(ProtocolError):
        ehlo_features(Reply(250, ("relay", "PIPE LINING?", "(garbage)")))


@given(st.binary(max_size=40))
def test_parse_line_accepts_exactly_the_rfc_shape(line: bytes) -> None:
    shaped = len(line) >= 3 and line[:3].isdigit() and 2 <= line[0] - 48 <= 5 and line[3:4] in (b"", b" ", b"-")
    try:
        code, last, _ = parse_line(line)
    except ProtocolError:
        assert not shaped
    else:
        assert shaped and code == int(line[:3]) and last == (line[3:4] != b"-")
