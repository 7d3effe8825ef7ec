"""The use cases, each end to end: what the CLI, a script, a notebook or a scheduler calls.

    import newsletter
    project = newsletter.load("my-campaign")
    result = newsletter.send(project, confirm=lambda plan: True)

Every function here raises a `NewsletterError` (whose `exit_code` the CLI uses)
and never prints: progress, confirmation and stop requests come in as small
callback objects. `send` owns the order a send must follow: lock, recover,
plan, check every recipient, confirm, send, release.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from newsletter.checks.delivery import delivery_findings
from newsletter.checks.findings import Finding
from newsletter.checks.languages import language_findings
from newsletter.checks.message import check_campaign
from newsletter.checks.preflight import Preflight, preflight
from newsletter.delivery.engine import Engine, Reporter
from newsletter.delivery.journal import Entry, Journal, JournalError, JournalMissing
from newsletter.delivery.plan import Plan, SendOptions, Summary
from newsletter.delivery.spool import Spool
from newsletter.delivery.states import DEFERRED, FAILED, PROBLEMS, SENDING, SENT, UNKNOWN
from newsletter.delivery.suppression import read_unsubscribed
from newsletter.delivery.transports.smtp import SMTPTransport
from newsletter.errors import (
    Cancelled,
    CheckFailed,
    ConnectionLost,
    DeliveryError,
    InputError,
    RelayUnreachable,
    TokenError,
)
from newsletter.inputs.addresses import check_address
from newsletter.inputs.folder import DEFAULT_ENCODING, CampaignFolder, address_stem
from newsletter.inputs.recipients import Recipient
from newsletter.inputs.safefiles import OutputDir, in_campaign
from newsletter.message.builder import Outgoing
from newsletter.project import Project, load_project
from newsletter.render import webversion


def load(
    folder: CampaignFolder | Path | str = ".",
    *,
    recipients: Path | str | None = None,
    env_file: Path | str | None = None,
    encoding: str = DEFAULT_ENCODING,
    delimiter: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str | None] | None = None,
) -> Project:
    """The campaign in `folder`, its settings from `environ` (default: this process's) and `.env`.

    `overrides` are settings that win over both, as the CLI's flags do
    (`{"NEWSLETTER_RATE": "10/s"}`).
    """
    source = (
        folder
        if isinstance(folder, CampaignFolder)
        else CampaignFolder(
            Path(folder),
            recipients=Path(recipients) if recipients is not None else None,
            env_file=Path(env_file) if env_file is not None else None,
            encoding=encoding,
            delimiter=delimiter,
        )
    )
    return load_project(source, environ=os.environ if environ is None else environ, overrides=overrides)


# -- check -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """What `check` found: the list and render problems, the content findings, the relay's limit."""

    report: Preflight
    findings: list[Finding]
    relay_size: int | None
    refusal: str | None  # why a send would not go ahead, if it would not
    relay_login: str | None = None  # with `ask_relay`: how it logged in, and as whom ("XOAUTH2 as ...")

    @property
    def ok(self) -> bool:
        return self.refusal is None and not any(f.level == "error" for f in self.findings)


def check(
    project: Project, *, ask_relay: bool = False, dns: bool = False, dns_server: str | None = None
) -> CheckResult:
    """Everything that can be checked without sending; with `ask_relay`, the relay's SIZE too.

    With `dns`, the From domain's SPF, DKIM and DMARC records too (`checks.dns`), asked of
    `dns_server` (HOST or HOST:PORT) or the system's resolver.
    """
    report = preflight(project)
    # scan_rows=0: the pre-send check rendered every row already.
    findings = check_campaign(project, largest_html=report.largest_html, scan_rows=0)
    findings += language_findings(project)
    relay_size: int | None = None
    relay_login: str | None = None
    if ask_relay and project.settings.smtp is None:
        findings.append(Finding("info", "smtp-none", "--smtp: no SMTP_HOST is set, so there is no relay to ask"))
    elif ask_relay:
        try:
            relay_size, relay_login = _ask_relay(project)
        except (DeliveryError, TokenError) as exc:
            findings.append(Finding("error", "smtp-connect", f"cannot use the relay: {exc}"))
    findings += delivery_findings(
        project, recipients=report.valid, message_bytes=report.largest_message, smtp_max_size=relay_size
    )
    if dns:
        from newsletter.checks.dns import project_findings

        findings += project_findings(project, server=dns_server)
    return CheckResult(report, findings, relay_size, report.refusal(project.recipients.path.name), relay_login)


def smtp_size_limit(project: Project) -> int | None:
    """Connect to the relay (TLS, login) and return the largest message it accepts (its SIZE).

    None when it states no limit, or there is no relay. Raises DeliveryError like a
    send would; sends nothing.
    """
    return _ask_relay(project)[0]


def _ask_relay(project: Project) -> tuple[int | None, str | None]:
    """The relay's SIZE and how we logged in (mechanism and user), from one connection."""
    if project.settings.smtp is None:
        return None, None
    transport = project.transport_factory()()
    transport.open()
    try:
        return (transport.max_size, transport.login) if isinstance(transport, SMTPTransport) else (None, None)
    finally:
        transport.close()


# -- preview -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PreviewFiles:
    """One recipient's message as files, and the web version when it was asked for."""

    html: Path
    text: Path
    eml: Path
    recipient: Recipient
    web_version: Path | None = None


def preview(
    project: Project, *, out: Path | None = None, email: str | None = None, web_version: bool = False
) -> PreviewFiles:
    """The inlined HTML, the text part and the whole message of one recipient (the first, or
    `email`), written into `out` (default: the folder's `preview/`)."""
    out = out or project.source.preview
    recipient = project.find_recipient(email)
    rendered, outgoing = project.message(recipient)
    stem = address_stem(recipient.email)
    # Inside the campaign folder a planted link is refused; a folder of the user's own
    # elsewhere may hold links. Either way no file is written through one.
    with OutputDir(out, strict=in_campaign(out, project.folder)) as folder:
        html = folder.write(f"{stem}.html", rendered.html.encode("utf-8"))
        text = folder.write(f"{stem}.txt", rendered.text.encode("utf-8"))
        eml = folder.write(f"{stem}.eml", outgoing.data)
        if project.builder.images is not None:  # the HTML keeps relative <img src> paths
            project.builder.images.copy_beside(rendered.html, folder)
        index = (
            webversion.write_web_version(
                project.campaign, folder, images=project.builder.images, private=project.source.private()
            )
            if web_version
            else None
        )
    return PreviewFiles(html, text, eml, recipient, index)


# -- send --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Confirmation:
    """What a send is about to do, for the `confirm` callback to accept or refuse."""

    planned: int  # messages this run will hand over
    summary: Summary  # the rest: done in earlier runs, unknown and skipped, suppressed
    recovered: int  # recipients an earlier run left mid-send, now `unknown`
    relay: str | None  # host:port, or None for the outbox folder
    sender: str
    ignore_suppression: bool
    dry_run: bool
    check: Preflight  # what the check found that does not stop the send (duplicates, skipped rows)
    list_name: str


Confirm = Callable[[Confirmation], bool]


@dataclass(frozen=True)
class SendResult:
    """What a send did. `summary.fatal` is set when the run stopped before the end."""

    summary: Summary
    check: Preflight
    recovered: int
    dry_run: bool
    problems: list[Entry] = field(default_factory=list)  # failed, deferred, unknown: the journal's rows
    counts: dict[str, int] = field(default_factory=dict)  # the whole campaign's, per state, after the run

    @property
    def nothing_to_send(self) -> bool:
        return self.summary.planned == 0

    @property
    def outstanding(self) -> dict[str, int]:
        """The campaign's recipients whose fate is not `sent`: unknown, failed, deferred."""
        return {state: n for state in (UNKNOWN, FAILED, DEFERRED) if (n := self.counts.get(state, 0))}


def send(
    project: Project,
    *,
    options: SendOptions | None = None,
    confirm: Confirm | None = None,
    progress: Reporter | None = None,
    stop: threading.Event | None = None,
    dry_run: bool = False,
    skip_invalid: bool = False,
) -> SendResult:
    """Send the campaign to every recipient not yet done, each exactly once, and say what happened.

    Raises CheckFailed (nothing sent) when a row is invalid (unless `skip_invalid`)
    or a recipient cannot be rendered, Cancelled when `confirm` refuses, JournalLocked
    when another process is sending this campaign. `stop` set from elsewhere (a
    signal handler) ends the run after the messages in flight; run again to go on.
    """
    options = options or SendOptions(connections=project.settings.connections, rate=project.settings.rate)
    with project.journal(lock=not dry_run) as journal:
        recovered = 0
        if not dry_run:
            # The lock comes first: the check's single pass over the list also decides whom
            # this run sends to, and that needs the journal as this run will see it.
            journal.acquire()
            try:
                recovered = journal.recover()
                if project.channel == "outbox" and not any(project.outbox.glob("*.eml")):
                    journal.forget()  # the outbox was emptied on purpose: write it again
            except JournalError as exc:  # nothing sent yet: a setup problem
                raise exc.at_start() from None
        plan = Plan(journal, options, unsubscribed=read_unsubscribed(project.source.unsubscribed))
        with contextlib.ExitStack() as stack:
            spool = None if dry_run else stack.enter_context(Spool())
            report = preflight(project, plan=plan, spool=spool, stop=stop)
            name = project.recipients.path.name
            refusal = report.refusal(name, skip_invalid=skip_invalid)
            if refusal is not None:
                raise CheckFailed(report, refusal, list_name=name)
            smtp = project.settings.smtp
            asked = Confirmation(
                planned=plan.summary.planned,
                summary=plan.summary,
                recovered=recovered,
                relay=smtp.address if smtp is not None else None,
                sender=project.builder.sender.address,
                ignore_suppression=options.ignore_suppression,
                dry_run=dry_run,
                check=report,
                list_name=name,
            )
            if confirm is not None and not confirm(asked):
                raise Cancelled("cancelled; nothing was sent")
            if spool is None or plan.summary.planned == 0:
                summary = plan.summary
            else:
                summary = _deliver(project, journal, options, plan, spool, progress, stop)
        if isinstance(summary.fatal, JournalError):  # it cannot be read either: report what we know
            return SendResult(summary, report, recovered, dry_run)
        counts = journal.counts()
        problems = journal.entries(PROBLEMS) if any(counts.get(state) for state in PROBLEMS) else []
    return SendResult(summary, report, recovered, dry_run, problems, counts)


def _deliver(
    project: Project,
    journal: Journal,
    options: SendOptions,
    plan: Plan,
    spool: Spool,
    progress: Reporter | None,
    stop: threading.Event | None,
) -> Summary:
    """Hand the check's messages to the connections; the journal is locked."""
    engine = Engine(
        transport_factory=project.transport_factory(smtputf8_needed=plan.smtputf8),
        journal=journal,
        options=options,
        reporter=progress,
        stop=stop,
    )
    summary = plan.summary
    done = summary.already_done
    try:
        return engine.run(spool.messages(), total=summary.planned + done, done=done, summary=summary)
    finally:
        if summary.elapsed > 0 and not isinstance(summary.fatal, JournalError):
            # The sending phase ran: `status` reports its rate as the summary did. A journal
            # that cannot take this row must not hide the run's own outcome.
            with contextlib.suppress(JournalError):
                journal.record_run(
                    started_at=time.time() - summary.elapsed, elapsed=summary.elapsed, sent=summary.sent
                )


def send_test(project: Project, to: str, *, email: str | None = None) -> Outgoing:
    """One `[TEST]` message rendered for a list recipient (the first, or `email`), delivered
    only to `to`; the journal is not touched."""
    try:
        address, _ = check_address(to)
    except ValueError as exc:
        raise InputError(str(exc), field="--to") from None
    recipient = project.find_recipient(email)
    _, outgoing = project.message(recipient, deliver_to=address, subject_prefix="[TEST] ")
    transport = project.transport_factory()()
    try:
        transport.open()
    except ConnectionLost as exc:
        raise RelayUnreachable.from_lost(exc) from None
    try:
        transport.send(outgoing)
    finally:
        transport.close()
    return outgoing


# -- status ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """What the journal knows about a campaign, against the list as it is now."""

    counts: dict[str, int]  # recipients per journal state
    problems: list[Entry]  # failed, deferred, unknown and still-sending recipients
    span: tuple[float, float] | None  # first and last handover
    listed: int | None  # valid recipients in the list; None when there is no list
    plan: Summary | None  # what a send now would skip (suppressed...); None without a list
    last_run: tuple[float, float, int] | None = None  # the latest run's start, seconds and messages sent

    @property
    def pending(self) -> int | None:
        """Recipients no run has recorded yet (a deferred one who unsubscribed since counts twice)."""
        if self.listed is None or self.plan is None:
            return None
        return max(0, self.listed - sum(self.counts.values()) - self.plan.suppressed)


def status(project: Project) -> Status:
    """The journal's counts and problem recipients, and what a send would skip now.

    Never creates a journal: a folder without one has sent nothing. Rows still
    `sending` whose sender is gone are reported `unknown`, which is what the next
    send will call them.
    """
    listed: int | None = None
    counts: dict[str, int] = {}
    problems: list[Entry] = []
    span: tuple[float, float] | None = None
    last_run: tuple[float, float, int] | None = None
    with contextlib.ExitStack() as stack:
        try:
            journal: Journal | None = stack.enter_context(project.journal(create=False))
        except JournalMissing:
            journal = None
        if journal is not None:
            counts = journal.counts()
            problems = journal.entries((*PROBLEMS, SENDING))
            span = journal.span() if counts.get(SENT) else None
            last_run = journal.last_run()
            if counts.get(SENDING) and not journal.sender_alive():
                counts[UNKNOWN] = counts.get(UNKNOWN, 0) + counts.pop(SENDING)
                problems = [replace(e, state=UNKNOWN) if e.state == SENDING else e for e in problems]
        plan: Plan | None = None
        if project.recipients.path.is_file():
            plan = Plan(journal, SendOptions(), unsubscribed=read_unsubscribed(project.source.unsubscribed))
            listed = sum(1 for _ in plan.mark(project.recipients.recipients()))
    return Status(counts, problems, span, listed, plan.summary if plan is not None else None, last_run)
