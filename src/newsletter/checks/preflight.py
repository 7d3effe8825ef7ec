"""The pre-send check: every row read, every recipient rendered, before anything is sent.

Nothing leaves until this has proved that each recipient's message can be made
(template errors, missing fields, budgets, images), so a problem on row 90,000 stops
the run before row 1 gets anything. The rendering runs in child processes (one per
core) while this one reads the list. When a send asks for it, the messages the check
builds for the recipients it will send to are kept in a `Spool` and sent from there:
each recipient is rendered once per run.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial

from newsletter.defaults import MAX_TEMPLATE_ERRORS
from newsletter.delivery.buildpool import BuildPool
from newsletter.delivery.plan import Plan
from newsletter.delivery.spool import Location, Spool
from newsletter.errors import Interrupted, TemplateError
from newsletter.inputs.recipients import Recipient, RowProblems
from newsletter.message.builder import Outgoing
from newsletter.project import Project

KEPT_PROBLEMS = 1000  # problems listed in full; beyond this only counted


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

    def refusal(self, list_name: str, *, skip_invalid: bool = False) -> str | None:
        """Why a send must not go ahead after this check, or None when it may."""
        if self.template_errors:
            failed = len(self.template_errors)
            shown = f"{failed}+" if failed >= MAX_TEMPLATE_ERRORS else str(failed)  # the check stopped there
            return f"{shown} recipient(s) cannot be rendered (above); nothing was sent"
        if self.invalid_count and not skip_invalid:
            return (
                f"{self.invalid_count} invalid row(s) in {list_name}: fix them, or pass --skip-invalid to send "
                "to the valid rows only"
            )
        if self.valid == 0:
            return f"{list_name}: no valid recipient in the list (a header row alone, or every row invalid)"
        return None


Checked = tuple[TemplateError | None, int, Location | None]
"""One recipient's result: the error, or the size of its HTML; and where its batch was spooled."""


def preflight(
    project: Project,
    *,
    plan: Plan | None = None,
    spool: Spool | None = None,
    max_template_errors: int = MAX_TEMPLATE_ERRORS,
    stop: threading.Event | None = None,
) -> Preflight:
    """Read every row and render every valid recipient; collect the problems instead of stopping.

    A `plan` counts, in the same pass, whom a send would select; with a `spool`, the
    messages of those selected are built and kept there, in list order. `stop` set
    (Ctrl-C) ends the check at once with Interrupted: a long list must not make the
    user wait for a check whose send they no longer want.
    """
    report = Preflight()
    largest: Recipient | None = None

    def valid_rows() -> Iterator[Recipient]:
        for row in project.recipients:
            if isinstance(row, Recipient):
                report.valid += 1
                yield row
            else:
                report.note(row)

    def to_render(items: Iterable[tuple[Recipient, bool]]) -> Iterator[tuple[Recipient, bool]]:
        for item in items:
            if stop is not None and stop.is_set():
                raise Interrupted("stopped during the check; nothing was sent")
            if len(report.template_errors) < max_template_errors:
                yield item

    rows = valid_rows()
    items = plan.mark(rows) if plan is not None else ((row, False) for row in rows)
    _warm_up(project)
    last: Location | None = None
    work = partial(_check_batch, project, spool)
    with BuildPool(work, processes=_processes(), batched=True) as pool:
        for (row, _), (error, size, location) in pool.map(to_render(items)):
            if error is not None:
                if len(report.template_errors) < max_template_errors:
                    report.template_errors.append(error)
            elif size > report.largest_html or largest is None:
                report.largest_html, largest = max(report.largest_html, size), row
            if spool is not None and location is not None and location != last:
                spool.add(location)
                last = location
    if largest is not None and not report.template_errors:
        # One real message, for the recipient whose HTML is biggest: its size is what the
        # relay's SIZE limit and Gmail see, with encodings and attachments counted.
        report.largest_message = len(project.message(largest)[1].data)
    return report


def _warm_up(project: Project) -> None:
    """Render the first recipient here, before any child is forked.

    The children inherit what that builds: above all the inlined skeleton of the common
    shape, which premailer takes tens of milliseconds to make and each child would
    otherwise make for itself.
    """
    first = next(iter(project.recipients.recipients()), None)
    if first is not None:
        _check_batch(project, None, [(first, False)])


def _processes() -> int:
    """Rendering processes: one per core. The sending process mostly waits on sockets."""
    return max(1, os.cpu_count() or 1)


def _check_batch(project: Project, spool: Spool | None, batch: list[tuple[Recipient, bool]]) -> list[Checked]:
    """Render a batch as the check does; build and spool the messages of those selected."""
    results: list[tuple[TemplateError | None, int]] = []
    built: list[tuple[Recipient, Outgoing]] = []
    for recipient, selected in batch:
        try:
            rendered = project.renderer.render(recipient)
            project.builder.check(rendered)  # e.g. an <img src> file that is missing
        except TemplateError as exc:
            results.append((exc, 0))
            continue
        results.append((None, len(rendered.html.encode())))
        if selected and spool is not None:
            built.append((recipient, project.builder.build(recipient, rendered)))
    location = spool.write(built) if spool is not None and built else None
    return [(error, size, location) for error, size in results]
