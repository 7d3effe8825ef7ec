"""`newsletter preview`: one recipient's message as files, or the live preview page."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

import click

from newsletter.cli.base import command, ensure_folder, load, reported, run, with_example_list
from newsletter.cli.output import fail, out
from newsletter.inputs.folder import CampaignFolder


@command(short_help="One recipient's message as files, or every recipient's on a live page.")
@click.option("--recipient", "email", metavar="EMAIL", help="Whose message to show (default: the first).")
@click.option(
    "--out",
    "out_dir",
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
    source: CampaignFolder,
    email: str | None,
    out_dir: Path | None,
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
        if out_dir is not None:
            fail("--out writes files; it cannot be combined with --serve")
        _serve_preview(with_example_list(source, required=False)[0], email, port, open_browser)
        return
    source, _ = with_example_list(source)
    with reported():
        files = run.preview(load(source), out=out_dir, email=email, web_version=web_version)
    click.echo(f"Preview for {files.recipient.email} (line {files.recipient.line}):")
    for path in (files.html, files.text, files.eml):
        click.echo(f"  {path}")
    if files.web_version is not None:
        click.echo(f"Web version (no recipient data): {files.web_version}")
    if open_browser:
        click.launch(files.html.as_uri())


def _serve_preview(source: CampaignFolder, email: str | None, port: int | None, open_browser: bool) -> None:
    """Run the preview server in the foreground until Ctrl-C."""
    from newsletter.web.preview import Source, open_server  # the web server loads only for --serve

    ensure_folder(source)
    with reported():
        server = open_server(Source(source, lambda: load(source)), port=port)
    url = server.url_for(email)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the server as cleanly as Ctrl-C

    # SIGINT too, even when it came in ignored: a shell starts a background job (`&`)
    # with SIGINT ignored, and `kill -INT` would then leave the page running for good.
    # Both before the address is printed: a script that waits for it may signal at once.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        out.print(f"Preview of {source.root} at {url}")
        out.print("The page follows announcement.md, templates/, the CSV and .env as you edit them. Ctrl-C stops.")
        sys.stdout.flush()  # the address is the one thing a script reading our output waits for
        if open_browser:
            click.launch(url)
        server.serve_forever()
    except KeyboardInterrupt:
        out.print("Stopped.")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.server_close()
