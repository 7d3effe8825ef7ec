"""Building the RFC 5322 bytes of one message: headers and multipart/alternative.

Header values are checked here, before Python's `email` package sees them:
it has had header-injection bugs of its own, so nothing with a line break or
control character is handed to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

from newsletter.errors import ConfigError
from newsletter.recipients import Recipient, check_address
from newsletter.render import Rendered
from newsletter.unsubscribe import UnsubscribeLinks

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A display name and an address, validated."""

    name: str
    address: str

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    def header(self) -> Address:
        return Address(display_name=self.name, addr_spec=self.address)


def parse_mailbox(text: str, *, where: str) -> Mailbox:
    """`Name <addr@example.org>` or a bare address, refused with `where` if malformed."""
    if _CONTROL.search(text):
        raise ConfigError(f"{where}: contains a line break or control character")
    name, address = parseaddr(text)
    if not address:
        raise ConfigError(f"{where}: expected 'Name <address@example.org>', got {text!r}")
    try:
        normalized, _ = check_address(address)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return Mailbox(display_name(name), normalized)


def display_name(text: str) -> str:
    """A name fit for a header: whitespace and control characters folded to single spaces."""
    return _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the SMTP transaction says, as opposed to what the headers say."""

    sender: str
    recipient: str
    smtputf8: bool = False


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message ready for a transport."""

    envelope: Envelope
    data: bytes
    message_id: str


class MessageBuilder:
    """Turns a rendered recipient into message bytes; one builder per campaign."""

    def __init__(
        self,
        *,
        sender: Mailbox,
        reply_to: Mailbox | None = None,
        links: UnsubscribeLinks | None = None,
        list_id: str | None = None,
    ) -> None:
        self.sender = sender
        self.reply_to = reply_to
        self.links = links or UnsubscribeLinks()
        self.list_id = list_id

    def build(self, recipient: Recipient, rendered: Rendered, *, deliver_to: str | None = None) -> Outgoing:
        """The message for `recipient`; `deliver_to` redirects a test send to another address."""
        to_address = deliver_to or recipient.email
        smtputf8 = recipient.smtputf8 if deliver_to is None else not to_address.isascii()
        message = EmailMessage(policy=policy.SMTPUTF8 if smtputf8 else policy.SMTP)
        message_id = make_msgid(domain=self.sender.domain)
        message["From"] = self.sender.header()
        to_name = display_name(recipient.name) if deliver_to is None else ""
        message["To"] = Address(display_name=to_name, addr_spec=to_address)
        message["Subject"] = rendered.subject
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = message_id
        if self.reply_to is not None:
            message["Reply-To"] = self.reply_to.header()
        if self.list_id:
            message["List-Id"] = self.list_id
        unsubscribe, one_click = self.links.header_for(recipient.email)
        if unsubscribe:
            message["List-Unsubscribe"] = unsubscribe
            if one_click:
                message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
        message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
        return Outgoing(
            Envelope(self.sender.address, to_address, smtputf8),
            message.as_bytes(),
            message_id,
        )
