"""Access tokens for SMTP_AUTH=xoauth2: from the user's command, or renewed from a stored sign-in.

One `TokenSource` serves a whole send, shared by its connections: the first
login fetches a token, later ones reuse it, and when the relay refuses it (it
expired mid-campaign) `renew` fetches one new token for everybody, however many
connections noticed at once. A token lives only in memory; it is never printed,
logged or written (the redactors of the connections learn each one).

`SMTP_OAUTH_TOKEN_COMMAND` follows msmtp's `passwordeval` and git's credential
helpers: the command prints the token on its standard output. It is split like a
shell line (shlex) but run without a shell, unless the user writes one
(`sh -c '...'`); it gets SMTP_TIMEOUT seconds; its error output, scrubbed, is
shown when it fails.
"""

from __future__ import annotations

import re
import shlex
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from newsletter.delivery.transports.redact import Redactor, printable
from newsletter.errors import TokenError
from newsletter.inputs.settings import SMTPSettings
from newsletter.oauth.client import Grant, refresh
from newsletter.oauth.store import Store, default_store

EARLY = 120.0  # seconds before its stated expiry that a token is renewed anyway
SHOWN_STDERR = 600  # characters of a failing command's error output shown
_TOKEN = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces (RFC 6750's b64token and more)


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)
    fetched_at: float
    expires_at: float | None = None


class TokenSource:
    """A token shared by one run's connections, fetched by `fetch` when there is none or it is stale."""

    def __init__(self, fetch: Callable[[], Grant], *, label: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self.label = label  # where the token comes from, for `check --smtp`
        self._clock = clock
        self._lock = threading.Lock()
        self._token: Token | None = None

    def get(self) -> Token:
        """The current token; a new one if there is none yet or it is about to expire."""
        with self._lock:
            token = self._token
            if token is None or (token.expires_at is not None and token.expires_at - EARLY <= self._clock()):
                token = self._new()
            return token

    def renew(self, refused: Token) -> Token:
        """A new token in place of `refused`, unless another connection has renewed it already."""
        with self._lock:
            if self._token is not None and self._token is not refused:
                return self._token
            return self._new()

    def _new(self) -> Token:
        grant = self._fetch()
        if not _TOKEN.fullmatch(grant.access_token):  # it goes into an SMTP command line
            raise TokenError(f"the access token ({self.label}) has spaces or characters a token cannot have")
        now = self._clock()
        expires = now + grant.expires_in if grant.expires_in else None
        self._token = Token(grant.access_token, now, expires)
        return self._token


def _command_fetch(command: str, timeout: float) -> Callable[[], Grant]:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise TokenError(f"SMTP_OAUTH_TOKEN_COMMAND cannot be split into words: {exc}") from None
    if not argv:
        raise TokenError("SMTP_OAUTH_TOKEN_COMMAND is empty")

    def fetch() -> Grant:
        name = argv[0]
        try:
            done = subprocess.run(
                argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout, check=False
            )
        except FileNotFoundError:
            raise TokenError(f"SMTP_OAUTH_TOKEN_COMMAND: no such program {name!r}") from None
        except PermissionError:
            raise TokenError(f"SMTP_OAUTH_TOKEN_COMMAND: {name!r} cannot be run (permission denied)") from None
        except subprocess.TimeoutExpired:
            raise TokenError(
                f"SMTP_OAUTH_TOKEN_COMMAND ({name}) printed no token within {timeout:g} s (SMTP_TIMEOUT); "
                "it may be waiting for input it cannot get"
            ) from None
        output = done.stdout.decode("utf-8", "replace")
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        # Whatever the command printed may be a token, even when it failed: keep it out of the stderr shown.
        scrubber = Redactor(None, secrets=[*lines, *output.split()])
        if done.returncode != 0:
            said = printable(scrubber.scrub(done.stderr.decode("utf-8", "replace")))[-SHOWN_STDERR:]
            raise TokenError(
                f"SMTP_OAUTH_TOKEN_COMMAND ({name}) failed with exit code {done.returncode}"
                + (f": {said}" if said else " and said nothing on its error output")
            )
        if not lines:
            raise TokenError(f"SMTP_OAUTH_TOKEN_COMMAND ({name}) printed nothing; it should print an access token")
        token = lines[0]
        if len(lines) > 1 or len(token.split()) > 1 or not token.isascii():
            raise TokenError(
                f"SMTP_OAUTH_TOKEN_COMMAND ({name}) printed more than one word; it should print the access "
                "token alone, on one line"
            )
        return Grant(token)

    return fetch


def _login_fetch(
    settings: SMTPSettings, store: Store, context: ssl.SSLContext | None, timeout: float
) -> Callable[[], Grant]:
    provider = settings.oauth_provider or ""
    user = settings.username or ""

    def fetch() -> Grant:
        login = store.load(provider, user)
        if login is None:
            raise TokenError(
                f"no {provider} sign-in is stored for {user}: run `newsletter login {provider}` once "
                f"(it keeps the sign-in in {store.name})"
            )
        try:
            grant = refresh(
                login.token_endpoint,
                client_id=login.client_id,
                refresh_token=login.refresh_token,
                client_secret=login.client_secret,
                scope=login.scope,
                context=context,
                timeout=timeout,
            )
        except TokenError as exc:
            raise TokenError(f"{exc}; run `newsletter login {provider}` again") from None
        if grant.refresh_token and grant.refresh_token != login.refresh_token:  # rotated: keep the new one
            store.save(replace(login, refresh_token=grant.refresh_token))
        return grant

    return fetch


def token_source(
    settings: SMTPSettings, *, store: Store | None = None, context: ssl.SSLContext | None = None
) -> TokenSource:
    """The token source SMTP_AUTH=xoauth2 names: the token command if set, else the stored sign-in."""
    if settings.oauth_token_command:
        fetch = _command_fetch(settings.oauth_token_command, settings.timeout)
        return TokenSource(fetch, label="token from SMTP_OAUTH_TOKEN_COMMAND")
    if not settings.oauth_provider:
        raise TokenError("SMTP_AUTH=xoauth2 needs SMTP_OAUTH_TOKEN_COMMAND or SMTP_OAUTH_PROVIDER")
    chosen = store or default_store()
    fetch = _login_fetch(settings, chosen, context, settings.timeout)
    return TokenSource(fetch, label=f"{settings.oauth_provider} sign-in from {chosen.name}")
