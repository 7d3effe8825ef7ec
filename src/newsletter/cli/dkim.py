"""`newsletter dkim keygen`: a DKIM key for the campaign's domain, and the DNS record to publish."""

from __future__ import annotations

import os
from pathlib import Path

import click

from newsletter.cli.base import _campaign_folder, global_options, main, reported
from newsletter.cli.output import err, fail, out
from newsletter.errors import NewsletterError
from newsletter.inputs.folder import inside

DEFAULT_KEY_FOLDER = Path("~/.newsletter/dkim")


@main.group(short_help="Make a DKIM key and print the DNS record to publish.")
def dkim() -> None:
    """DKIM keys: signing with the From domain, so DMARC passes whatever the relay does."""


def _from_domain() -> str | None:
    """The domain of NEWSLETTER_FROM or of the announcement's `from`, when either can be read."""
    from newsletter.inputs.campaign import load_campaign
    from newsletter.message.headers import ascii_domain, parse_mailbox

    source = _campaign_folder()
    try:
        sender = os.environ.get("NEWSLETTER_FROM") or load_campaign(source.root).sender
        return ascii_domain(parse_mailbox(sender, where="from").domain) if sender else None
    except (NewsletterError, OSError, ValueError):
        return None


@dkim.command()
@click.option("--selector", required=True, help="The name the key is published under: SELECTOR._domainkey.DOMAIN.")
@click.option("--ed25519", is_flag=True, help="An Ed25519 key (RFC 8463) instead of RSA 2048.")
@click.option("--domain", help="The signing domain (d=).  [default: the From domain of the campaign]")
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Where to write the private key.  [default: {DEFAULT_KEY_FOLDER}/SELECTOR.DOMAIN.pem]",
)
@global_options
def keygen(selector: str, ed25519: bool, domain: str | None, out_path: Path | None) -> None:
    """Write a new private key (mode 0600, never over an existing file) and print its DNS TXT record.

    For dual signing run it twice, once with --ed25519, with two selectors, and give
    both keys and both selectors (comma-separated, same order) in the settings.
    """
    from newsletter.inputs.settings import _SELECTOR
    from newsletter.message.dkim import generate_key, txt_strings, write_key

    if not _SELECTOR.match(selector):
        fail(f"--selector: not a DNS label: {selector!r}")
    domain = (domain or _from_domain() or "").rstrip(".").lower()
    if not domain:
        fail("no domain: give --domain, or set `from` in announcement.md or NEWSLETTER_FROM")
    path = (out_path or DEFAULT_KEY_FOLDER / f"{selector}.{domain}.pem").expanduser()
    if out_path is None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with reported():
        key, pem = generate_key(selector=selector, domain=domain, ed25519=ed25519)
        write_key(path, pem)
    if inside(path.resolve(), _campaign_folder().root):
        err.print(
            f"Note: {path} is inside the campaign folder; move it out before you share the folder "
            "(it is refused there unless NEWSLETTER_DKIM_KEY_IN_FOLDER=1 is set in the environment)."
        )
    kind = "Ed25519" if ed25519 else "RSA 2048"
    out.print(f"Wrote a new {kind} private key to {path} (readable by you only; keep it secret, keep a copy).")
    out.print(f"\nPublish this TXT record in the DNS of {domain}:\n")
    out.print(f"{key.record_name}. IN TXT {txt_strings(key.dns_record())}")
    out.print("\nThen add to your settings (the environment or .env):\n")
    out.print(f"NEWSLETTER_DKIM_KEY={path}")
    out.print(f"NEWSLETTER_DKIM_SELECTOR={selector}")
    out.print("\nand run `newsletter check --dns` once the record is visible.")
