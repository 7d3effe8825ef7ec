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
_TOKENS = re.compile(r"\S+\s*|\s+")  # a word with the spaces after it
LINE = 78  # RFC 5322 2.1.1: a line SHOULD be at most 78 characters...
HARD = 998  # ...and MUST be at most 998
_WORD_BYTES = 45  # 45 bytes -> 60 base64 characters -> a 72-character encoded word (RFC 2047: 75 at most)
_WORD_OVERHEAD = len("=?utf-8?b??=")
_FOLD = CRLF + " "


def new_boundary() -> str:
    return f"{BOUNDARY_PREFIX}{secrets.token_hex(12)}"


def _room(used: int) -> int:
    """How many bytes of text one encoded word may carry when `used` characters precede it."""
    return min(_WORD_BYTES, (LINE - used - _WORD_OVERHEAD) // 4 * 3)


def encoded_words(text: str, *, used: int = 0) -> str:
    """RFC 2047 'B' encoded words of UTF-8, one a line, folded with CRLF SP.

    A word ends between two words of the text where it can (the space stays inside
    the encoded word that it ends, as RFC 2047 6.2 asks), and otherwise between two
    characters, never inside one. `used` is how much of the first line is taken
    (`Subject: `): that line gets a shorter encoded word, so no line passes 78.
    """
    chunks: list[bytes] = []
    chunk = b""
    room = max(_room(used), 3)  # 3: a header name of 60+ characters still gets one character
    for token in _TOKENS.findall(text):
        data = token.encode("utf-8")
        if len(chunk) + len(data) <= room:
            chunk += data
            continue
        if chunk and len(data) <= _WORD_BYTES:  # the word fits the next encoded word: end this one here
            chunks.append(chunk)
            chunk, room = data, _WORD_BYTES
            continue
        for char in token:  # a word longer than an encoded word: split between characters
            piece = char.encode("utf-8")
            if len(chunk) + len(piece) > room and chunk:
                chunks.append(chunk)
                chunk, room = b"", _WORD_BYTES
            chunk += piece
    if chunk or not chunks:
        chunks.append(chunk)
    return _FOLD.join(_word(chunk) for chunk in chunks)


def _word(data: bytes) -> str:
    return "=?utf-8?b?" + binascii.b2a_base64(data, newline=False).decode("ascii") + "?="


def phrase(name: str, *, used: int = 0) -> str:
    """A display name: as it is when plain, quoted when it has specials, encoded when not ASCII.

    Plain and quoted names fold at their spaces (the unfolded header is the same
    text); a name with a word too long for any line is encoded instead, since
    encoded words are the only way to split a word. `used`: as in `encoded_words`.
    """
    if not name:
        return ""
    if _ATEXT_PHRASE.fullmatch(name) and "=?" not in name and name.strip() == name:
        shown = name
    elif _PRINTABLE_ASCII.fullmatch(name) and "=?" not in name:
        shown = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:
        return encoded_words(name, used=used)
    if used + len(shown) <= LINE:
        return shown
    return _fold(shown, used) or encoded_words(name, used=used)


def mailbox(name: str, address: str, *, used: int = 0) -> str:
    """`Name <address>`, or the bare address when there is no name; the address on a line of its own if need be."""
    shown = phrase(name, used=used)
    if not shown:
        return address
    last = shown.rpartition(_FOLD)
    width = (used if not last[0] else 1) + len(last[2])
    separator = " " if width + len(address) + 3 <= LINE else _FOLD
    return f"{shown}{separator}<{address}>"


def unstructured(text: str, *, used: int) -> str:
    """An unstructured header value (Subject): folded at spaces, encoded when not plain ASCII.

    `used` is the length of `Name: ` already on the first line. A plain word too
    long for even a 998-octet line is encoded (encoded words may split it).
    """
    if _PRINTABLE_ASCII.fullmatch(text) and "=?" not in text:
        folded = _fold(text, used)
        if folded:
            return folded
    return encoded_words(text, used=used)


def _fold(text: str, used: int, width: int = LINE) -> str:
    """`text` folded at single spaces into lines of at most `width`, where a space allows.

    A word longer than a line gets a line of its own. Empty when some line would
    still pass 998 octets: the caller encodes the text instead.
    """
    words = text.split(" ")
    lines: list[str] = []
    line = words[0]
    room = width - used
    for word in words[1:]:
        if word and line.strip() and len(line) + 1 + len(word) > room:
            lines.append(line)
            line, room = word, width - 1
        else:
            line = f"{line} {word}"
    lines.append(line)
    if used + len(lines[0]) > HARD or any(len(line) + 1 > HARD for line in lines[1:]):
        return ""
    return _FOLD.join(lines)


def header(name: str, value: str, *, utf8: bool = False) -> bytes:
    """One header line; the value must already be encoded by a function of this module.

    `utf8`: the value may hold raw UTF-8 (an SMTPUTF8 address, RFC 6532), still folded.
    """
    unfolded = value.replace(_FOLD, "")
    if "\r" in unfolded or "\n" in unfolded or "\0" in unfolded:
        raise ValueError(f"line break or NUL in the {name} header")
    return f"{name}: {value}{CRLF}".encode("utf-8" if utf8 else "ascii")


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
