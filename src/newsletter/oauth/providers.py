"""The built-in sign-ins, as configuration: endpoints, scopes, client ids; the flows are generic.

Microsoft 365 and Outlook.com sign in with the device-code flow (RFC 8628, in
`newsletter.oauth.client`): we print a URL and a code, the user signs in with a
browser anywhere, and the refresh token is stored. Google does not allow the
Gmail scope in its device flow, so `login google` runs the installed-app flow
(a browser, a redirect to a loopback port) with `google-auth-oauthlib` and the
user's own OAuth client (its client-secret JSON); only that call needs the
library, and it is imported there.
"""

from __future__ import annotations

import importlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsletter.errors import TokenError
from newsletter.oauth.client import poll_device_flow, start_device_flow
from newsletter.oauth.store import Login, Store

MICROSOFT_TENANT = "common"  # work or school accounts of any tenant, and Outlook.com accounts
# The project has no application registered with Microsoft yet: until it has one, each
# user registers their own (the README says how) and sets SMTP_OAUTH_CLIENT_ID.
MICROSOFT_CLIENT_ID: str | None = None
MICROSOFT_SCOPE = "https://outlook.office.com/SMTP.Send offline_access"
GOOGLE_SCOPE = "https://mail.google.com/"
GOOGLE_TOKEN_ENDPOINT = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL)
EXTRA_HINT = "install the sign-in support first: pip install 'newsletter[oauth]'"


@dataclass(frozen=True)
class DeviceProvider:
    """A provider that signs in with the device-code flow."""

    name: str
    device_endpoint: str
    token_endpoint: str
    scope: str


def microsoft(tenant: str | None = None) -> DeviceProvider:
    base = f"https://login.microsoftonline.com/{tenant or MICROSOFT_TENANT}/oauth2/v2.0"
    return DeviceProvider("microsoft", f"{base}/devicecode", f"{base}/token", MICROSOFT_SCOPE)


def microsoft_client_id(configured: str | None) -> str:
    client_id = configured or MICROSOFT_CLIENT_ID
    if not client_id:
        raise TokenError(
            "SMTP_OAUTH_CLIENT_ID is not set: register an application for your organisation in "
            "Microsoft Entra (README: 'Microsoft 365 and Gmail') and set its Application (client) ID"
        )
    return client_id


def device_login(
    provider: DeviceProvider,
    user: str,
    *,
    client_id: str,
    store: Store,
    show: Callable[[str], None],
    context: ssl.SSLContext | None = None,
    sleep: Callable[[float], None] | None = None,
) -> Login:
    """Sign `user` in with the device-code flow and store the refresh token."""
    code = start_device_flow(provider.device_endpoint, client_id=client_id, scope=provider.scope, context=context)
    show(code.message or f"To sign in, open {code.verification_uri} and enter the code {code.user_code}")
    extra: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
    grant = poll_device_flow(code, provider.token_endpoint, client_id=client_id, context=context, **extra)
    if not grant.refresh_token:
        raise TokenError(f"{provider.name} signed you in but gave no refresh token (offline_access was not granted)")
    login = Login(provider.name, user, provider.token_endpoint, client_id, grant.refresh_token, scope=provider.scope)
    store.save(login)
    return login


def optional(module: str) -> Any:
    """A module of the `oauth` extra, or a TokenError that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise TokenError(f"{module.split('.')[0]} is not installed: {EXTRA_HINT}") from None


def google_login(user: str, client_secrets: Path, *, store: Store, show: Callable[[str], None]) -> Login:
    """Sign `user` in with Google's installed-app flow (a browser, a loopback redirect) and store it."""
    flow_module = optional("google_auth_oauthlib.flow")
    try:
        flow = flow_module.InstalledAppFlow.from_client_secrets_file(str(client_secrets), scopes=[GOOGLE_SCOPE])
    except (OSError, ValueError) as exc:
        raise TokenError(f"{client_secrets}: not a client-secret JSON of a Google OAuth client ({exc})") from None
    credentials = flow.run_local_server(
        host="127.0.0.1",
        port=0,
        authorization_prompt_message="To sign in, open this address in a browser:\n{url}",
        success_message="Signed in; you can close this tab and go back to the terminal.",
        open_browser=True,
        login_hint=user,
        prompt="consent",  # so that Google sends a refresh token again on a second login
    )
    if not credentials.refresh_token:
        raise TokenError("Google signed you in but gave no refresh token; run the login again")
    login = Login(
        "google",
        user,
        credentials.token_uri or GOOGLE_TOKEN_ENDPOINT,
        credentials.client_id,
        credentials.refresh_token,
        scope=GOOGLE_SCOPE,
        client_secret=credentials.client_secret,
    )
    store.save(login)
    return login
