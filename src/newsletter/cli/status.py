"""`newsletter status`: what the journal knows about this campaign."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import click
from rich.table import Table

from newsletter.cli.base import command, load, reported, run
from newsletter.cli.output import destination, out, per_second, suppressed_detail
from newsletter.delivery.states import DEFERRED, FAILED, SENDING, SENT, UNKNOWN
from newsletter.delivery.transports.redact import printable
from newsletter.inputs.folder import CampaignFolder


def _csv_cell(value: object) -> str:
    """Cells that a spreadsheet would run as a formula are quoted with a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@command(short_help="Who got it, who did not, and why: what the journal knows.")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the failed, deferred and unknown recipients to this CSV.",
)
def status(source: CampaignFolder, csv_path: Path | None) -> None:
    """What the journal knows about this campaign: totals, rate, and every recipient with a problem."""
    with reported():
        project = load(source)
        report = run.status(project)
    counts = report.counts
    table = Table(title=f"Campaign {project.campaign.id} — {destination(project)}", title_justify="left")
    table.add_column("state")
    table.add_column("recipients", justify="right")
    for state in (SENT, FAILED, DEFERRED, UNKNOWN, SENDING):
        table.add_row(state, str(counts.get(state, 0)))
    if report.pending is not None and report.plan is not None:
        table.add_row("pending", str(report.pending))
        table.add_row("suppressed", str(report.plan.suppressed))
    out.print(table)
    if not counts:
        out.print("No send has run from this folder yet (there is no journal).")
    if report.plan is not None and report.plan.suppressed:
        out.print(f"Suppressed, never sent to: {suppressed_detail(report.plan)} (--ignore-suppression overrides).")
    if report.last_run is not None:
        started, seconds, sent = report.last_run
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(started))
        rate = per_second(sent / seconds if seconds > 0 else 0.0)
        out.print(f"Last run ({when}): {sent} sent in {seconds:.1f} s ({rate}).")
    entries = report.problems
    if entries:
        problems = Table(title="Recipients needing attention", title_justify="left")
        for column in ("line", "email", "state", "attempts", "last reply"):
            problems.add_column(column)
        for e in entries:
            reply = printable(f"{e.code or ''} {e.reply or ''}")  # relay text: no escape sequences
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
