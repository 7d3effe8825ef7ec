"""Recipients the templates cannot fill, and rows that will not be sent to, as findings.

The scan renders the first rows' templates without CSS inlining: enough to find a
column the templates need and the list lacks, in a fraction of a full render.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from pathlib import Path

from newsletter.checks.findings import Finding, relative, who
from newsletter.errors import TemplateError
from newsletter.inputs.recipients import DuplicateRow, InvalidRow, Recipient
from newsletter.project import Project
from newsletter.render.template_errors import template_location

# The recipients scan renders the templates without CSS inlining, about 0.3 ms a row:
# the first rows find a missing column at once; `newsletter check` renders them all.
SCAN_ROWS = 500
SCAN_FAILURES = 20

def scan_recipients(
    project: Project, *, rows: int = SCAN_ROWS, failures: int = SCAN_FAILURES
) -> list[Finding]:
    """Render the first `rows` recipients' templates; one finding per cause, naming who.

    Stops after `failures` failing recipients so that a column missing from a
    100,000-row list costs no more than a handful of renders.
    """
    folder = project.folder
    templates = project.campaign.templates_dir
    causes: dict[tuple[str | None, int | None, str], list[Recipient]] = {}
    codes: dict[tuple[str | None, int | None, str], str] = {}
    failing = 0
    for recipient in islice(project.recipients.recipients(), rows):
        try:
            project.renderer.render_templates(recipient)
        except Exception as exc:  # template code raises arbitrary errors
            path, line = template_location(exc, templates)
            code, reason = project.renderer.for_fields(recipient.fields).explain(exc, recipient.fields)
            key = (relative(path, folder), line, reason)
            causes.setdefault(key, []).append(recipient)
            codes[key] = code
            failing += 1
            if failing >= failures:
                break
    findings = []
    for key, recipients in causes.items():
        path_text, line, reason = key
        if failing >= failures:
            reason += f"; at least {len(recipients)} recipients affected"
        elif len(recipients) > 1:
            reason += f"; {len(recipients)} recipients affected"
        findings.append(Finding("error", codes[key], reason, path_text, line, who(recipients[0])))
    return findings


def template_findings(errors: Iterable[TemplateError], folder: Path) -> list[Finding]:
    """Errors a render raised, as findings (the preview page shows its own render's this way)."""
    return [
        Finding(
            "error",
            error.code,
            error.reason,
            relative(error.path, folder),
            error.line,
            error.recipient,
        )
        for error in errors
    ]


def row_findings(
    path: Path,
    invalid: Iterable[InvalidRow],
    duplicates: Iterable[DuplicateRow],
    *,
    invalid_count: int,
    duplicate_count: int,
    folder: Path,
    shown: int = 20,
) -> list[Finding]:
    """Rows that will not be sent to (errors) or are sent to once for an earlier line (info)."""
    name = relative(path, folder)
    findings = []
    for row in islice(invalid, shown):
        field_text = f"field '{row.field}': " if row.field else ""
        reason = f"{field_text}{row.reason}"
        findings.append(Finding("error", "invalid-row", reason, name, row.line))
    if invalid_count > shown:
        reason = f"{invalid_count - shown} more invalid rows"
        findings.append(Finding("error", "invalid-row", reason, name))
    for dup in islice(duplicates, shown):
        reason = f"duplicate of line {dup.first_line} ({dup.email}); sent once"
        findings.append(Finding("info", "duplicate-row", reason, name, dup.line))
    if duplicate_count > shown:
        reason = f"{duplicate_count - shown} more duplicate rows"
        findings.append(Finding("info", "duplicate-row", reason, name))
    return findings
