"""The library entry points the CLI is a thin shell over: load, check, preview, send.

Everything here raises; nothing prints or exits.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from newsletter import webversion
from newsletter.attachments import load_attachments
from newsletter.buildpool import BuildPool
from newsletter.campaign import Campaign, load_campaign
from newsletter.config import Settings, load_settings
from newsletter.errors import CampaignError, ConfigError, InputError, TemplateError
from newsletter.images import InlineImages
from newsletter.journal import Journal, default_path
from newsletter.message import (
    Mailbox,
    MessageBuilder,
    Outgoing,
    ascii_domain,
    list_id_header,
    parse_mailbox,
    valid_list_id,
)
from newsletter.recipients import Recipient, RecipientList, RowProblems
from newsletter.render import Rendered, Renderer
from newsletter.sender import Plan, Reporter, Sender, SendOptions, Summary
from newsletter.suppression import UNSUBSCRIBED, read_unsubscribed
from newsletter.transports import Transport
from newsletter.transports.outbox import OutboxTransport
from newsletter.transports.smtp import SMTPTransport
from newsletter.unsubscribe import UnsubscribeLinks

RECIPIENTS = "recipients.csv"
ENV_FILE = ".env"
OUTBOX = "outbox"
KEPT_PROBLEMS = 1000  # problems listed in full; beyond this only counted


@dataclass(frozen=True)
class Project:
    """One campaign folder with its settings, list, renderer and message builder, loaded and validated."""

    folder: Path
    settings: Settings
    campaign: Campaign
    recipients: RecipientList
    renderer: Renderer
    builder: MessageBuilder

    @property
    def destination(self) -> str:
        """The journal's destination kind: outbox deliveries never count for the real list."""
        return "smtp" if self.settings.smtp is not None else "outbox"

    @property
    def outbox(self) -> Path:
        return self.folder / OUTBOX

    def journal(self) -> Journal:
        return Journal(default_path(self.folder), self.campaign.id, self.destination)

    def transport_factory(self, *, smtputf8_needed: Sequence[str] = ()) -> Callable[[], Transport]:
        """`smtputf8_needed`: planned addresses that need SMTPUTF8 (a relay without it is refused)."""
        smtp = self.settings.smtp
        if smtp is not None:
            needed = tuple(smtputf8_needed)
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


def load_project(
    folder: Path,
    *,
    recipients: Path | None = None,
    env_file: Path | None = None,
    environ: Mapping[str, str],
    overrides: Mapping[str, str | None] | None = None,
    encoding: str = "utf-8",
    delimiter: str | None = None,
) -> Project:
    """Read settings, announcement and templates; the CSV is opened lazily, row by row."""
    folder = folder.resolve()
    if not folder.is_dir():
        raise ConfigError(f"campaign folder not found: {folder}")
    if env_file is None and (folder / ENV_FILE).is_file():
        env_file = folder / ENV_FILE
    settings = load_settings(environ=environ, env_file=env_file, overrides=overrides)
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
    list_name = campaign.fields.get("list_name")
    list_header = list_id_header(list_id, list_name if isinstance(list_name, str) else None)
    builder = MessageBuilder(
        sender=sender,
        reply_to=reply_to,
        links=links,
        list_id=list_header,
        attachments=load_attachments(campaign),
        images=InlineImages(folder, domain=ascii_domain(sender.domain)),
    )
    return Project(
        folder=folder,
        settings=settings,
        campaign=campaign,
        recipients=RecipientList((recipients or folder / RECIPIENTS).resolve(), encoding=encoding, delimiter=delimiter),
        renderer=Renderer(campaign, links=links),
        builder=builder,
    )


@dataclass
class Preflight(RowProblems):
    """Everything that can be known about a send without sending."""

    keep: int = KEPT_PROBLEMS
    valid: int = 0
    template_errors: list[TemplateError] = field(default_factory=list)
    largest_html: int = 0
    largest_message: int = 0  # bytes on the wire, attachments and inline images included

    @property
    def ok(self) -> bool:
        return not self.template_errors and not self.invalid_count


def preflight(
    project: Project,
    *,
    render: bool = True,
    max_template_errors: int = 20,
    progress: Callable[[int], None] | None = None,
    plan: Plan | None = None,
) -> Preflight:
    """Read every row and render every valid recipient; collect the problems instead of stopping.

    The rendering runs in child processes (one per core) while this one reads the list.
    A `plan` (see `new_plan`) counts, in the same pass, whom a send would select.
    """
    report = Preflight()
    largest: Recipient | None = None

    def valid_rows() -> Iterator[Recipient]:
        for index, row in enumerate(project.recipients, start=1):
            if progress is not None and index % 1000 == 0:
                progress(index)
            if isinstance(row, Recipient):
                report.valid += 1
                yield row
            else:
                report.note(row)

    def to_render(rows: Iterable[Recipient]) -> Iterator[Recipient]:
        for row in rows:
            if render and len(report.template_errors) < max_template_errors:
                yield row

    rows = valid_rows() if plan is None else plan.passing(valid_rows())
    if render:
        _warm_up(project)
    with BuildPool(partial(_check_recipient, project), processes=_processes()) as pool:
        for row, (error, size) in pool.map(to_render(rows)):
            if error is not None:
                if len(report.template_errors) < max_template_errors:
                    report.template_errors.append(error)
            elif size > report.largest_html or largest is None:
                report.largest_html, largest = max(report.largest_html, size), row
    if largest is not None and not report.template_errors:
        # One real message, for the recipient whose HTML is biggest: its size is what the
        # relay's SIZE limit and Gmail see, with encodings and attachments counted.
        report.largest_message = len(project.message(largest)[1].data)
    return report


def _warm_up(project: Project) -> None:
    """Render the first recipient here, before any child is forked.

    The children inherit what that builds: above all the inlined skeleton of the common
    shape, which premailer takes tens of milliseconds to make and each child would
    otherwise make for itself, at the check and again at the send.
    """
    first = next(iter(project.recipients.recipients()), None)
    if first is not None:
        _check_recipient(project, first)


def _processes() -> int:
    """Rendering processes: one per core. The sending process mostly waits on sockets."""
    return max(1, os.cpu_count() or 1)


def _check_recipient(project: Project, row: Recipient) -> tuple[TemplateError | None, int]:
    """Render one recipient as preflight does: the error, or the size of its HTML."""
    try:
        rendered = project.renderer.render(row)
        project.builder.check(rendered)  # e.g. an <img src> file that is missing
    except TemplateError as exc:
        return exc, 0
    return None, len(rendered.html.encode())


def find_recipient(project: Project, email: str | None) -> Recipient:
    """The recipient with this address, or the first valid one."""
    wanted = email.casefold() if email else None
    for recipient in project.recipients.recipients():
        if wanted is None or recipient.key == wanted:
            return recipient
    if wanted is None:
        raise InputError("no valid recipient in the list", path=project.recipients.path)
    raise InputError(f"no recipient {email!r} in the list", path=project.recipients.path)


@dataclass(frozen=True)
class PreviewFiles:
    html: Path
    text: Path
    eml: Path
    recipient: Recipient


def write_preview(project: Project, out: Path, *, email: str | None = None) -> PreviewFiles:
    """The inlined HTML, the text part and the whole message for one recipient, as files."""
    recipient = find_recipient(project, email)
    rendered, outgoing = project.message(recipient)
    out.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9@._+-]", "_", recipient.email)
    files = PreviewFiles(out / f"{stem}.html", out / f"{stem}.txt", out / f"{stem}.eml", recipient)
    files.html.write_text(rendered.html, encoding="utf-8")
    files.text.write_text(rendered.text, encoding="utf-8")
    files.eml.write_bytes(outgoing.data)
    if project.builder.images is not None:  # the HTML keeps relative <img src> paths
        project.builder.images.copy_beside(rendered.html, out)
    return files


def write_web_version(project: Project, out: Path) -> Path:
    """`out/index.html`: the announcement with no recipient's data, for "view in browser"."""
    return webversion.write_web_version(project.campaign, out, images=project.builder.images)


def unsubscribed(project: Project) -> set[str]:
    return read_unsubscribed(project.folder / UNSUBSCRIBED)


def new_plan(project: Project, journal: Journal | None, options: SendOptions) -> Plan:
    """A plan that has counted no one yet; `unsubscribed.csv` is read here."""
    return Plan(journal, options, unsubscribed=unsubscribed(project))


def plan_send(project: Project, journal: Journal | None, options: SendOptions) -> tuple[Plan, int]:
    """Count who this run sends to, without keeping them: returns the plan and the total."""
    plan = new_plan(project, journal, options)
    count = sum(1 for _ in plan.select(project.recipients.recipients()))
    return plan, count


def send(
    project: Project,
    *,
    options: SendOptions,
    journal: Journal | None,
    reporter: Reporter | None = None,
    stop: threading.Event | None = None,
    planned: Plan | None = None,
) -> Summary:
    """Send the campaign to every planned recipient; the journal (if any) must be locked by the caller.

    `planned` is a finished `plan_send` count, when the caller already made one (it
    reads the whole list, which is worth doing once, not twice).
    """
    if planned is None:
        planned, _ = plan_send(project, journal, options)
    total, done = planned.summary.planned, planned.summary.already_done
    plan = Plan(journal, options, unsubscribed=planned.unsubscribed)
    with BuildPool(lambda r: project.message(r)[1], processes=_processes()) as pool:
        sender = Sender(
            transport_factory=project.transport_factory(smtputf8_needed=planned.smtputf8),
            build=pool.map,
            journal=journal,
            options=options,
            reporter=reporter,
            stop=stop,
        )
        selected: Iterator[Recipient] = plan.select(project.recipients.recipients())
        return sender.run(selected, total=total + done, done=done, summary=plan.summary)


def send_test(project: Project, to: str, *, email: str | None = None) -> Outgoing:
    """One `[TEST]` message rendered for a list recipient, delivered only to `to`; no journal."""
    recipient = find_recipient(project, email)
    _, outgoing = project.message(recipient, deliver_to=to, subject_prefix="[TEST] ")
    transport = project.transport_factory()()
    transport.open()
    try:
        transport.send(outgoing)
    finally:
        transport.close()
    return outgoing


def smtp_size_limit(project: Project) -> int | None:
    """Connect to the relay (TLS, login) and return the largest message it accepts (its SIZE).

    None when it states no limit. Raises DeliveryError like a send would; sends nothing.
    """
    smtp = project.settings.smtp
    if smtp is None:
        return None
    transport = SMTPTransport(smtp)
    transport.open()
    try:
        return transport.max_size
    finally:
        transport.close()
