"""Building the RFC 5322 bytes of one message: headers, then the MIME tree.

The fast path joins pieces encoded once per campaign (`newsletter.message.mime`);
`build_reference` builds the same message with the `email` package, the slow and
obviously right way, for addresses that need SMTPUTF8 and as the tests' oracle.
Header values come from `newsletter.message.headers`, already checked.
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage, MIMEPart
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING

from newsletter.inputs.recipients import Recipient
from newsletter.message import mime
from newsletter.message.attachments import Attachment
from newsletter.message.headers import (
    ASCII_POLICY,
    UTF8_POLICY,
    Mailbox,
    ascii_domain,
    display_name,
    fold_list_header,
    header_address,
)
from newsletter.message.images import Image, InlineImages
from newsletter.message.unsubscribe import ONE_CLICK, UnsubscribeLinks

if TYPE_CHECKING:
    from newsletter.message.dkim import Signer
    from newsletter.render.renderer import Rendered

@dataclass(frozen=True, slots=True)
class Envelope:
    """What the SMTP transaction says, as opposed to what the headers say."""

    sender: str
    recipient: str
    smtputf8: bool = False

    def __reduce__(self) -> tuple[type[Envelope], tuple[str, str, bool]]:
        # Pickled for every message a rendering process hands back: a plain tuple is several
        # times cheaper to load than the field-by-field state of a slotted dataclass.
        return (Envelope, (self.sender, self.recipient, self.smtputf8))


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message ready for a transport."""

    envelope: Envelope
    data: bytes
    message_id: str

    def __reduce__(self) -> tuple[type[Outgoing], tuple[Envelope, bytes, str]]:
        return (Outgoing, (self.envelope, self.data, self.message_id))


def _attachment_part(attachment: Attachment) -> MIMEPart:
    maintype, _, subtype = attachment.content_type.partition("/")
    part = MIMEPart(policy=ASCII_POLICY)
    part.set_content(
        attachment.data, maintype, subtype, disposition="attachment", filename=attachment.filename
    )
    return part


def _image_part(image: Image) -> MIMEPart:
    maintype, _, subtype = image.content_type.partition("/")
    part = MIMEPart(policy=ASCII_POLICY)
    part.set_content(
        image.data, maintype, subtype, disposition="inline", filename=image.filename, cid=f"<{image.cid}>"
    )
    return part


def _part_bytes(part: MIMEPart) -> bytes:
    """A finished part (headers, blank line, encoded body) as CRLF bytes, made once per campaign."""
    data = part.as_bytes(policy=ASCII_POLICY)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def assemble(
    message: EmailMessage,
    *,
    text: str,
    html: str,
    related: Sequence[MIMEPart] = (),
    attachments: Sequence[MIMEPart] = (),
) -> None:
    """Give `message` (headers already set) its body: the whole MIME tree is decided here.

        multipart/mixed                  only with attachments
          multipart/alternative          plainest first (RFC 2046 5.1.4)
            text/plain
            multipart/related            only with inline images; type="text/html"
              text/html                  the root: first part (RFC 2387)
              image/png                  Content-ID, disposition inline
          application/pdf                disposition attachment

    The images belong to the HTML alternative alone, so a plain-text reader
    never sees them as stray attachments. Parts in `related` and `attachments`
    are built once per campaign and shared by every message: serializing a
    message does not change its parts.
    """
    message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    if related:
        html_part: MIMEPart = list(message.iter_parts())[1]
        html_part.make_related()
        html_part.set_param("type", "text/html")  # required by RFC 2387, not set by `email`
        del html_part["MIME-Version"]  # `email` leaves one on the new container; top level only
        for part in related:
            html_part.attach(part)
    if attachments:
        message.make_mixed()
        top: MIMEPart = message
        for part in attachments:
            top.attach(part)


class MessageBuilder:
    """Turns a rendered recipient into message bytes; one builder per campaign."""

    def __init__(
        self,
        *,
        sender: Mailbox,
        reply_to: Mailbox | None = None,
        links: UnsubscribeLinks | None = None,
        list_id: str | None = None,
        attachments: Sequence[Attachment] = (),
        images: InlineImages | None = None,
        signer: Signer | None = None,
    ) -> None:
        self.sender = sender
        self.signer = signer  # DKIM: signs the finished bytes, in whichever process builds them
        self.reply_to = reply_to
        self.links = links or UnsubscribeLinks()
        self.list_id = list_id
        self.attachments = tuple(attachments)
        self.images = images
        self._attachment_parts = [_attachment_part(a) for a in self.attachments]
        self._image_parts: dict[str, MIMEPart] = {}
        # Everything below is the fast path's per-campaign work, done once.
        self._attachment_bytes = [_part_bytes(part) for part in self._attachment_parts]
        self._image_chunks: dict[str, bytes] = {}
        self._boundaries = (mime.new_boundary(), mime.new_boundary(), mime.new_boundary())
        self._id_domain = ascii_domain(sender.domain)
        self._nonce = secrets.token_hex(4)
        self._counter = itertools.count()
        self._subjects: dict[str, bytes] = {}
        self._date_second, self._date_text = -1, ""
        self._from_line = b""
        self._fixed_lines = b""
        self._fast = sender.address.isascii() and (reply_to is None or reply_to.address.isascii())
        if self._fast:
            self._from_line = mime.header("From", mime.mailbox(sender.name, sender.address, used=6))
            fixed = []
            if reply_to is not None:
                fixed.append(mime.header("Reply-To", mime.mailbox(reply_to.name, reply_to.address, used=10)))
            if list_id:
                fixed.append(fold_list_header("List-Id", list_id, ASCII_POLICY).encode("ascii"))
            self._fixed_lines = b"".join(fixed)

    def check(self, rendered: Rendered) -> None:
        """Raise what `build` would raise for this HTML (a missing image), without building."""
        if self.images is not None:
            self.images.check(rendered.html)

    def _related(self, images: list[Image]) -> list[MIMEPart]:
        parts = []
        for image in images:
            part = self._image_parts.get(image.cid)
            if part is None:
                part = self._image_parts[image.cid] = _image_part(image)
            parts.append(part)
        return parts

    def build(self, recipient: Recipient, rendered: Rendered, *, deliver_to: str | None = None) -> Outgoing:
        """The message for `recipient`; `deliver_to` redirects a test send to another address.

        Joined from pieces encoded once per campaign (sender, list headers, the
        MIME layout, attachments, images) and per message only what differs: To,
        Subject, Date, Message-ID, the unsubscribe header and the two bodies. It
        parses to the same message as `build_reference` (tests/test_message_fast.py).
        Every header line is folded at 78 characters where a space or an encoded
        word allows, and never passes 998 octets (`mime`), whatever the name or the
        subject; an address that needs SMTPUTF8 is the one raw UTF-8 part of its
        To line. Only a sender or Reply-To address that needs SMTPUTF8 takes the
        reference path.
        """
        to_address = deliver_to or recipient.email
        smtputf8 = recipient.smtputf8 if deliver_to is None else not to_address.isascii()
        if not self._fast:
            return self.build_reference(recipient, rendered, deliver_to=deliver_to)
        message_id = self._message_id()
        to_name = display_name(recipient.name) if deliver_to is None else ""
        head = [
            self._from_line,
            mime.header("To", mime.mailbox(to_name, to_address, used=4), utf8=smtputf8),
            self._subject_line(display_name(rendered.subject)),
            mime.header("Date", self._date()),
            mime.header("Message-ID", message_id),
            self._fixed_lines,
        ]
        unsubscribe, one_click = self.links.header_for(recipient.email, url=rendered.unsubscribe_url)
        if unsubscribe:
            head.append(fold_list_header("List-Unsubscribe", unsubscribe, ASCII_POLICY).encode("ascii"))
            if one_click:
                head.append(mime.header("List-Unsubscribe-Post", ONE_CLICK))
        head.append(b"MIME-Version: 1.0\r\n")
        html, images = self.images.embed(rendered.html) if self.images else (rendered.html, [])
        body = self._body(rendered.text, html, images)
        return self._outgoing(Envelope(self.sender.address, to_address, smtputf8), b"".join(head) + body, message_id)

    def _outgoing(self, envelope: Envelope, data: bytes, message_id: str) -> Outgoing:
        """The message as it goes on the wire, DKIM-signed when a key is configured.

        Signed here, after every header is folded and before the transport dot-stuffs:
        each of `check`, `send`, `send --to`, the outbox and the preview gets the same bytes.
        """
        if self.signer is not None:
            data = self.signer.sign(data)
        return Outgoing(envelope, data, message_id)

    def _body(self, text: str, html: str, images: list[Image]) -> bytes:
        """The MIME tree of `assemble`, as bytes."""
        html_entity = mime.text_part("html", html)
        if images:
            parts = [html_entity, *(self._image_bytes(image) for image in images)]
            html_entity = mime.multipart("related", parts, self._boundaries[2], params='type="text/html"')
        entity = mime.multipart("alternative", [mime.text_part("plain", text), html_entity], self._boundaries[0])
        if self._attachment_bytes:
            entity = mime.multipart("mixed", [entity, *self._attachment_bytes], self._boundaries[1])
        return entity

    def _image_bytes(self, image: Image) -> bytes:
        data = self._image_chunks.get(image.cid)
        if data is None:
            data = self._image_chunks[image.cid] = _part_bytes(_image_part(image))
        return data

    def _subject_line(self, subject: str) -> bytes:
        line = self._subjects.get(subject)
        if line is None:
            if len(self._subjects) > 1024:  # personalised subjects: no point keeping them all
                self._subjects.clear()
            line = self._subjects[subject] = mime.header("Subject", mime.unstructured(subject, used=9))
        return line

    def _date(self) -> str:
        now = int(time.time())
        if now != self._date_second:
            self._date_second, self._date_text = now, formatdate(now, localtime=True)
        return self._date_text

    def _message_id(self) -> str:
        """Unique per message: time, process, a per-builder counter and random bits."""
        return f"<{time.time_ns()}.{os.getpid()}.{next(self._counter)}.{self._nonce}@{self._id_domain}>"

    def build_reference(
        self, recipient: Recipient, rendered: Rendered, *, deliver_to: str | None = None
    ) -> Outgoing:
        """The same message built with `email.message.EmailMessage`: the slow, obviously-right path."""
        to_address = deliver_to or recipient.email
        smtputf8 = recipient.smtputf8 if deliver_to is None else not to_address.isascii()
        message = EmailMessage(policy=UTF8_POLICY if smtputf8 else ASCII_POLICY)
        message_id = make_msgid(domain=ascii_domain(self.sender.domain))
        message["From"] = self.sender.header()
        to_name = display_name(recipient.name) if deliver_to is None else ""
        message["To"] = header_address(to_name, to_address)
        message["Subject"] = display_name(rendered.subject)
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = message_id
        if self.reply_to is not None:
            message["Reply-To"] = self.reply_to.header()
        if self.list_id:
            message["List-Id"] = self.list_id
        unsubscribe, one_click = self.links.header_for(recipient.email, url=rendered.unsubscribe_url)
        if unsubscribe:
            message["List-Unsubscribe"] = unsubscribe
            if one_click:
                message["List-Unsubscribe-Post"] = ONE_CLICK
        html, images = self.images.embed(rendered.html) if self.images else (rendered.html, [])
        assemble(
            message,
            text=rendered.text,
            html=html,
            related=self._related(images),
            attachments=self._attachment_parts,
        )
        return self._outgoing(
            Envelope(self.sender.address, to_address, smtputf8),
            message.as_bytes(),
            message_id,
        )
