"""The two OAuth 2.0 exchanges a sign-in needs, over HTTPS with the standard library.

- the refresh (RFC 6749 section 6): a stored refresh token for a new access token;
- the device authorization grant (RFC 8628): a code the user types on another
  device, then polling the token endpoint until they have signed in.

Both are written once here, for any provider; `newsletter.oauth.providers` only
names endpoints, client ids and scopes. The standard library is enough (a form
POST and a JSON answer), and it keeps these paths testable against a local HTTPS
endpoint. Whatever the endpoint answers is scrubbed of the secrets sent to it
before it reaches an error.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from newsletter.delivery.transports.redact import Redactor
from newsletter.errors import TokenError

HTTP_TIMEOUT = 30.0
MAX_ANSWER = 1 << 20  # a token answer is a few kilobytes
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass(frozen=True)
class Grant:
    """A token endpoint's answer: the access token, its lifetime, and a new refresh token if one came."""

    access_token: str = field(repr=False)
    expires_in: float | None = None
    refresh_token: str | None = field(default=None, repr=False)


def post_form(
    url: str,
    fields: Mapping[str, str],
    *,
    context: ssl.SSLContext | None = None,
    timeout: float = HTTP_TIMEOUT,
    redactor: Redactor | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST `fields` as a form to an https URL; (HTTP status, the JSON object answered).

    OAuth endpoints answer errors with a 400 and a JSON body, so an HTTP error is
    not an exception here; a network failure or an answer that is not JSON is.
    """
    scrub = redactor.clean if redactor is not None else str
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "https" or not parsed.hostname:
        raise TokenError(f"refusing to send OAuth secrets to {url!r}: only https:// endpoints are used")
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked above)
        url,
        data=urllib.parse.urlencode(fields).encode("ascii"),
        headers={"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    context = context or ssl.create_default_context()
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:  # noqa: S310
            status, body = answer.status, answer.read(MAX_ANSWER)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(MAX_ANSWER)
        exc.close()
    except urllib.error.URLError as exc:
        reason = exc.reason.reason if isinstance(exc.reason, ssl.SSLError) else exc.reason
        raise TokenError(f"cannot reach {parsed.hostname}: {scrub(str(reason))}") from None
    except (OSError, ValueError) as exc:
        raise TokenError(f"cannot reach {parsed.hostname}: {scrub(str(exc))}") from None
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        data = None
    if not isinstance(data, dict):
        raise TokenError(f"{parsed.hostname} answered HTTP {status} without a JSON object")
    return status, data


def _error_text(data: Mapping[str, Any], redactor: Redactor | None) -> str:
    error = str(data.get("error", "unknown_error"))
    description = str(data.get("error_description", "")).strip()
    text = f"{error}: {description}" if description else error
    return redactor.clean(text) if redactor is not None else text


def _grant(data: Mapping[str, Any], host: str) -> Grant:
    token = data.get("access_token")
    if not isinstance(token, str) or not token.strip():
        raise TokenError(f"{host} answered without an access token")
    expires = data.get("expires_in")
    try:
        expires_in = float(expires) if expires is not None else None
    except (TypeError, ValueError):
        expires_in = None
    refresh = data.get("refresh_token")
    return Grant(token.strip(), expires_in, refresh if isinstance(refresh, str) and refresh else None)


def refresh(
    token_endpoint: str,
    *,
    client_id: str,
    refresh_token: str,
    client_secret: str | None = None,
    scope: str | None = None,
    context: ssl.SSLContext | None = None,
    timeout: float = HTTP_TIMEOUT,
) -> Grant:
    """A new access token for a refresh token (RFC 6749 section 6).

    TokenError names the endpoint's `error` (`invalid_grant`: the sign-in expired
    or was revoked) with its description, the secrets scrubbed out.
    """
    fields = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    if client_secret:
        fields["client_secret"] = client_secret
    if scope:
        fields["scope"] = scope
    redactor = Redactor(None, secrets=[refresh_token, client_secret or ""])
    status, data = post_form(token_endpoint, fields, context=context, timeout=timeout, redactor=redactor)
    host = urllib.parse.urlsplit(token_endpoint).hostname or token_endpoint
    if status != 200 or "error" in data:
        raise TokenError(f"{host} refused to renew the access token ({_error_text(data, redactor)})")
    return _grant(data, host)


@dataclass(frozen=True)
class DeviceCode:
    """What the user must do (open `verification_uri`, type `user_code`), and how long it holds."""

    device_code: str = field(repr=False)
    user_code: str
    verification_uri: str
    expires_in: float
    interval: float
    message: str | None = None


def start_device_flow(
    device_endpoint: str,
    *,
    client_id: str,
    scope: str,
    context: ssl.SSLContext | None = None,
    timeout: float = HTTP_TIMEOUT,
) -> DeviceCode:
    """Ask for a device code (RFC 8628 section 3.1)."""
    status, data = post_form(
        device_endpoint, {"client_id": client_id, "scope": scope}, context=context, timeout=timeout
    )
    host = urllib.parse.urlsplit(device_endpoint).hostname or device_endpoint
    if status != 200 or "error" in data:
        raise TokenError(f"{host} refused to start the sign-in ({_error_text(data, None)})")
    try:
        return DeviceCode(
            device_code=str(data["device_code"]),
            user_code=str(data["user_code"]),
            verification_uri=str(data.get("verification_uri") or data["verification_url"]),
            expires_in=float(data.get("expires_in", 900)),
            interval=float(data.get("interval", 5)),
            message=str(data["message"]) if data.get("message") else None,
        )
    except (KeyError, TypeError, ValueError):
        raise TokenError(f"{host} answered the device-code request without a code to show") from None


SLOW_DOWN = 5.0  # seconds added to the interval on `slow_down` (RFC 8628 section 3.5)


def poll_device_flow(
    code: DeviceCode,
    token_endpoint: str,
    *,
    client_id: str,
    context: ssl.SSLContext | None = None,
    timeout: float = HTTP_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Grant:
    """Poll until the user has signed in (RFC 8628 section 3.4); the grant, with its refresh token.

    `authorization_pending` waits another interval, `slow_down` lengthens it; an
    expired code or a declined sign-in is a TokenError that says what to do.
    """
    host = urllib.parse.urlsplit(token_endpoint).hostname or token_endpoint
    redactor = Redactor(None, secrets=[code.device_code])
    interval = max(code.interval, 1.0)
    deadline = clock() + code.expires_in
    fields = {"grant_type": DEVICE_GRANT, "device_code": code.device_code, "client_id": client_id}
    while True:
        if clock() + interval > deadline:
            raise TokenError("the sign-in code expired before the sign-in was finished; run the login again")
        sleep(interval)
        status, data = post_form(token_endpoint, fields, context=context, timeout=timeout, redactor=redactor)
        error = data.get("error")
        if status == 200 and error is None:
            return _grant(data, host)
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += SLOW_DOWN
            continue
        if error in ("expired_token", "code_expired"):
            raise TokenError("the sign-in code expired before the sign-in was finished; run the login again")
        if error in ("access_denied", "authorization_declined"):
            raise TokenError("the sign-in was declined; nothing was stored")
        raise TokenError(f"{host} refused the sign-in ({_error_text(data, redactor)})")
