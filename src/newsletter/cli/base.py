"""The command group, the global options every command takes, and the one error handler.

Global options may come before or after the command (`newsletter send --recipients
list.csv`); they become one `CampaignFolder`, the record the library takes too.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from newsletter import __version__
from newsletter.cli.output import err, fail, print_preflight
from newsletter.errors import CheckFailed, NewsletterError
from newsletter.inputs.folder import DEFAULT_ENCODING, EXAMPLE_RECIPIENTS, RECIPIENTS, CampaignFolder
from newsletter.inputs.where import Where, parse_where
from newsletter.lazy import lazy_import

if TYPE_CHECKING:
    from newsletter import run as run
    from newsletter.project import Project
else:
    # `--help` must answer at once: the rendering stack (Jinja, premailer, cssutils,
    # lxml), the address validator and SQLite load on first use by a command.
    run = lazy_import("newsletter.run")

EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


@contextmanager
def reported() -> Iterator[None]:
    """Library errors become one clear line and their class's exit code; never a traceback."""
    try:
        yield
    except CheckFailed as exc:
        print_preflight(exc.report, exc.report_name)
        fail(exc.reason, exc.exit_code)
    except NewsletterError as exc:
        fail(str(exc), exc.exit_code)


def load(source: CampaignFolder, **overrides: str | None) -> Project:
    """The campaign the global options name, with flags that override settings."""
    return run.load(source, environ=os.environ, overrides={k: v for k, v in overrides.items() if v is not None})


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Global options may be given before or after the command; the later one wins."""
    if param.name == "where" and value:  # repeatable: before and after the command add up
        remembered = ctx.find_root().meta.setdefault("newsletter.globals", {})
        remembered["where"] = (*remembered.get("where", ()), *value)
    elif value is not None and value != () and param.name is not None:
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
        click.option("--encoding", help=f"Encoding of the CSV, e.g. cp1251 or latin-1.  [default: {DEFAULT_ENCODING}]"),
        click.option("--delimiter", help="CSV delimiter (default: sniffed from the header: , ; tab or |)."),
        click.option(
            "--where",
            multiple=True,
            metavar="COLUMN=VALUE",
            help="Only the rows whose COLUMN is VALUE (or with != is not; any case); repeat to narrow.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    for param in command.__click_params__[-len(options) :]:
        param.expose_value = False
        param.callback = _remember
    return command


def _campaign_folder() -> CampaignFolder:
    values: dict[str, Any] = click.get_current_context().find_root().meta.get("newsletter.globals", {})
    delimiter = values.get("delimiter")
    if delimiter is not None:
        delimiter = {"tab": "\t", "\\t": "\t"}.get(delimiter, delimiter)
        if len(delimiter) != 1:
            raise click.BadParameter("use one character, or 'tab'", param_hint="--delimiter")
    return CampaignFolder(
        path=values.get("campaign", Path(".")),
        recipients=values.get("recipients"),
        env_file=values.get("env_file"),
        encoding=values.get("encoding", DEFAULT_ENCODING),
        delimiter=delimiter,
        where=tuple(_where(text) for text in values.get("where", ())),
    )


def _where(text: str) -> Where:
    try:
        return parse_where(text)
    except NewsletterError as exc:
        raise click.BadParameter(str(exc).split(": ", 1)[-1], param_hint="--where") from None


def command(*args: Any, **kwargs: Any) -> Callable[[Callable[..., None]], click.Command]:
    """A subcommand of `main` that also takes the global options and receives the `CampaignFolder` first."""

    def decorate(function: Callable[..., None]) -> click.Command:
        @functools.wraps(function)
        def wrapper(*a: Any, **k: Any) -> None:
            function(_campaign_folder(), *a, **k)

        made: click.Command = main.command(*args, **kwargs)(global_options(wrapper))
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
@click.version_option(__version__, prog_name="newsletter")
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


def with_example_list(
    source: CampaignFolder, *, required: bool = True, quiet: bool = False
) -> tuple[CampaignFolder, bool]:
    """The folder with its list; without `recipients.csv`, the example list beside it, said in one line.

    Returns the folder to load and whether it uses the example list (`quiet`: the
    caller says so, with `example_note`, once it knows it will). With neither file
    (and `required`), stops with what to do instead of a bare "file not found".
    """
    example = source.example_list()
    if example is not None:
        if not quiet:
            example_note(source)
        return dataclasses.replace(source, recipients=example), True
    lacks_list = source.recipients is None and not source.recipients_path.exists()
    if required and lacks_list and source.announcement.is_file():  # else loading says what is missing
        fail(
            f"{RECIPIENTS}: file not found in {source.root}; put your list there (a header row with an "
            "`email` column, one recipient a row), or name it with --recipients FILE"
        )
    return source, False


def example_note(source: CampaignFolder) -> None:
    err.print(
        f"note: no {RECIPIENTS} in {source.root}; using {EXAMPLE_RECIPIENTS}, the example list "
        f"(copy your own list to {RECIPIENTS}, or name it with --recipients FILE)"
    )


def ensure_folder(source: CampaignFolder) -> None:
    if not source.root.is_dir():
        fail(f"campaign folder not found: {source.root}")
