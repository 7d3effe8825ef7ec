"""The fast MIME pieces parse back, with the standard library's parser, to exactly what went in."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import parseaddr

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.message import mime
from newsletter.message.builder import display_name

# Names and subjects as they reach the builder: control characters already folded away.
texts = (
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), min_size=1, max_size=120
    )
    .map(display_name)
    .filter(bool)
)
bodies = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\x00"), max_size=400)


def parse(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def reference(name: str, subject: str, text: str = "", html: str | None = None) -> EmailMessage:
    """The same message built by the standard library, parsed back: what ours must equal."""
    message = EmailMessage(policy=policy.SMTP)
    message["To"] = Address(display_name=name, addr_spec="reader@example.org")
    message["Subject"] = subject
    message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    if html is not None:
        message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return parse(message.as_bytes())


@settings(max_examples=200, deadline=None)
@given(name=texts, subject=texts)
def test_headers_parse_like_the_standard_librarys(name: str, subject: str) -> None:
    data = (
        mime.header("To", mime.mailbox(name, "reader@example.org"))
        + mime.header("Subject", mime.unstructured(subject, used=len("Subject: ")))
        + b"\r\n"
    )
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    ours, theirs = parse(data), reference(name, subject)
    assert ours["Subject"] == subject  # (the standard library's own output can fail this)
    assert ours["To"].addresses[0].addr_spec == "reader@example.org"
    # RFC 2047 drops the folding white space between adjacent encoded words; the
    # `email.header` decoder does so, while policy.default's parser inserts a space
    # there (for the standard library's own output too), so names that need several
    # words are checked with the strict decoder and the rest with both.
    raw_name = mime.phrase(name).replace("\r\n ", " ")
    if "=?" in raw_name:
        decoded = str(make_header(decode_header(raw_name)))
    else:  # plain or a quoted-string: the address parser unquotes it
        decoded = parseaddr(f"{raw_name} <reader@example.org>")[0]
    assert decoded == name
    if len(name.encode()) <= 45:
        assert ours["To"].addresses == theirs["To"].addresses


@pytest.mark.parametrize(
    "name",
    ["Анна Петрова", "Ivanova, Elena", 'Say "hi"', "Back\\slash", "=?utf-8?b?QQ==?=", "O'Brien", "x" * 200],
)
def test_awkward_names(name: str) -> None:
    data = mime.header("To", mime.mailbox(name, "r@example.org")) + b"\r\n"
    assert parse(data)["To"].addresses[0].display_name == name


def test_header_refuses_raw_line_breaks() -> None:
    with pytest.raises(ValueError, match="line break"):
        mime.header("Subject", "hello\r\nBcc: victim@example.org")


@settings(max_examples=200, deadline=None)
@given(text=bodies, html=bodies)
def test_alternative_bodies_round_trip(text: str, html: str) -> None:
    boundary = mime.new_boundary()
    entity = mime.multipart("alternative", [mime.text_part("plain", text), mime.text_part("html", html)], boundary)
    message = parse(b"MIME-Version: 1.0\r\n" + entity)
    theirs = reference("", "s", text, html)
    assert message.get_content_type() == theirs.get_content_type() == "multipart/alternative"
    for ours_part, their_part in zip(message.iter_parts(), theirs.iter_parts(), strict=True):
        assert ours_part.get_content_type() == their_part.get_content_type()
        assert ours_part.get_content_charset() == their_part.get_content_charset() == "utf-8"
        assert ours_part.get_content() == their_part.get_content()
    assert all(len(line) <= 78 for line in entity.split(b"\r\n"))



@settings(max_examples=300, deadline=None)
@given(text=bodies)
def test_line_cached_quoted_printable_equals_encoding_the_whole(text: str) -> None:
    import binascii

    whole = text.replace("\n", "\r\n").encode("utf-8")
    if not whole.endswith(b"\r\n"):
        whole += b"\r\n"
    assert mime.quoted_printable(text) == binascii.b2a_qp(whole, istext=True)
    assert mime.quoted_printable(text) == mime.quoted_printable(text)  # cached the second time
