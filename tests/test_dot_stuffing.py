"""Dot-stuffing by `bytes.replace` gives what the line-anchored regex of RFC 5321 4.5.2 gives."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.delivery.transports.smtp import dot_stuffed

PIECES = st.sampled_from([b".", b"..", b"\r\n", b"\n", b"\r", b"a", b" ", b"\r\n.\r\n"])


@settings(max_examples=2000, deadline=None)
@given(st.lists(PIECES, max_size=30).map(b"".join))
def test_dot_stuffing_equals_the_regex(data: bytes) -> None:
    assert dot_stuffed(data) == re.sub(rb"(?m)^\.", b"..", data)


def test_a_lone_dot_line_can_no_longer_end_the_data() -> None:
    assert dot_stuffed(b".hidden\r\n.\r\nafter\r\n") == b"..hidden\r\n..\r\nafter\r\n"
