"""Fast MIME encoding: the pieces of a message as bytes, with C-speed encoders.

`email.message.EmailMessage` costs about 2 ms a message, more than rendering
and sending together; a campaign's messages differ only in a few headers and
the two bodies, so the structure is laid out once and each message is joined
from pre-encoded pieces. Every function here emits only printable ASCII with
CRLF line ends (header folding included), so no caller can smuggle a line
break into a header. `tests/test_mime.py` proves the bytes parse back, with
the standard library's parser, to exactly what went in.
"""

from __future__ import annotations

import binascii
import re
import secrets

CRLF = "\r\n"
# Quoted-printable and base64 output never contain "=_", so a boundary that
# starts with it can never occur inside an encoded part (RFC 2045, 2046).
BOUNDARY_PREFIX = "=_nl"

_ATEXT_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
_WORD_BYTES = 45  # 45 bytes -> 60 base64 characters -> a 72-character encoded word


def new_boundary() -> str:
    return f"{BOUNDARY_PREFIX}{secrets.token_hex(12)}"


def encoded_words(text: str) -> str:
    """RFC 2047 'B' encoded words of UTF-8, never splitting a character, folded with CRLF SP."""
    words: list[str] = []
    chunk = bytearray()
    for char in text:
        data = char.encode("utf-8")
        if len(chunk) + len(data) > _WORD_BYTES:
            words.append(_word(bytes(chunk)))
            chunk.clear()
        chunk += data
    if chunk or not words:
        words.append(_word(bytes(chunk)))
    return (CRLF + " ").join(words)


def _word(data: bytes) -> str:
    return "=?utf-8?b?" + binascii.b2a_base64(data, newline=False).decode("ascii") + "?="


def phrase(name: str) -> str:
    """A display name: as it is when plain, quoted when it has specials, encoded when not ASCII."""
    if not name:
        return ""
    if _ATEXT_PHRASE.fullmatch(name) and "=?" not in name and name.strip() == name:
        return name
    if _PRINTABLE_ASCII.fullmatch(name) and "=?" not in name:
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return encoded_words(name)


def mailbox(name: str, address: str) -> str:
    """`Name <address>`, or the bare address when there is no name."""
    shown = phrase(name)
    return f"{shown} <{address}>" if shown else address


def unstructured(text: str, *, used: int) -> str:
    """An unstructured header value (Subject): folded at spaces, encoded when not plain ASCII.

    `used` is the length of `Name: ` already on the first line.
    """
    if _PRINTABLE_ASCII.fullmatch(text) and "=?" not in text:
        return _fold(text, used)
    return encoded_words(text)


def _fold(text: str, used: int, width: int = 78) -> str:
    lines: list[str] = []
    line = ""
    room = width - used
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if len(candidate) > room and line:
            lines.append(line)
            line, room = word, width - 1
        else:
            line = candidate
    lines.append(line)
    return (CRLF + " ").join(lines)


def header(name: str, value: str) -> bytes:
    """One header line; the value must already be encoded by a function of this module."""
    unfolded = value.replace(CRLF + " ", "")
    if "\r" in unfolded or "\n" in unfolded or "\0" in unfolded:
        raise ValueError(f"line break or NUL in the {name} header")
    return f"{name}: {value}{CRLF}".encode("ascii")


_QP_BLOCKS: dict[bytes, bytes] = {}
_QP_CACHE_LIMIT = 20_000
_QP_BLOCK_LINES = 16


def quoted_printable(text: str) -> bytes:
    """UTF-8 text as quoted-printable with CRLF line ends, ending in CRLF.

    Quoted-printable is line-local (soft breaks never cross a hard line break), so
    the text is encoded in blocks of lines and each block is remembered: the blocks
    of a campaign's layout repeat in every message, and only those holding a
    personalised line cost anything. binascii's encoder alone takes ~10 ns a byte,
    more than the rest of building a message. The lines are split as UTF-8 bytes:
    CR and LF never occur inside a multi-byte sequence, and bytes split and join
    several times faster than a string with a single non-ASCII character in it.
    """
    data = text.encode("utf-8")
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    lines = data.split(b"\n")
    if len(lines) > 1 and lines[-1] == b"":
        lines.pop()  # the text ended with a line break: no empty last line
    cache = _QP_BLOCKS
    if len(cache) > _QP_CACHE_LIMIT:
        cache.clear()
    encoded = []
    for start in range(0, len(lines), _QP_BLOCK_LINES):
        block = b"\r\n".join(lines[start : start + _QP_BLOCK_LINES])
        chunk = cache.get(block)
        if chunk is None:
            chunk = cache[block] = binascii.b2a_qp(block + b"\r\n", istext=True)
        encoded.append(chunk)
    return b"".join(encoded)


def text_part(subtype: str, text: str) -> bytes:
    """A complete text/* part: headers, blank line, quoted-printable UTF-8 body."""
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"{CRLF}Content-Transfer-Encoding: quoted-printable{CRLF}{CRLF}'
    ).encode("ascii") + quoted_printable(text)


def multipart(subtype: str, parts: list[bytes], boundary: str, *, params: str = "") -> bytes:
    """A multipart entity (its Content-Type header, blank line, and the parts between boundaries).

    `params` are extra Content-Type parameters, already formatted (`type="text/html"`).
    """
    extra = f"{CRLF} {params};" if params else ""
    head = f'Content-Type: multipart/{subtype};{extra}{CRLF} boundary="{boundary}"{CRLF}{CRLF}'.encode("ascii")
    delimiter = f"--{boundary}{CRLF}".encode("ascii")
    closing = f"--{boundary}--{CRLF}".encode("ascii")
    # The CRLF before each boundary belongs to the delimiter, not to the part (RFC 2046 5.1.1).
    body = b"".join(delimiter + part + (b"\r\n" if part.endswith(b"\r\n") else b"\r\n\r\n") for part in parts)
    return head + body + closing
