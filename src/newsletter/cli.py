"""The `newsletter` command line: a thin shell over `newsletter.api`.

Only this module prints or exits. Exit codes: 0 all delivered, 1 some
recipients failed (listed), 2 bad input or configuration (nothing sent),
130/143 interrupted by SIGINT/SIGTERM (run again to continue).
"""

from __future__ import annotations

import csv
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from newsletter.config import DEFAULT_CONNECTIONS, parse_rate
from newsletter.errors import DeliveryError, InputError, NewsletterError, SetupError
from newsletter.lazy import lazy_import

if TYPE_CHECKING:
    from newsletter import api, recipients, sender, starter, suppression
    from newsletter import journal as journal_states
    from newsletter import unsubscribe_server as unsubscribe_web
else:
    # `--help` must answer at once: the rendering stack (Jinja, premailer, cssutils,
    # lxml), the address validator and SQLite load on first use by a command.
    api = lazy_import("newsletter.api")
    journal_states = lazy_import("newsletter.journal")
    recipients = lazy_import("newsletter.recipients")
    sender = lazy_import("newsletter.sender")
    starter = lazy_import("newsletter.starter")
    suppression = lazy_import("newsletter.suppression")
    unsubscribe_web = lazy_import("newsletter.unsubscribe_server")


if TYPE_CHECKING:
    from newsletter.checks import Finding

UNSUBSCRIBE_HOST, UNSUBSCRIBE_PORT = "127.0.0.1", 8090  # kept equal to unsubscribe_server's defaults

EXIT_OK, EXIT_FAILED, EXIT_INPUT = 0, 1, 2
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}

# markup off: addresses, replies and file names are printed as they are.
out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


@dataclass(frozen=True)
class Globals:
    campaign: Path
    recipients: Path | None
    env_file: Path | None
    encoding: str
    delimiter: str | None

    def load(self, **overrides: str | None) -> api.Project:
        return api.load_project(
            self.campaign,
            recipients=self.recipients,
            env_file=self.env_file,
            environ=os.environ,
            overrides={k: v for k, v in overrides.items() if v is not None},
            encoding=self.encoding,
            delimiter=self.delimiter,
        )


def fail(message: str, code: int = EXIT_INPUT) -> NoReturn:
    err.print(Text("error: ", style="bold red") + Text(message))
    sys.exit(code)


@contextmanager
def reported() -> Iterator[None]:
    """Library errors become one clear line and the right exit code; never a traceback."""
    try:
        yield
    except (InputError, SetupError, journal_states.JournalLocked) as exc:
        fail(str(exc))
    except NewsletterError as exc:
        fail(str(exc), EXIT_FAILED)


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Global options may be given before or after the command; the later one wins."""
    if value is not None and param.name is not None:
        ctx.find_root().meta.setdefault("newsletter.globals", {})[param.name] = value
    return value


def global_options(command: Any) -> Any:
    """Add --campaign, --recipients, --env-file, --encoding and --delimiter to a command."""
    options = [
        click.option(
            "--campaign",
            type=click.Path(file_okay=False, path_type=Path),
            help="Campaign folder: announcement.md, templates/, recipients.csv, .env.  [default: .]",
        ),
        click.option(
            "--recipients",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Recipients CSV (default: recipients.csv in the campaign folder).",
        ),
        click.option(
            "--env-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Settings file (default: .env in the campaign folder, if present).",
        ),
        click.option("--encoding", help="Encoding of the CSV, e.g. cp1251 or latin-1.  [default: utf-8]"),
        click.option("--delimiter", help="CSV delimiter (default: sniffed from the header: , ; tab or |)."),
    ]
    for option in reversed(options):
        command = option(command)
    for param in command.__click_params__[-len(options) :]:
        param.expose_value = False
        param.callback = _remember
    return command


def _globals() -> Globals:
    values: dict[str, Any] = click.get_current_context().find_root().meta.get("newsletter.globals", {})
    delimiter = values.get("delimiter")
    if delimiter is not None:
        delimiter = {"tab": "\t", "\\t": "\t"}.get(delimiter, delimiter)
        if len(delimiter) != 1:
            raise click.BadParameter("use one character, or 'tab'", param_hint="--delimiter")
    return Globals(
        campaign=values.get("campaign", Path(".")),
        recipients=values.get("recipients"),
        env_file=values.get("env_file"),
        encoding=values.get("encoding", "utf-8"),
        delimiter=delimiter,
    )


def command(*args: Any, **kwargs: Any) -> Callable[[Callable[..., None]], click.Command]:
    """A subcommand of `main` that also takes the global options and receives `Globals` first."""

    def decorate(function: Callable[..., None]) -> click.Command:
        @functools.wraps(function)
        def run(*a: Any, **k: Any) -> None:
            function(_globals(), *a, **k)

        made: click.Command = main.command(*args, **kwargs)(global_options(run))
        return made

    return decorate


class _Group(click.Group):
    """Ctrl-C outside a send's own handling (reading the list, rendering) exits 130, not 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            err.print("\nInterrupted; nothing more was sent. Run the same command again to continue.")
            sys.exit(EXIT_SIGNAL[signal.SIGINT])


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="newsletter")
@global_options
def main() -> None:
    """Send one announcement to one mailing list, each recipient exactly once.

    \b
    Typical session:
      newsletter check                      # find problems before anything is sent
      newsletter preview --serve --open     # look at it, per recipient
      newsletter send --to you@example.org  # a test message to yourself
      newsletter send                       # the list; run again to resume
      newsletter status                     # who got it, who did not, and why

    With no SMTP_HOST configured, `send` writes .eml files to outbox/.
    Global options may also follow the command: `newsletter send --recipients list.csv`.
    """


# -- preview -----------------------------------------------------------------------


@command()
@click.option("--recipient", "email", metavar="EMAIL", help="Whose message to show (default: the first).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the files (default: preview/ in the campaign folder).",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the HTML (with --serve: the page) in your browser.")
@click.option("--serve", is_flag=True, help="Serve a live preview page on 127.0.0.1 instead of writing files.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="Port for --serve (default 8025, or a free one if it is taken; 0: any free port).",
)
@click.option(
    "--web-version",
    is_flag=True,
    help="Also write index.html: the announcement with no recipient's data, to publish as the "
    "'view in browser' page (front matter: web_version_url).",
)
def preview(
    g: Globals,
    email: str | None,
    out: Path | None,
    open_browser: bool,
    serve: bool,
    port: int | None,
    web_version: bool,
) -> None:
    """Write one recipient's inlined HTML, text part and .eml, and print where.

    With --serve: a local page showing every recipient's message, its headers, text
    part, source and checks, updated as you edit the campaign's files.
    """
    if serve:
        if out is not None:
            fail("--out writes files; it cannot be combined with --serve")
        _serve_preview(g, email, port, open_browser)
        return
    with reported():
        project = g.load()
        files = api.write_preview(project, out or project.folder / "preview", email=email)
        index = api.write_web_version(project, files.html.parent) if web_version else None
    out_paths = (files.html, files.text, files.eml)
    click.echo(f"Preview for {files.recipient.email} (line {files.recipient.line}):")
    for path in out_paths:
        click.echo(f"  {path}")
    if index is not None:
        click.echo(f"Web version (no recipient data): {index}")
    if open_browser:
        click.launch(files.html.as_uri())


def _serve_preview(g: Globals, email: str | None, port: int | None, open_browser: bool) -> None:
    """Run the preview server in the foreground until Ctrl-C."""
    from newsletter.preview import Source, open_server  # the web server loads only for --serve

    folder = g.campaign.resolve()
    if not folder.is_dir():
        fail(f"campaign folder not found: {folder}")
    source = Source(
        folder, g.load, recipients=g.recipients, env_file=g.env_file, encoding=g.encoding, delimiter=g.delimiter
    )
    with reported():
        server = open_server(source, port=port)
    url = server.url_for(email)
    out.print(f"Preview of {folder} at {url}")
    out.print("The page follows announcement.md, templates/, the CSV and .env as you edit them. Ctrl-C stops.")
    sys.stdout.flush()  # the address is the one thing a script reading our output waits for
    if open_browser:
        click.launch(url)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the server as cleanly as Ctrl-C

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        out.print("Stopped.")
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()


# -- check -------------------------------------------------------------------------


def _report_preflight(report: api.Preflight, project: api.Project, *, skip_invalid: bool) -> bool:
    """Print the preflight's problems; return True when sending may go ahead."""
    name = project.recipients.path.name
    for row in report.invalid:
        field = f" field '{row.field}':" if row.field else ""
        err.print(f"{name}:{row.line}:{field} {row.reason}")
    if report.invalid_count > len(report.invalid):
        err.print(f"... and {report.invalid_count - len(report.invalid)} more invalid rows")
    for dup in report.duplicates[:20]:
        err.print(f"{name}:{dup.line}: duplicate of line {dup.first_line} ({dup.email}); sent once")
    if report.duplicate_count > 20:
        err.print(f"... and {report.duplicate_count - 20} more duplicates")
    for error in report.template_errors:
        err.print(str(error))
    if report.template_errors:
        return False
    if report.invalid_count and not skip_invalid:
        err.print(
            f"{report.invalid_count} invalid row(s) in {name}: fix them, or pass --skip-invalid to send "
            "to the valid rows only"
        )
        return False
    if report.valid == 0:
        err.print(f"{name}: no valid recipient in the list (a header row alone, or every row invalid)")
        return False
    return True


@command()
@click.option(
    "--smtp",
    "ask_relay",
    is_flag=True,
    help="Also connect to the relay (TLS, login) to read its message size limit; sends nothing.",
)
def check(g: Globals, ask_relay: bool) -> None:
    """Check everything that can be checked without sending: settings, list, templates."""
    with reported():
        project = g.load()
        report = api.preflight(project)
    ok = _report_preflight(report, project, skip_invalid=False)
    from newsletter.checks import check_campaign  # local: this edit stays inside `check`

    with reported():
        # scan_rows=0: the preflight rendered every row and printed missing fields above.
        findings = check_campaign(project, largest_html=report.largest_html, scan_rows=0)
    relay_size, delivery = _delivery_checks(project, report, ask_relay)
    findings += delivery
    ok = ok and not any(finding.level == "error" for finding in delivery)
    for finding in findings:
        style = {"error": "bold red", "warning": "yellow"}.get(finding.level, "cyan")
        err.print(Text(f"{finding.level}: ", style=style) + Text(str(finding)))
    table = Table(show_header=False, box=None)
    table.add_row("campaign", f"{project.campaign.id} ({project.campaign.path.name})")
    table.add_row(
        "recipients", f"{report.valid} valid, {report.invalid_count} invalid, {report.duplicate_count} duplicate"
    )
    table.add_row("sender", project.builder.sender.address)
    table.add_row("delivery", _destination(project))
    table.add_row("largest HTML", f"{report.largest_html / 1024:.1f} KB")
    if report.largest_message:
        table.add_row("largest message", f"{report.largest_message / 1024:.1f} KB")
    if relay_size:
        table.add_row("relay accepts", f"{relay_size / 1024:.1f} KB (SIZE)")
    out.print(table)
    if not ok:
        sys.exit(EXIT_INPUT)
    passed = "All checks passed" if not report.invalid_count else "Checks passed for the valid rows"
    warned = sum(1 for finding in findings if finding.level != "info")
    out.print(f"{passed}, with {warned} warning(s) above." if warned else f"{passed}.")


def _delivery_checks(project: api.Project, report: api.Preflight, ask_relay: bool) -> tuple[int | None, list[Finding]]:
    """Size and attachment findings; with `ask_relay`, the relay's SIZE (a failed login is an error)."""
    from newsletter.checks import Finding, delivery_findings

    relay_size: int | None = None
    found: list[Finding] = []
    if ask_relay and project.settings.smtp is None:
        found.append(Finding("info", "smtp-none", "--smtp: no SMTP_HOST is set, so there is no relay to ask"))
    elif ask_relay:
        try:
            relay_size = api.smtp_size_limit(project)
        except DeliveryError as exc:
            found.append(Finding("error", "smtp-connect", f"cannot use the relay: {exc}"))
    found += delivery_findings(
        project, recipients=report.valid, message_bytes=report.largest_message, smtp_max_size=relay_size
    )
    return relay_size, found


def _destination(project: api.Project) -> str:
    smtp = project.settings.smtp
    if smtp is None:
        return f"outbox folder {project.outbox} (no SMTP_HOST set)"
    who = f" as {smtp.username}" if smtp.username else ""
    return f"SMTP {smtp.address} ({smtp.security}){who}"


# -- send --------------------------------------------------------------------------


class _Signals:
    """First SIGINT/SIGTERM: stop taking new recipients; a second SIGINT aborts at once."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum)
        self.stop.set()
        err.print("\nStopping: finishing the messages in flight (Ctrl-C again to abort now)...")

    def __enter__(self) -> _Signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class _RateColumn(ProgressColumn):
    """Messages per second, as rich measures it over the last half minute."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:7.1f}/s" if speed else "      -/s")


class _ProgressReporter:
    """Feeds the bar in steps of at most a twentieth of a second: rich redraws ten times a
    second anyway, and a call per message cost the sending threads more than the journal."""

    STEP = 0.05

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("sending", total=None)
        self._lock = threading.Lock()
        self._pending = 0
        self._last = 0.0

    def start(self, total: int, done: int) -> None:
        # Shown only once the relay has accepted the first connection: a TLS or login
        # error then stands alone instead of under an empty bar.
        self.progress.update(self.task, total=total, completed=done)
        self.progress.start()

    def advance(self, email: str, state: str) -> None:
        with self._lock:
            self._pending += 1
            now = time.monotonic()
            if now - self._last < self.STEP:
                step = 0
            else:
                step, self._pending, self._last = self._pending, 0, now
        if step:
            self.progress.advance(self.task, step)
        if state != journal_states.SENT:
            self.progress.console.print(f"{email}: {state}")

    def flush(self) -> None:
        with self._lock:
            step, self._pending = self._pending, 0
        if step:
            self.progress.advance(self.task, step)

    def note(self, text: str) -> None:
        self.progress.console.print(text)


def _rate_option(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parse_rate(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--rate") from None
    return value


@command()
@click.option("--dry-run", is_flag=True, help="Render and count everything; send nothing.")
@click.option("--limit", type=click.IntRange(min=1), help="Hand over at most N messages in this run.")
@click.option(
    "--to", "to", metavar="ADDRESS", help="Send one [TEST] message, rendered for the first recipient, to ADDRESS only."
)
@click.option("--rate", metavar="N", help="Messages per second over all connections; also N/min or N/hour.")
@click.option(
    "--connections", type=click.IntRange(1, 100), help=f"Parallel SMTP connections (default {DEFAULT_CONNECTIONS})."
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--skip-invalid", is_flag=True, help="Send to the valid rows even if some rows are invalid.")
@click.option(
    "--resend-unknown", is_flag=True, help="Also send to recipients whose earlier delivery outcome is unknown."
)
@click.option("--ignore-suppression", is_flag=True, help="Also send to unsubscribed and permanently failed addresses.")
@click.option(
    "--max-attempts",
    type=click.IntRange(1, 20),
    default=3,
    show_default=True,
    help="Tries per recipient for temporary (4xx) refusals.",
)
@click.option(
    "--retry-delay",
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="Seconds before the first retry; doubles each time.",
)
def send(
    g: Globals,
    dry_run: bool,
    limit: int | None,
    to: str | None,
    rate: str | None,
    connections: int | None,
    yes: bool,
    skip_invalid: bool,
    resend_unknown: bool,
    ignore_suppression: bool,
    max_attempts: int,
    retry_delay: float,
) -> None:
    """Send the announcement to the list (or to the outbox folder when no SMTP_HOST is set).

    Safe to run again: recipients the journal records as sent are skipped, so an
    interrupted send continues where it stopped.
    """
    rate = _rate_option(rate)
    with reported():
        project = g.load(
            NEWSLETTER_RATE=rate,
            NEWSLETTER_CONNECTIONS=str(connections) if connections else None,
        )
        if to is not None:
            _send_test(project, to)
            return
    settings = project.settings
    options = sender.SendOptions(
        connections=settings.connections,
        rate=settings.rate,
        limit=limit,
        resend_unknown=resend_unknown,
        ignore_suppression=ignore_suppression,
        max_attempts=max_attempts,
        retry_delay=retry_delay,
    )
    with reported():
        journal = project.journal()
    with journal:
        recovered = 0
        if not dry_run:
            # The lock comes first: the check's single pass over the list also counts whom
            # this run sends to, and that needs the journal as this run will see it.
            with reported():
                journal.acquire()
                recovered = journal.recover()
            if project.destination == "outbox" and not any(project.outbox.glob("*.eml")):
                journal.forget()  # the outbox was emptied on purpose: write it again
        with reported():  # unsubscribed.csv is read here: a bad row names its line
            plan = api.new_plan(project, journal, options)
            report = api.preflight(project, plan=plan)
        if not _report_preflight(report, project, skip_invalid=skip_invalid):
            sys.exit(EXIT_INPUT)
        if ignore_suppression and not yes:
            _confirm("--ignore-suppression sends to addresses that unsubscribed or failed permanently. Continue?")
        pending = plan.summary.planned
        if dry_run:
            _dry_run(project, plan)
            return
        if recovered:
            err.print(
                f"{recovered} recipient(s) were being sent to when an earlier run stopped: their "
                "outcome is unknown. They are skipped; `newsletter status` lists them, and "
                "--resend-unknown sends to them."
            )
        if pending == 0:
            hint = " (delete the outbox folder to write it again)" if project.destination == "outbox" else ""
            out.print(f"Nothing to send: every recipient is done{hint}. `newsletter status` shows the details.")
            return
        if project.settings.smtp is not None and not yes:
            _confirm(
                f"Send {pending} message(s) to {project.settings.smtp.address} as {project.builder.sender.address}?"
            )
        summary = _run(project, journal, options, plan)
    _finish(project, summary)


def _confirm(question: str) -> None:
    if not sys.stdin.isatty():
        fail("refusing to send without confirmation: standard input is not a terminal; add --yes")
    if not click.confirm(question, default=False, err=True):
        fail("cancelled; nothing was sent")


def _send_test(project: api.Project, to: str) -> None:
    try:
        address, _ = recipients.check_address(to)
    except ValueError as exc:
        raise InputError(str(exc), field="--to") from None
    outgoing = api.send_test(project, address)
    out.print(f"Test message {outgoing.message_id} delivered to {address} via {_destination(project)}.")


def _dry_run(project: api.Project, plan: sender.Plan) -> None:
    s = plan.summary
    out.print(
        f"Dry run: {s.planned} message(s) would be sent via {_destination(project)}; "
        f"{s.already_done} already done, {s.skipped_unknown} unknown skipped, {s.suppressed} suppressed."
    )


def _run(project: api.Project, journal: Any, options: sender.SendOptions, plan: sender.Plan) -> sender.Summary:
    progress = Progress(
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )
    with _Signals() as signals:
        reporter = _ProgressReporter(progress)
        try:
            summary = api.send(
                project, options=options, journal=journal, reporter=reporter, stop=signals.stop, planned=plan
            )
        except (SetupError, InputError) as exc:
            progress.stop()
            fail(str(exc))
        except NewsletterError as exc:
            progress.stop()
            fail(str(exc), EXIT_FAILED)
        finally:
            reporter.flush()
            progress.stop()
    if signals.received is not None:
        summary.interrupted = True
        _print_summary(summary)
        err.print("Interrupted. Run the same command again to continue; nobody who got it gets it twice.")
        sys.exit(EXIT_SIGNAL.get(signals.received, 130))
    return summary


def _suppressed_detail(summary: sender.Summary) -> str:
    return f"{summary.unsubscribed} unsubscribed, {summary.bounced} failed permanently in an earlier campaign"


def _print_summary(summary: sender.Summary) -> None:
    parts = [f"{summary.sent} sent", f"{summary.failed} failed", f"{summary.deferred} deferred"]
    if summary.unknown:
        parts.append(f"{summary.unknown} unknown")
    skipped = summary.already_done + summary.skipped_unknown + summary.suppressed
    parts.append(f"{skipped} skipped")
    rate = summary.sent / summary.elapsed if summary.elapsed > 0 else 0.0
    out.print(f"{', '.join(parts)} in {summary.elapsed:.1f} s ({rate:.0f}/s).")
    details = []
    if summary.already_done:
        details.append(f"{summary.already_done} done in earlier runs")
    if summary.skipped_unknown:
        details.append(f"{summary.skipped_unknown} unknown (see --resend-unknown)")
    if summary.suppressed:
        details.append(f"{summary.suppressed} suppressed ({_suppressed_detail(summary)})")
    if details:
        out.print("Skipped: " + "; ".join(details) + ".")


def _finish(project: api.Project, summary: sender.Summary) -> None:
    _print_summary(summary)
    if project.settings.smtp is None:
        out.print(f"Delivered to the outbox folder {project.outbox} (no SMTP_HOST set).")
    if isinstance(summary.fatal, SetupError):  # TLS, auth, a message over SIZE: fix, then run again
        fail(str(summary.fatal))
    if summary.fatal is not None:
        fail(f"{summary.fatal}; run the same command again to continue", EXIT_FAILED)
    if summary.problems:
        with project.journal() as journal:
            for entry in journal.entries((journal_states.FAILED, journal_states.DEFERRED, journal_states.UNKNOWN)):
                code = f"{entry.code} " if entry.code else ""
                err.print(f"  {entry.email} (line {entry.line}): {entry.state}: {code}{entry.reply or ''}")
        sys.exit(EXIT_FAILED)


# -- status ------------------------------------------------------------------------


def _csv_cell(value: object) -> str:
    """Cells that a spreadsheet would run as a formula are quoted with a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@command()
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the failed, deferred and unknown recipients to this CSV.",
)
def status(g: Globals, csv_path: Path | None) -> None:
    """What the journal knows about this campaign: totals, rate, and every recipient with a problem."""
    with reported():
        project = g.load()
        listed = sum(1 for _ in project.recipients.recipients()) if project.recipients.path.is_file() else None
        with project.journal() as journal:
            counts = journal.counts()
            entries = journal.entries(
                (journal_states.FAILED, journal_states.DEFERRED, journal_states.UNKNOWN, journal_states.SENDING)
            )
            span = journal.span()
            plan = api.plan_send(project, journal, sender.SendOptions())[0] if listed is not None else None
    table = Table(title=f"Campaign {project.campaign.id} — {_destination(project)}", title_justify="left")
    table.add_column("state")
    table.add_column("recipients", justify="right")
    recorded = sum(counts.values())
    for state in (
        journal_states.SENT,
        journal_states.FAILED,
        journal_states.DEFERRED,
        journal_states.UNKNOWN,
        journal_states.SENDING,
    ):
        table.add_row(state, str(counts.get(state, 0)))
    suppressed = plan.summary if plan is not None else None
    if listed is not None and suppressed is not None:
        # A deferred recipient who unsubscribed since counts in both rows; rare enough.
        table.add_row("pending", str(max(0, listed - recorded - suppressed.suppressed)))
        table.add_row("suppressed", str(suppressed.suppressed))
    out.print(table)
    if suppressed is not None and suppressed.suppressed:
        out.print(f"Suppressed, never sent to: {_suppressed_detail(suppressed)} (--ignore-suppression overrides).")
    if span and counts.get(journal_states.SENT):
        seconds = max(span[1] - span[0], 1e-6)
        out.print(f"Rate achieved: {counts[journal_states.SENT] / seconds:.1f} messages/s over {seconds:.0f} s.")
    if entries:
        problems = Table(title="Recipients needing attention", title_justify="left")
        for column in ("line", "email", "state", "attempts", "last reply"):
            problems.add_column(column)
        for e in entries:
            reply = f"{e.code or ''} {e.reply or ''}".strip()
            problems.add_row(str(e.line or ""), e.email, e.state, str(e.attempts), reply)
        out.print(problems)
    if csv_path is not None:
        with csv_path.open("w", encoding="utf-8", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["line", "email", "state", "attempts", "code", "reply", "updated"])
            for e in entries:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e.updated_at))
                writer.writerow([_csv_cell(v) for v in (e.line, e.email, e.state, e.attempts, e.code, e.reply, stamp)])
        out.print(f"Wrote {len(entries)} row(s) to {csv_path}.")


# -- init / unsubscribe -------------------------------------------------------------


@main.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=Path("."))
def init(folder: Path) -> None:
    """Write a starter campaign (the example announcement) into FOLDER."""
    with reported():
        written = starter.init_campaign(folder)
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(
        f"Next: cd {folder}; cp recipients.example.csv recipients.csv; cp .env.example .env; "
        "edit them; newsletter check"
    )


@command()
@click.argument("addresses", nargs=-1)
@click.option(
    "--from-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file with one address per line (or a CSV whose first column is the address).",
)
def unsubscribe(g: Globals, addresses: tuple[str, ...], from_file: Path | None) -> None:
    """Add ADDRESSES to unsubscribed.csv; every later send skips them."""
    wanted = list(addresses)
    if from_file is not None:
        with reported():
            wanted += suppression.read_address_file(from_file)
    if not wanted:
        fail("give at least one address, or --from-file FILE")
    if not g.campaign.is_dir():
        fail(f"campaign folder not found: {g.campaign}")
    target = g.campaign / suppression.UNSUBSCRIBED
    try:
        with reported():
            added = suppression.add_unsubscribed(target, wanted)
    except ValueError as exc:
        fail(str(exc))
    click.echo(f"{len(added)} address(es) added to {target}; {len(wanted) - len(added)} were already there.")


@command("unsubscribe-server")
@click.option(
    "--host",
    default=UNSUBSCRIBE_HOST,
    show_default=True,
    help="Address to listen on; keep the default and put an https reverse proxy in front.",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=UNSUBSCRIBE_PORT, show_default=True, help="0: any free port."
)
def unsubscribe_server(g: Globals, host: str, port: int) -> None:
    """Answer the unsubscribe links: a confirmation page, and one-click POSTs (RFC 8058).

    Verifies each link's token (NEWSLETTER_SECRET) and appends the address to the
    campaign folder's unsubscribed.csv, which every send reads. Ctrl-C stops it.
    """
    with reported():
        project = g.load()
        list_name = project.campaign.fields.get("list_name")
        app = unsubscribe_web.UnsubscribeApp(
            project.builder.links,
            project.folder / suppression.UNSUBSCRIBED,
            list_name=list_name if isinstance(list_name, str) else project.builder.links.list_id,
            on_unsubscribe=lambda address: out.print(f"unsubscribed: {address}"),
        )
    try:
        server = unsubscribe_web.make_unsubscribe_server(app, host=host, port=port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    out.print(f"Answering {project.builder.links.url} on http://{host}:{server.server_port}/ (Ctrl-C to stop).")
    out.print(f"Unsubscribes are appended to {app.target}.")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
