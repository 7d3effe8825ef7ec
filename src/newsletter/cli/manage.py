"""`newsletter init`, `unsubscribe` and `unsubscribe-server`: making a campaign and keeping its list clean."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from newsletter.cli.base import command, ensure_folder, load, main, reported
from newsletter.cli.output import fail, out
from newsletter.defaults import UNSUBSCRIBE_HOST, UNSUBSCRIBE_PORT
from newsletter.inputs.folder import CampaignFolder
from newsletter.lazy import lazy_import

if TYPE_CHECKING:
    from newsletter import starter
    from newsletter.delivery import suppression
    from newsletter.web import unsubscribe as unsubscribe_web
else:
    starter = lazy_import("newsletter.starter")
    suppression = lazy_import("newsletter.delivery.suppression")
    unsubscribe_web = lazy_import("newsletter.web.unsubscribe")


@main.command(short_help="Write a starter campaign (the example announcement) into FOLDER.")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=Path("."))
def init(folder: Path) -> None:
    """Write a starter campaign (the example announcement) into FOLDER."""
    with reported():
        written = starter.init_campaign(folder)
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(
        f"Next: cd {folder}; cp recipients.example.csv recipients.csv; cp .env.example .env; "
        f"edit them; {invocation()} check"
    )


def invocation() -> str:
    """How to run this same `newsletter` from another folder: the bare name only when PATH finds it.

    After `pip install` into a virtualenv that is not activated, `newsletter` is not on
    PATH; the next steps then name the program by its full path (or `python -m newsletter`).
    """
    running = Path(sys.argv[0])
    found = shutil.which("newsletter")
    if found is not None and running.name == "newsletter" and Path(found).resolve() == running.resolve():
        return "newsletter"
    if running.name == "newsletter" and running.is_file():
        return shlex.quote(str(running.resolve()))
    if found is not None:
        return "newsletter"
    return f"{shlex.quote(sys.executable)} -m newsletter"


@command(short_help="Add addresses to unsubscribed.csv; every later send skips them.")
@click.argument("addresses", nargs=-1)
@click.option(
    "--from-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file with one address per line (or a CSV whose first column is the address).",
)
def unsubscribe(source: CampaignFolder, addresses: tuple[str, ...], from_file: Path | None) -> None:
    """Add ADDRESSES to unsubscribed.csv; every later send skips them."""
    wanted = list(addresses)
    if from_file is not None:
        with reported():
            wanted += suppression.read_address_file(from_file)
    if not wanted:
        fail("give at least one address, or --from-file FILE")
    ensure_folder(source)
    target = source.unsubscribed
    try:
        with reported():
            added = suppression.add_unsubscribed(target, wanted)
    except ValueError as exc:
        fail(str(exc))
    click.echo(f"{len(added)} address(es) added to {target}; {len(wanted) - len(added)} were already there.")


@command("unsubscribe-server", short_help="Answer unsubscribe links: a confirmation page and one-click POSTs.")
@click.option(
    "--host",
    default=UNSUBSCRIBE_HOST,
    show_default=True,
    help="Address to listen on; keep the default and put an https reverse proxy in front.",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=UNSUBSCRIBE_PORT, show_default=True, help="0: any free port."
)
def unsubscribe_server(source: CampaignFolder, host: str, port: int) -> None:
    """Answer the unsubscribe links: a confirmation page, and one-click POSTs (RFC 8058).

    Verifies each link's token (NEWSLETTER_SECRET) and appends the address to the
    campaign folder's unsubscribed.csv, which every send reads. Ctrl-C stops it.
    """
    with reported():
        project = load(source)
        list_name = project.campaign.fields.get("list_name")
        app = unsubscribe_web.UnsubscribeApp(
            project.builder.links,
            project.source.unsubscribed,
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
