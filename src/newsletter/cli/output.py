"""What the CLI prints, and how it stops: the two consoles, errors, and the reports several commands share."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, NoReturn

from rich.console import Console
from rich.text import Text

from newsletter.errors import EXIT_INPUT

if TYPE_CHECKING:
    from newsletter.checks.preflight import Preflight
    from newsletter.delivery.plan import Summary
    from newsletter.project import Project

# markup off: addresses, replies and file names are printed as they are.
out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)

SHOWN_DUPLICATES = 20


def fail(message: str, code: int = EXIT_INPUT) -> NoReturn:
    err.print(Text("error: ", style="bold red") + Text(message))
    sys.exit(code)


def print_preflight(report: Preflight, list_name: str) -> None:
    """The pre-send check's problems, one `file:line:` line each (the first of many, counted)."""
    for row in report.invalid:
        field = f" field '{row.field}':" if row.field else ""
        err.print(f"{list_name}:{row.line}:{field} {row.reason}")
    if report.invalid_count > len(report.invalid):
        err.print(f"... and {report.invalid_count - len(report.invalid)} more invalid rows")
    for dup in report.duplicates[:SHOWN_DUPLICATES]:
        err.print(f"{list_name}:{dup.line}: duplicate of line {dup.first_line} ({dup.email}); sent once")
    if report.duplicate_count > SHOWN_DUPLICATES:
        err.print(f"... and {report.duplicate_count - SHOWN_DUPLICATES} more duplicates")
    for error in report.template_errors:
        err.print(str(error))


def destination(project: Project) -> str:
    """Where messages go, as the user configured it."""
    smtp = project.settings.smtp
    if smtp is None:
        return f"outbox folder {project.outbox} (no SMTP_HOST set)"
    who = f" as {smtp.username}" if smtp.username else ""
    who += " with XOAUTH2" if smtp.auth == "xoauth2" else ""
    return f"SMTP {smtp.address} ({smtp.security}){who}"


def per_second(rate: float) -> str:
    """A sending rate as every report prints it: `1,204/s`, `7.5/s`."""
    return f"{rate:,.0f}/s" if rate >= 10 else f"{rate:.1f}/s"


def suppressed_detail(summary: Summary) -> str:
    return f"{summary.unsubscribed} unsubscribed, {summary.bounced} failed permanently in an earlier campaign"


def print_summary(summary: Summary) -> None:
    parts = [f"{summary.sent} sent", f"{summary.failed} failed", f"{summary.deferred} deferred"]
    if summary.unknown:
        parts.append(f"{summary.unknown} unknown")
    skipped = summary.already_done + summary.skipped_unknown + summary.suppressed
    parts.append(f"{skipped} skipped")
    out.print(f"{', '.join(parts)} in {summary.elapsed:.1f} s ({per_second(summary.rate)}).")
    details = []
    if summary.already_done:
        details.append(f"{summary.already_done} done in earlier runs")
    if summary.skipped_unknown:
        details.append(f"{summary.skipped_unknown} unknown (see --resend-unknown)")
    if summary.suppressed:
        details.append(f"{summary.suppressed} suppressed ({suppressed_detail(summary)})")
    if details:
        out.print("Skipped: " + "; ".join(details) + ".")
