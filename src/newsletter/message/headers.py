"""Header values built from parts this tool has checked: mailboxes, names, list ids, list headers.

Header values are checked here, before Python's `email` package sees them: it
has had header-injection bugs of its own, so nothing with a line break or control
character is handed to it.

The list headers (`List-Unsubscribe`, `List-Id`) get a folding of their own: the
`email` package turns a word longer than a line, such as a signed unsubscribe
URL, into an RFC 2047 encoded-word, which no mailbox provider decodes inside
angle brackets, and one-click unsubscribe silently stops working. Their
encoded words come from `newsletter.message.mime`, like every other header's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.policy import Policy
from email.utils import getaddresses, parseaddr
from typing import ClassVar, Literal

from newsletter.errors import ConfigError
from newsletter.inputs.addresses import check_address
from newsletter.inputs.text import CONTROL
from newsletter.message import mime

_SPACES = re.compile(r"\s+")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LIST_ID = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})+")
_PHRASE_SPECIALS = re.compile(r'[()<>\[\]:;@\\,"]')


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A display name and an address, validated."""

    name: str
    address: str

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    def header(self) -> Address:
        return header_address(self.name, self.address)


def header_address(name: str, address: str) -> Address:
    """An `Address` for a header, built from its parts.

    `Address(addr_spec=...)` re-parses the address and refuses a non-ASCII local
    part (`иван@пример.рф`) even under an SMTPUTF8 policy; the parts are already
    validated by `check_address`, so they are handed over as they are.
    """
    username, _, domain = address.rpartition("@")
    return Address(display_name=name, username=username, domain=domain)


def parse_mailbox(text: str, *, where: str) -> Mailbox:
    """`Name <addr@example.org>` or a bare address, refused with `where` if malformed."""
    if CONTROL.search(text):
        raise ConfigError(f"{where}: contains a line break or control character")
    name, address = parseaddr(text)
    # parseaddr quietly keeps the first of `a@x.org, b@y.org` (CVE-2023-27043): one address only.
    if not address or len(getaddresses([text])) != 1:
        raise ConfigError(f"{where}: expected one 'Name <address@example.org>', got {text!r}")
    try:
        normalized, _ = check_address(address)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return Mailbox(display_name(name), normalized)


def display_name(text: str) -> str:
    """A name (or subject) fit for a header: whitespace and control characters folded to spaces.

    `=?` is split to `= ?`: the `email` package decodes RFC 2047 encoded-words in
    the values it is given and, before Python 3.11.10/3.12.5 (gh-121284), writes the
    decoded text back raw, so a name like `=?utf-8?q?=0D=0ABcc:_x?=` became a header.
    """
    return _SPACES.sub(" ", CONTROL.sub(" ", text)).strip().replace("=?", "= ?")


def ascii_domain(domain: str) -> str:
    """The domain as it may appear in Message-ID, Content-ID and List-Id: IDNA for non-ASCII."""
    if domain.isascii():
        return domain.lower()
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return "newsletter.invalid"


def valid_list_id(text: str) -> str:
    """An RFC 2919 list id (`label.namespace`, dot-atom, at most 255 octets); ValueError if not."""
    value = text.strip().strip("<>").strip()
    if not _LIST_ID.fullmatch(value) or len(value) > 255:
        raise ValueError(
            f"{text!r} is not a list id: expected ASCII like 'announcements.example.org' "
            "(letters, digits, '-', at least one dot, no spaces)"
        )
    return value


def list_id_header(list_id: str, name: str | None = None) -> str:
    """The `List-Id` value: an optional description phrase, then `<list_id>`."""
    if not name or not display_name(name):
        return f"<{list_id}>"
    phrase = display_name(name)
    if phrase.isascii() and _PHRASE_SPECIALS.search(phrase):
        phrase = '"' + phrase.replace("\\", "\\\\").replace('"', '\\"') + '"'
    elif not phrase.isascii():
        phrase = _PHRASE_SPECIALS.sub(" ", phrase)  # encoded-words cannot carry specials here
        phrase = display_name(phrase)
    return f"{phrase} <{list_id}>"


def fold_list_header(name: str, value: str, policy: Policy) -> str:
    """Fold only at spaces, never inside `<...>`; non-ASCII runs become RFC 2047 words.

    A URL too long for even a 998-octet line is the one exception: it is split
    inside its brackets, where RFC 2369 (section 2) says white space is ignored,
    rather than sent as a line the relay refuses (`500 Line too long`).
    """
    limit = policy.max_line_length or mime.LINE
    head = f"{name}:"
    lines = [head]

    def put(token: str) -> None:
        longer = len(lines[-1]) + 1 + len(token)
        if (longer > limit and lines[-1] != head) or len(lines[-1]) >= limit or longer > mime.HARD:
            lines.append("")  # after `Name:` too, for a token that only fits a line of its own
        lines[-1] += " " + token

    run: list[str] = []
    for word in [*value.split(" "), ""]:
        if word and not word.isascii():
            run.append(word)
            continue
        if run:  # one encoded run: the spaces between its words are encoded inside its words
            for encoded in mime.encoded_words(" ".join(run), used=len(lines[-1]) + 1).split(mime.CRLF + " "):
                put(encoded)
            run = []
        if not word:
            continue
        if len(word) + 1 <= mime.HARD:
            put(word)
        elif word.startswith("<"):
            for start in range(0, len(word), limit - 1):
                put(word[start : start + limit - 1])
        else:  # a description word longer than any line: encoded words may split it
            for encoded in mime.encoded_words(word, used=len(lines[-1]) + 1).split(mime.CRLF + " "):
                put(encoded)
    return policy.linesep.join(lines) + policy.linesep


class _ListHeader(UnstructuredHeader, BaseHeader):
    """`List-Id` / `List-Unsubscribe`: values this module built and checked, folded verbatim."""

    max_count: ClassVar[Literal[1] | None] = 1

    def fold(self, *, policy: Policy) -> str:
        return fold_list_header(self.name, str(self), policy)


_HEADERS = HeaderRegistry()
for _name in ("list-id", "list-unsubscribe", "list-unsubscribe-post"):
    _HEADERS.map_to_type(_name, _ListHeader)
ASCII_POLICY = policy.SMTP.clone(header_factory=_HEADERS)
UTF8_POLICY = policy.SMTPUTF8.clone(header_factory=_HEADERS)
