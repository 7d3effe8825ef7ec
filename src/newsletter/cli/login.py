"""`newsletter login` and `logout`: the one-time OAuth sign-in SMTP_AUTH=xoauth2 renews on each send."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import click

from newsletter.cli.base import command, reported
from newsletter.cli.output import err, fail, out
from newsletter.inputs.folder import CampaignFolder
from newsletter.inputs.settings import OAUTH_PROVIDERS, SMTPSettings, load_settings
from newsletter.lazy import lazy_import

if TYPE_CHECKING:
    from newsletter.oauth import providers, store
else:
    # The HTTP client (urllib, http.client) loads only for a login: `--help` stays fast.
    providers = lazy_import("newsletter.oauth.providers")
    store = lazy_import("newsletter.oauth.store")

_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,253}$")  # a domain, a GUID, common, organizations


def _smtp_settings(source: CampaignFolder) -> SMTPSettings | None:
    """The campaign's SMTP settings, for the user name, tenant and client id; no campaign needed."""
    settings = load_settings(
        environ=os.environ,
        env_file=source.settings_file,
        found_in=source.root if source.env_file is None else None,
    )
    return settings.smtp


def _user(given: str | None, smtp: SMTPSettings | None) -> str:
    user = given or (smtp.username if smtp is not None else None)
    if not user:
        fail("say which mailbox to sign in as: --user ADDRESS, or set SMTP_USERNAME")
    return user


@command(short_help="Sign in once with Microsoft or Google (SMTP_AUTH=xoauth2).")
@click.argument("provider", type=click.Choice(OAUTH_PROVIDERS))
@click.option("--user", metavar="ADDRESS", help="The mailbox to sign in as (default: SMTP_USERNAME).")
@click.option("--tenant", help="Microsoft: your organisation's tenant (default: SMTP_OAUTH_TENANT, else common).")
@click.option("--client-id", help="Microsoft: the Application (client) ID (default: SMTP_OAUTH_CLIENT_ID).")
@click.option(
    "--client-secrets",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Google: the client-secret JSON of your own OAuth client (a 'Desktop app').",
)
def login(
    source: CampaignFolder,
    provider: str,
    user: str | None,
    tenant: str | None,
    client_id: str | None,
    client_secrets: Path | None,
) -> None:
    """Sign in once with Microsoft or Google, for SMTP_AUTH=xoauth2.

    Stores the refresh token in the system keyring (or a private file in your
    configuration folder, never in the campaign folder); every later send renews
    its access token from it.
    """
    with reported():
        smtp = _smtp_settings(source)
        address = _user(user, smtp)
        where = store.default_store()
        if provider == "microsoft":
            tenant = tenant or (smtp.oauth_tenant if smtp is not None else None) or providers.MICROSOFT_TENANT
            if not _TENANT.match(tenant):
                fail(f"--tenant: expected a domain or a tenant ID, got {tenant!r}")
            chosen = providers.microsoft_client_id(client_id or (smtp.oauth_client_id if smtp is not None else None))
            err.print(f"Signing in {address} with Microsoft (tenant {tenant}).")
            providers.device_login(providers.microsoft(tenant), address, client_id=chosen, store=where, show=err.print)
        else:
            if client_secrets is None:
                fail(
                    "login google needs --client-secrets FILE: the JSON of an OAuth client of type "
                    "'Desktop app' from your Google Cloud project (README: 'Microsoft 365 and Gmail')"
                )
            providers.google_login(address, client_secrets, store=where, show=err.print)
    out.print(f"Signed in as {address} with {provider}; the sign-in is kept in {where.name}.")
    out.print("Set SMTP_AUTH=xoauth2 (and SMTP_USERNAME to this address) to send with it.")


@command()
@click.argument("provider", type=click.Choice(OAUTH_PROVIDERS))
@click.option("--user", metavar="ADDRESS", help="The mailbox to sign out (default: SMTP_USERNAME).")
def logout(source: CampaignFolder, provider: str, user: str | None) -> None:
    """Forget the stored sign-in of a mailbox with PROVIDER."""
    with reported():
        address = _user(user, _smtp_settings(source))
        where = store.default_store()
        removed = where.delete(provider, address)
    if not removed:
        out.print(f"No {provider} sign-in was stored for {address} in {where.name}.")
        return
    out.print(f"Forgot the {provider} sign-in of {address} (from {where.name}).")
    out.print("The provider keeps the grant until you revoke it in your account's security settings.")
