"""`newsletter send`: the list (or one test message), with confirmation, progress and a summary."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from newsletter.cli.base import EXIT_SIGNAL, command, example_note, load, reported, run, with_example_list
from newsletter.cli.output import destination, err, fail, out, print_preflight, print_summary
from newsletter.cli.progress import ProgressReporter, Signals, new_progress
from newsletter.defaults import DEFAULT_CONNECTIONS, MAX_ATTEMPTS, MAX_CONNECTIONS, RECONNECT_FOR, RETRY_DELAY
from newsletter.delivery.transports.redact import printable
from newsletter.errors import EXIT_FAILED, EXIT_INPUT, Cancelled, ConfigError, Interrupted
from newsletter.inputs.folder import EXAMPLE_RECIPIENTS, RECIPIENTS, CampaignFolder
from newsletter.inputs.settings import parse_rate

if TYPE_CHECKING:
    from newsletter.project import Project


def _rate_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        try:
            parse_rate(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--rate") from None
    return value


@command(short_help="Send to the list (with no SMTP_HOST: to outbox/); run again to resume.")
@click.option("--dry-run", is_flag=True, help="Render and count everything; send nothing.")
@click.option("--limit", type=click.IntRange(min=1), help="Hand over at most N messages in this run.")
@click.option(
    "--to", "to", metavar="ADDRESS", help="Send one [TEST] message, rendered for the first recipient, to ADDRESS only."
)
@click.option(
    "--rate",
    metavar="N",
    callback=_rate_option,
    help="Messages per second over all connections; also N/min or N/hour.",
)
@click.option(
    "--connections",
    type=click.IntRange(1, MAX_CONNECTIONS),
    help=f"Parallel SMTP connections (default {DEFAULT_CONNECTIONS}).",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--skip-invalid", is_flag=True, help="Send to the valid rows even if some rows are invalid.")
@click.option(
    "--resend-unknown", is_flag=True, help="Also send to recipients whose earlier delivery outcome is unknown."
)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Send again to this campaign's recipients recorded `failed` (after a relay problem was fixed).",
)
@click.option("--ignore-suppression", is_flag=True, help="Also send to unsubscribed and permanently failed addresses.")
@click.option(
    "--max-attempts",
    type=click.IntRange(1, 20),
    default=MAX_ATTEMPTS,
    show_default=True,
    help="Tries per recipient for temporary (4xx) refusals.",
)
@click.option(
    "--retry-delay",
    type=click.FloatRange(0),
    default=RETRY_DELAY,
    show_default=True,
    help="Seconds before the first retry; doubles each time.",
)
@click.option(
    "--reconnect-for",
    type=click.FloatRange(0),
    default=RECONNECT_FOR,
    show_default=True,
    help="Seconds to keep reconnecting to a relay that went away before the run stops.",
)
def send(
    source: CampaignFolder,
    dry_run: bool,
    limit: int | None,
    to: str | None,
    rate: str | None,
    connections: int | None,
    yes: bool,
    skip_invalid: bool,
    resend_unknown: bool,
    retry_failed: bool,
    ignore_suppression: bool,
    max_attempts: int,
    retry_delay: float,
    reconnect_for: float,
) -> None:
    """Send the announcement to the list (or to the outbox folder when no SMTP_HOST is set).

    Safe to run again: recipients the journal records as sent are skipped, so an
    interrupted send continues where it stopped.
    """
    from newsletter.delivery.plan import SendOptions

    source, example = with_example_list(source, quiet=True)
    with reported():
        project = load(
            source,
            NEWSLETTER_RATE=rate,
            NEWSLETTER_CONNECTIONS=str(connections) if connections else None,
        )
        if example and project.settings.smtp is not None and to is None and not dry_run:
            raise ConfigError(
                f"file not found; {EXAMPLE_RECIPIENTS} beside it holds example addresses, which are not "
                f"sent to a relay unless you ask: copy your own list to {RECIPIENTS}, or name a list with "
                "--recipients FILE",
                path=RECIPIENTS,
            )
        if example:
            example_note(source)
        if to is not None:
            outgoing = run.send_test(project, to)
            address = outgoing.envelope.recipient
            out.print(f"Test message {outgoing.message_id} delivered to {address} via {destination(project)}.")
            return
    options = SendOptions(
        connections=project.settings.connections,
        rate=project.settings.rate,
        limit=limit,
        resend_unknown=resend_unknown,
        retry_failed=retry_failed,
        ignore_suppression=ignore_suppression,
        max_attempts=max_attempts,
        retry_delay=retry_delay,
        reconnect_for=reconnect_for,
    )
    progress = new_progress()
    reporter = ProgressReporter(progress)
    with Signals() as signals, reported():
        try:
            result = run.send(
                project,
                options=options,
                confirm=lambda asked: _confirm(asked, yes=yes),
                progress=reporter,
                stop=signals.stop,
                dry_run=dry_run,
                skip_invalid=skip_invalid,
            )
        except Interrupted as exc:
            err.print(f"Interrupted: {exc}.")
            sys.exit(EXIT_SIGNAL.get(signals.received, 130) if signals.received else 130)
        finally:
            reporter.flush()
            progress.stop()
    summary = result.summary
    if dry_run:
        out.print(
            f"Dry run: {summary.planned} message(s) would be sent via {destination(project)}; "
            f"{summary.already_done} already done, {summary.skipped_unknown} unknown skipped, "
            f"{summary.suppressed} suppressed."
        )
        return
    if result.nothing_to_send and summary.fatal is None:
        if result.outstanding:
            out.print(f"Nothing new to send; {_outstanding(result)}: see `newsletter status`.")
            sys.exit(EXIT_FAILED)
        hint = " (delete the outbox folder to write it again)" if project.channel == "outbox" else ""
        out.print(f"Nothing to send: every recipient is done{hint}. `newsletter status` shows the details.")
        return
    if signals.received is not None:
        summary.interrupted = True
        print_summary(summary)
        err.print("Interrupted. Run the same command again to continue; nobody who got it gets it twice.")
        sys.exit(EXIT_SIGNAL.get(signals.received, 130))
    _finish(project, result)


def _ask(question: str) -> None:
    if not sys.stdin.isatty():
        raise Cancelled("refusing to send without confirmation: standard input is not a terminal; add --yes")
    if not click.confirm(question, default=False, err=True):
        raise Cancelled("cancelled; nothing was sent")


def _confirm(asked: run.Confirmation, *, yes: bool) -> bool:
    """The check's notes, then the questions a send asks before its first message, unless --yes."""
    print_preflight(asked.check, asked.list_name)
    if asked.ignore_suppression and not yes:
        _ask("--ignore-suppression sends to addresses that unsubscribed or failed permanently. Continue?")
    if asked.summary.retrying_failed and not yes and not asked.dry_run:
        _ask(f"--retry-failed sends again to {asked.summary.retrying_failed} recipient(s) recorded failed. Continue?")
    if asked.dry_run:
        return True
    if asked.recovered:
        err.print(
            f"{asked.recovered} recipient(s) were being sent to when an earlier run stopped: their "
            "outcome is unknown. They are skipped; `newsletter status` lists them, and "
            "--resend-unknown sends to them."
        )
    if asked.planned and asked.relay is not None and not yes:
        _ask(f"Send {asked.planned} message(s) to {asked.relay} as {asked.sender}?")
    return True


def _outstanding(result: run.SendResult) -> str:
    """`4 unknown, 2 failed`: the campaign's recipients whose fate is not `sent`."""
    return ", ".join(f"{count} {state}" for state, count in result.outstanding.items())


SHOWN_PROBLEMS = 20


def _finish(project: Project, result: run.SendResult) -> None:
    """The run's summary, then the campaign's: exit 1 while anyone's fate is not `sent`."""
    summary = result.summary
    print_summary(summary)
    if project.settings.smtp is None:
        out.print(f"Delivered to the outbox folder {project.outbox} (no SMTP_HOST set).")
    if summary.fatal is not None and summary.fatal.exit_code == EXIT_INPUT:  # TLS, login, SIZE: fix, run again
        fail(str(summary.fatal), summary.fatal.exit_code)
    if summary.fatal is not None:
        fail(f"{summary.fatal}; run the same command again to continue", EXIT_FAILED)
    if result.outstanding:
        for entry in result.problems[:SHOWN_PROBLEMS]:
            code = f"{entry.code} " if entry.code else ""
            err.print(printable(f"  {entry.email} (line {entry.line}): {entry.state}: {code}{entry.reply or ''}"))
        if len(result.problems) > SHOWN_PROBLEMS:
            err.print(f"  ... and {len(result.problems) - SHOWN_PROBLEMS} more")
        err.print(f"The campaign has {_outstanding(result)}: see `newsletter status`.")
        sys.exit(EXIT_FAILED)
