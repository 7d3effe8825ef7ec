"""A campaign loaded: its folder, settings, announcement, list, renderer and message builder.

Loading validates everything that can be validated without reading the list, so a
bad setting or front matter stops a command before any row is read. The use cases
that work on a loaded campaign live in `newsletter.run`; this module is what they,
the checks and the preview page share.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.delivery.journal import Journal
from newsletter.delivery.transports import Transport
from newsletter.delivery.transports.outbox import OutboxTransport
from newsletter.delivery.transports.smtp import SMTPTransport
from newsletter.errors import CampaignError, ConfigError, InputError
from newsletter.inputs.addresses import address_key
from newsletter.inputs.campaign import Campaign, load_campaign
from newsletter.inputs.folder import CampaignFolder, PrivateFiles
from newsletter.inputs.recipients import Recipient, RecipientList
from newsletter.inputs.settings import DKIMSettings, Settings, load_settings
from newsletter.message.attachments import load_attachments
from newsletter.message.builder import MessageBuilder, Outgoing
from newsletter.message.headers import Mailbox, ascii_domain, list_id_header, parse_mailbox, valid_list_id
from newsletter.message.images import InlineImages
from newsletter.message.unsubscribe import UnsubscribeLinks
from newsletter.render.renderer import Rendered, Renderer

if TYPE_CHECKING:
    from newsletter.message.dkim import Signer


@dataclass(frozen=True)
class Project:
    """One campaign folder with its settings, list, renderer and message builder, loaded and validated."""

    source: CampaignFolder
    settings: Settings
    campaign: Campaign
    recipients: RecipientList
    renderer: Renderer
    builder: MessageBuilder

    @property
    def folder(self) -> Path:
        return self.source.root

    @property
    def channel(self) -> str:
        """How messages leave, as the journal keys them: `smtp`, or `outbox` (never counts for the list)."""
        return "smtp" if self.settings.smtp is not None else "outbox"

    @property
    def outbox(self) -> Path:
        return self.source.outbox

    def journal(self, *, create: bool = True, lock: bool = False) -> Journal:
        """The campaign's journal; without `create`, JournalMissing when no send has made one;
        with `lock`, the folder's send lock is taken before anything is opened (JournalLocked)."""
        return Journal(self.source.journal, self.campaign.id, self.channel, create=create, lock=lock)

    def transport_factory(self, *, smtputf8_needed: Sequence[str] = ()) -> Callable[[], Transport]:
        """`smtputf8_needed`: planned addresses that need SMTPUTF8 (a relay without it is refused)."""
        smtp = self.settings.smtp
        if smtp is not None:
            needed = tuple(smtputf8_needed)
            if smtp.auth == "xoauth2":  # one token for all connections, renewed once for all
                from newsletter.oauth.tokens import token_source

                tokens = token_source(smtp)
                return lambda: SMTPTransport(smtp, smtputf8_needed=needed, tokens=tokens)
            return lambda: SMTPTransport(smtp, smtputf8_needed=needed)
        outbox = self.outbox
        return lambda: OutboxTransport(outbox)

    def message(
        self, recipient: Recipient, *, deliver_to: str | None = None, subject_prefix: str = ""
    ) -> tuple[Rendered, Outgoing]:
        rendered = self.renderer.render(recipient)
        if subject_prefix:
            rendered = Rendered(
                subject_prefix + rendered.subject, rendered.html, rendered.text, rendered.unsubscribe_url
            )
        return rendered, self.builder.build(recipient, rendered, deliver_to=deliver_to)

    def find_recipient(self, email: str | None) -> Recipient:
        """The recipient with this address, or the first valid one."""
        wanted = address_key(email.strip()) if email else None
        for recipient in self.recipients.recipients():
            if wanted is None or recipient.key == wanted:
                return recipient
        if wanted is None:
            raise InputError("no valid recipient in the list", path=self.recipients.path)
        raise InputError(f"no recipient {email!r} in the list", path=self.recipients.path)


def list_id_for(campaign: Campaign, sender: Mailbox) -> str:
    """`list_id` from the front matter, or one derived from the sender's domain (RFC 2919)."""
    explicit = campaign.fields.get("list_id")
    if explicit is not None:
        try:
            return valid_list_id(explicit if isinstance(explicit, str) else repr(explicit))
        except ValueError as exc:
            raise CampaignError(f"'list_id': {exc}", path=campaign.path) from None
    name = campaign.fields.get("list_name")
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") if isinstance(name, str) else ""
    return f"{slug[:40].strip('-') or 'announcements'}.{ascii_domain(sender.domain)}"


def _signer(dkim: DKIMSettings, sender: Mailbox) -> Signer:
    """The DKIM signer; its module (and dkimpy, cryptography) is imported only when a key is set."""
    from newsletter.message.dkim import Signer, load_key

    domain = dkim.domain or ascii_domain(sender.domain)
    pairs = zip(dkim.keys, dkim.selectors, strict=True)
    return Signer([load_key(path, selector=selector, domain=domain) for path, selector in pairs])


def load_project(
    source: CampaignFolder | Path | str,
    *,
    environ: Mapping[str, str],
    overrides: Mapping[str, str | None] | None = None,
) -> Project:
    """Read settings, announcement and templates; the CSV is opened lazily, row by row.

    `environ` is passed in (`os.environ` from the CLI) so that a library caller
    decides what the process environment may set.
    """
    if not isinstance(source, CampaignFolder):
        source = CampaignFolder(Path(source))
    folder = source.root
    if not folder.is_dir():
        raise ConfigError(f"campaign folder not found: {folder}")
    settings = load_settings(
        environ=environ,
        env_file=source.settings_file,
        overrides=overrides,
        # The folder's own .env may have come with the folder: it may not lower security.
        found_in=folder if source.env_file is None else None,
        campaign=folder,
    )
    campaign = load_campaign(folder)
    from_text = settings.sender or campaign.sender
    if not from_text:
        raise ConfigError("no sender: set `from` in announcement.md's front matter or NEWSLETTER_FROM")
    where = "NEWSLETTER_FROM" if settings.sender else f"{campaign.path.name}: from"
    sender = parse_mailbox(from_text, where=where)
    reply_text = settings.reply_to or campaign.reply_to
    reply_to = parse_mailbox(reply_text, where="reply_to") if reply_text else None
    list_id = list_id_for(campaign, sender)
    links = UnsubscribeLinks(
        url=settings.unsubscribe_url,
        mailto=settings.unsubscribe_mailto,
        secret=settings.secret,
        list_id=list_id,
    )
    private = source.private()  # never a template, an attachment or an image
    if settings.dkim is not None:
        keys = tuple(("the DKIM key", key) for key in settings.dkim.keys)
        private = PrivateFiles(private.files + keys, private.state_dir)
    list_name = campaign.fields.get("list_name")
    list_header = list_id_header(list_id, list_name if isinstance(list_name, str) else None)
    builder = MessageBuilder(
        sender=sender,
        reply_to=reply_to,
        links=links,
        list_id=list_header,
        attachments=load_attachments(campaign, private=private),
        images=InlineImages(folder, domain=ascii_domain(sender.domain), private=private),
        signer=_signer(settings.dkim, sender) if settings.dkim is not None else None,
    )
    return Project(
        source=source,
        settings=settings,
        campaign=campaign,
        recipients=source.rows(),
        renderer=Renderer(campaign, links=links, private=private, list_name=source.recipients_path.name),
        builder=builder,
    )
