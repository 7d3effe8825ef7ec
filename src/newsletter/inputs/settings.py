"""Settings from flags, the environment and `.env`, validated once into frozen records.

Precedence: command-line flags > process environment > `.env` file > defaults.
The `.env` file is read with python-dotenv's `dotenv_values`, never loaded into
`os.environ`, so that nothing leaks into child processes and tests stay isolated.

A campaign folder may come from someone else, and so may its own `.env`: read by
default, it may not lower the transport security the user chose. Switching TLS off
for a relay on another machine (`SMTP_SECURITY=none`), allowing a password in clear
text (`SMTP_ALLOW_PLAINTEXT_AUTH`) and trusting a CA that lives in the folder
(`SMTP_CA_FILE`), running a command for an OAuth token (`SMTP_OAUTH_TOKEN_COMMAND`)
and sending an OAuth token to a relay other than Microsoft's or Google's (`SMTP_HOST`
with `SMTP_AUTH=xoauth2`) are honoured only from the environment, a flag, or an env
file the user named (`--env-file`); from the folder's own `.env` they are refused,
saying how to allow them.

Values end up in SMTP commands and message headers, so none may hold a line
break or other control character (python-dotenv turns `"\n"` in quotes into a
real newline), nor `=?`, which starts an RFC 2047 encoded word that can carry a
line break in disguise; only the two secrets are exempt, as they never reach a header.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values

from newsletter.defaults import (
    DEFAULT_CONNECTIONS,
    DEFAULT_PORTS,
    DEFAULT_SECURITY,
    SECURITY_CHOICES,
    SMTP_TIMEOUT,
    Security,
)
from newsletter.errors import ConfigError
from newsletter.inputs.folder import inside
from newsletter.inputs.text import CONTROL

KNOWN_SETTINGS = (
    "SMTP_HOST",
    "SMTP_PORT",
    "SMTP_USERNAME",
    "SMTP_PASSWORD",
    "SMTP_SECURITY",
    "SMTP_TIMEOUT",
    "SMTP_CA_FILE",
    "SMTP_ALLOW_PLAINTEXT_AUTH",
    "SMTP_AUTH",
    "SMTP_OAUTH_TOKEN_COMMAND",
    "SMTP_OAUTH_PROVIDER",
    "SMTP_OAUTH_TENANT",
    "SMTP_OAUTH_CLIENT_ID",
    "NEWSLETTER_FROM",
    "NEWSLETTER_REPLY_TO",
    "NEWSLETTER_UNSUBSCRIBE_URL",
    "NEWSLETTER_UNSUBSCRIBE_MAILTO",
    "NEWSLETTER_SECRET",
    "NEWSLETTER_RATE",
    "NEWSLETTER_CONNECTIONS",
    "NEWSLETTER_DKIM_KEY",
    "NEWSLETTER_DKIM_SELECTOR",
    "NEWSLETTER_DKIM_DOMAIN",
    "NEWSLETTER_DKIM_KEY_IN_FOLDER",
)

# Never written anywhere, so a control character in them cannot inject anything.
_SECRETS = frozenset({"SMTP_PASSWORD", "NEWSLETTER_SECRET"})


class Secret:
    """A string that refuses to show itself in reprs, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class SMTPSettings:
    """Where and how to reach the relay."""

    host: str
    port: int
    security: Security = DEFAULT_SECURITY
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    timeout: float = SMTP_TIMEOUT
    ca_file: Path | None = None
    # SMTP_ALLOW_PLAINTEXT_AUTH=1 allows a password without TLS to a loopback host
    # only; `any` is the explicit say-so for another host (a relay on a private network).
    allow_plaintext_auth: bool = False
    plaintext_auth_any_host: bool = False
    # SMTP_AUTH=xoauth2: an OAuth 2.0 access token instead of the password, from
    # SMTP_OAUTH_TOKEN_COMMAND or from a `newsletter login` of `oauth_provider`.
    auth: AuthMechanism = "password"
    oauth_token_command: str | None = None
    oauth_provider: str | None = None
    oauth_tenant: str | None = None
    oauth_client_id: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def on_loopback(self) -> bool:
        """Whether the host is this machine, by name or address (no DNS lookup)."""
        host = self.host.strip("[]").rstrip(".").lower()
        if host == "localhost" or host.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


@dataclass(frozen=True)
class DKIMSettings:
    """Which keys sign, for which selectors (paired in order) and domain (None: the From domain)."""

    keys: tuple[Path, ...]
    selectors: tuple[str, ...]
    domain: str | None = None


@dataclass(frozen=True)
class Settings:
    """Everything the environment decides; the campaign folder decides the rest."""

    smtp: SMTPSettings | None = None
    sender: str | None = None
    reply_to: str | None = None
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None
    secret: Secret | None = field(default=None, repr=False)
    rate: float | None = None
    connections: int = DEFAULT_CONNECTIONS
    env_file: Path | None = None
    dkim: DKIMSettings | None = None


AuthMechanism = Literal["password", "xoauth2"]
OAUTH_PROVIDERS = ("microsoft", "google")
# The relays whose provider SMTP_OAUTH_PROVIDER may leave out.
_OAUTH_HOSTS = {"smtp.office365.com": "microsoft", "smtp-mail.outlook.com": "microsoft", "smtp.gmail.com": "google"}


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?\s*$", re.I)
_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_PER |= {"h": 3600.0, "hour": 3600.0}


def parse_rate(text: str) -> float:
    """Messages per second from `10`, `10/s`, `600/min` or `36000/hour`."""
    match = _RATE.match(text)
    if not match:
        raise ValueError(f"expected a rate like 10, 600/min or 10000/hour, got {text!r}")
    count = float(match.group(1))
    per = _PER[(match.group(2) or "s").lower()]
    if count <= 0:
        raise ValueError(f"the rate must be above zero, got {text!r}")
    return count / per


class _Source:
    """Looks settings up in layered mappings and remembers where each came from.

    `shipped` is the origin of the layer that came with the campaign folder (its own
    `.env`, read without being named), if any.
    """

    def __init__(self, layers: list[tuple[str, Mapping[str, str | None]]], *, shipped: str | None = None) -> None:
        self._layers = layers
        self.shipped = shipped

    def get(self, name: str) -> tuple[str | None, str]:
        for origin, layer in self._layers:
            value = layer.get(name)
            if value is not None and value.strip() != "":
                if name not in _SECRETS and CONTROL.search(value.strip()):
                    raise _error(name, origin, "contains a line break or other control character")
                if name not in _SECRETS and "=?" in value:
                    # Mail software decodes `=?...?=` in headers (RFC 2047), line breaks included.
                    raise _error(name, origin, "contains '=?', which mail software reads as an encoded word")
                return value.strip(), origin
        return None, "default"

    def text(self, name: str) -> str | None:
        return self.get(name)[0]


def _error(name: str, origin: str, reason: str) -> ConfigError:
    where = f" (from {origin})" if origin != "default" else ""
    return ConfigError(f"{name}{where}: {reason}")


def _number(source: _Source, name: str, *, whole: bool, minimum: float) -> float | None:
    raw, origin = source.get(name)
    if raw is None:
        return None
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise _error(name, origin, f"expected {kind}, got {raw!r}") from None
    if value < minimum:
        raise _error(name, origin, f"must be at least {minimum:g}, got {raw!r}")
    return value


def _flag(source: _Source, name: str, *, also: str = "") -> bool:
    raw, origin = source.get(name)
    if raw is None:
        return False
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise _error(name, origin, f"expected 1/0, true/false or yes/no{also}, got {raw!r}")


def read_env_file(path: Path) -> dict[str, str | None]:
    """The variables of a `.env` file; a missing file named on purpose is an error."""
    if not path.is_file():
        raise ConfigError(f"env file not found: {path}")
    return dict(dotenv_values(path, encoding="utf-8"))


def load_settings(
    *,
    environ: Mapping[str, str],
    env_file: Path | None = None,
    overrides: Mapping[str, str | None] | None = None,
    found_in: Path | None = None,
    campaign: Path | None = None,
) -> Settings:
    """Validate every setting once; errors name the setting and where it came from.

    `found_in` is the campaign folder when `env_file` is that folder's own `.env`,
    read because it was there rather than because the user named it: settings that
    lower transport security are then refused from it (see the module docstring).
    `campaign` is the campaign folder, where a DKIM key may not be (see `_dkim_settings`).
    """
    layers: list[tuple[str, Mapping[str, str | None]]] = []
    if overrides:
        layers.append(("command line", overrides))
    layers.append(("environment", environ))
    if env_file is not None:
        layers.append((env_file.name, read_env_file(env_file)))
    shipped = env_file.name if env_file is not None and found_in is not None else None
    source = _Source(layers, shipped=shipped)
    smtp = _smtp_settings(source)
    if smtp is not None and env_file is not None and found_in is not None:
        _refuse_lowered_security(source, smtp, env_file, found_in)
    return Settings(
        smtp=smtp,
        sender=source.text("NEWSLETTER_FROM"),
        reply_to=source.text("NEWSLETTER_REPLY_TO"),
        unsubscribe_url=_unsubscribe_url(source),
        unsubscribe_mailto=source.text("NEWSLETTER_UNSUBSCRIBE_MAILTO"),
        secret=_secret(source.text("NEWSLETTER_SECRET")),
        rate=_rate(source),
        connections=int(
            _number(source, "NEWSLETTER_CONNECTIONS", whole=True, minimum=1) or DEFAULT_CONNECTIONS
        ),
        env_file=env_file,
        dkim=_dkim_settings(source, campaign or found_in),
    )


def _secret(value: str | None) -> Secret | None:
    return Secret(value) if value is not None else None


def _rate(source: _Source) -> float | None:
    raw, origin = source.get("NEWSLETTER_RATE")
    if raw is None:
        return None
    try:
        return parse_rate(raw)
    except ValueError as exc:
        raise _error("NEWSLETTER_RATE", origin, str(exc)) from None


def _unsubscribe_url(source: _Source) -> str | None:
    raw, origin = source.get("NEWSLETTER_UNSUBSCRIBE_URL")
    if raw is None:
        return None
    if not re.match(r"^(https?|mailto):", raw, re.I):
        raise _error("NEWSLETTER_UNSUBSCRIBE_URL", origin, f"expected an https:// URL, got {raw!r}")
    unknown = set(re.findall(r"\{([^}]*)\}", raw)) - {"email", "token"}
    if unknown:
        names = ", ".join("{" + name + "}" for name in sorted(unknown))
        raise _error(
            "NEWSLETTER_UNSUBSCRIBE_URL", origin, f"only {{email}} and {{token}} can be filled in, not {names}"
        )
    return raw


_SELECTOR = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}))*$")


def _dkim_settings(source: _Source, folder: Path | None) -> DKIMSettings | None:
    """`NEWSLETTER_DKIM_KEY` and `_SELECTOR`: one or two comma-separated values each, paired in order.

    A key inside the campaign folder is refused: the folder is zipped, shared and put
    in git, and the key would travel with it. `NEWSLETTER_DKIM_KEY_IN_FOLDER=1` allows
    it, but not from the folder's own `.env`, which may have come with the folder.
    """
    raw, origin = source.get("NEWSLETTER_DKIM_KEY")
    raw_selector, selector_origin = source.get("NEWSLETTER_DKIM_SELECTOR")
    if raw is None:
        if raw_selector is not None:
            raise _error("NEWSLETTER_DKIM_SELECTOR", selector_origin, "is set but NEWSLETTER_DKIM_KEY is not")
        return None
    keys = tuple(Path(part.strip()).expanduser() for part in raw.split(",") if part.strip())
    selectors = tuple(part.strip() for part in (raw_selector or "").split(",") if part.strip())
    if len(keys) > 2:
        raise _error("NEWSLETTER_DKIM_KEY", origin, "at most two keys (an RSA and an Ed25519 one)")
    if len(selectors) != len(keys):
        raise _error(
            "NEWSLETTER_DKIM_SELECTOR",
            selector_origin,
            f"expected {len(keys)} selector(s), one per key of NEWSLETTER_DKIM_KEY in the same order",
        )
    for selector in selectors:
        if not _SELECTOR.match(selector):
            raise _error("NEWSLETTER_DKIM_SELECTOR", selector_origin, f"not a DNS label: {selector!r}")
    domain, domain_origin = source.get("NEWSLETTER_DKIM_DOMAIN")
    if domain is not None and not _SELECTOR.match(domain.rstrip(".")):
        raise _error("NEWSLETTER_DKIM_DOMAIN", domain_origin, f"not a domain name: {domain!r}")
    for key in keys:
        if not key.is_file():
            raise _error("NEWSLETTER_DKIM_KEY", origin, f"no such file: {key}")
        if folder is not None and inside(key.resolve(), folder.resolve()):
            _, allowed_origin = source.get("NEWSLETTER_DKIM_KEY_IN_FOLDER")
            if not (_flag(source, "NEWSLETTER_DKIM_KEY_IN_FOLDER") and allowed_origin != source.shipped):
                raise _error(
                    "NEWSLETTER_DKIM_KEY",
                    origin,
                    f"{key} is inside the campaign folder, which is shared with the campaign; move the "
                    "key out of it (e.g. to ~/.newsletter/dkim/), or set NEWSLETTER_DKIM_KEY_IN_FOLDER=1 "
                    "in the environment if you mean it",
                )
    return DKIMSettings(keys, selectors, domain.rstrip(".").lower() if domain else None)


def _smtp_settings(source: _Source) -> SMTPSettings | None:
    host = source.text("SMTP_HOST")
    if host is None:
        return None
    raw_security, origin = source.get("SMTP_SECURITY")
    security = (raw_security or DEFAULT_SECURITY).lower()
    if security not in SECURITY_CHOICES:
        choices = " | ".join(SECURITY_CHOICES)
        raise _error("SMTP_SECURITY", origin, f"expected {choices}, got {raw_security!r}")
    sec: Security = security  # narrowed by the membership test above
    port = _number(source, "SMTP_PORT", whole=True, minimum=1)
    if port is not None and port > 65535:
        raise _error("SMTP_PORT", source.get("SMTP_PORT")[1], f"no such port: {int(port)}")
    timeout = _number(source, "SMTP_TIMEOUT", whole=False, minimum=0.1)
    ca_raw, ca_origin = source.get("SMTP_CA_FILE")
    ca_file = Path(ca_raw).expanduser() if ca_raw else None
    if ca_file is not None and not ca_file.is_file():
        raise _error("SMTP_CA_FILE", ca_origin, f"no such file: {ca_file}")
    password = source.text("SMTP_PASSWORD")
    any_host = (source.text("SMTP_ALLOW_PLAINTEXT_AUTH") or "").lower() == "any"
    oauth = _oauth_settings(source, host)
    return SMTPSettings(
        host=host,
        port=int(port) if port is not None else DEFAULT_PORTS[sec],
        security=sec,
        username=source.text("SMTP_USERNAME"),
        password=Secret(password) if password is not None else None,
        timeout=timeout if timeout is not None else SMTP_TIMEOUT,
        ca_file=ca_file,
        allow_plaintext_auth=any_host or _flag(source, "SMTP_ALLOW_PLAINTEXT_AUTH", also=" (or any)"),
        plaintext_auth_any_host=any_host,
        **oauth,
    )


def _oauth_settings(source: _Source, host: str) -> dict[str, Any]:
    """SMTP_AUTH and, for xoauth2, where the token comes from (checked here, used at login)."""
    raw, origin = source.get("SMTP_AUTH")
    auth = (raw or "password").lower()
    if auth not in ("password", "xoauth2"):
        raise _error("SMTP_AUTH", origin, f"expected password | xoauth2, got {raw!r}")
    if auth == "password":
        return {"auth": "password"}
    if source.text("SMTP_USERNAME") is None:
        raise _error("SMTP_AUTH", origin, "xoauth2 needs SMTP_USERNAME, the mailbox to sign in as")
    command = source.text("SMTP_OAUTH_TOKEN_COMMAND")
    raw_provider, provider_origin = source.get("SMTP_OAUTH_PROVIDER")
    provider = (raw_provider or "").lower() or _OAUTH_HOSTS.get(host.lower().rstrip("."))
    if raw_provider is not None and provider not in OAUTH_PROVIDERS:
        choices = " | ".join(OAUTH_PROVIDERS)
        raise _error("SMTP_OAUTH_PROVIDER", provider_origin, f"expected {choices}, got {raw_provider!r}")
    if command is None and provider is None:
        raise _error(
            "SMTP_AUTH",
            origin,
            "xoauth2 needs a token: set SMTP_OAUTH_TOKEN_COMMAND (a command that prints one), or "
            "SMTP_OAUTH_PROVIDER=microsoft|google and run `newsletter login PROVIDER` once",
        )
    return {
        "auth": "xoauth2",
        "oauth_token_command": command,
        "oauth_provider": provider,
        "oauth_tenant": source.text("SMTP_OAUTH_TENANT"),
        "oauth_client_id": source.text("SMTP_OAUTH_CLIENT_ID"),
    }


def _refuse_lowered_security(source: _Source, smtp: SMTPSettings, env_file: Path, folder: Path) -> None:
    """Refuse the settings of a folder's own `.env` that would weaken what the user chose.

    `SMTP_SECURITY=none` is refused only for a relay on another machine: to a relay on
    this one nothing crosses a network, and no password goes with it unless
    `SMTP_ALLOW_PLAINTEXT_AUTH` says so, which this `.env` cannot.
    """
    lowering: list[tuple[str, str]] = []
    if smtp.security == "none" and not smtp.on_loopback:
        lowering.append(("SMTP_SECURITY", f"would send to {smtp.host} without TLS"))
    if smtp.allow_plaintext_auth:
        lowering.append(("SMTP_ALLOW_PLAINTEXT_AUTH", "would let the password go in clear text"))
    if smtp.ca_file is not None and inside(smtp.ca_file.resolve(), folder.resolve()):
        lowering.append(("SMTP_CA_FILE", "would trust a certificate authority that came with the folder"))
    if smtp.oauth_token_command is not None:
        lowering.append(("SMTP_OAUTH_TOKEN_COMMAND", "would run a command that came with the folder"))
    if smtp.auth == "xoauth2" and smtp.host.lower().rstrip(".") not in _OAUTH_HOSTS:
        # A sign-in is the user's, not the folder's: its token goes only where the user said.
        lowering.append(("SMTP_HOST", "would hand your OAuth access token to a relay that the folder chose"))
    for name, effect in lowering:
        value, origin = source.get(name)
        if origin == source.shipped:
            raise ConfigError(
                f"{name}={value} (from {env_file}) {effect}. A campaign folder's own .env may not "
                "lower the transport security, run a command or choose where a token goes, since the "
                f"folder may come from someone else; if you mean it, set {name} in the environment or "
                f"pass --env-file {env_file}"
            )
