"""Delivery over SMTP: one persistent, verified connection per transport.

The transaction is driven step by step (MAIL, RCPT, DATA) over our own wire
client (`newsletter.delivery.transports.wire`), so that a broken connection tells
whether the final dot had been written: before it, the relay cannot have the
message and it is safe to retry; after it, the outcome is unknown and the journal
must say so. Any reply out of order, malformed or late drops the connection.

Security rules kept here, whatever the settings say:

- TLS is verified (certificate chain and host name); `starttls` never falls back
  to clear text when the server does not offer STARTTLS.
- The password goes out in clear only with SMTP_SECURITY=none plus
  SMTP_ALLOW_PLAINTEXT_AUTH: `1` for a loopback host, `any` for another. The same
  holds for an OAuth access token (SMTP_AUTH=xoauth2).
- No protocol trace is ever printed: it would carry the AUTH line. Every server
  reply that ends up in an error, the journal or the terminal goes through
  `Redactor.clean` (password and tokens in any form removed, control characters replaced).
- SMTP_AUTH=xoauth2 logs in with `AUTH XOAUTH2` and an access token from a
  `TokenSource`. A refusal of a token that was not fetched for this very login
  (it expired mid-campaign) renews the token once and logs in again; the journal
  never hears of it, as `open()` either succeeds or raises as before.
- A message the server has said it cannot take (over its SIZE, or needing
  SMTPUTF8 it does not offer) is refused before MAIL, with the reason.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import ssl
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from newsletter.delivery.transports.redact import Redactor, xoauth2_string
from newsletter.delivery.transports.wire import Closed, ProtocolError, Reply, ReplyTimeout, Wire
from newsletter.errors import ConnectionLost, RecipientRefused, SetupError, TokenError
from newsletter.inputs.settings import SMTPSettings
from newsletter.message.builder import Outgoing

if TYPE_CHECKING:
    from newsletter.oauth.tokens import Token, TokenSource


def dot_stuffed(data: bytes) -> bytes:
    """Every line that starts with "." sent as ".." (RFC 5321 4.5.2).

    The same as `re.sub(rb"(?m)^\\.", b"..", data)`, at the speed of `bytes.replace`: an
    inlined `<style>` block puts a line starting with "." in nearly every message.
    """
    stuffed = data.replace(b"\n.", b"\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


def tls_context(settings: SMTPSettings) -> ssl.SSLContext:
    """Verified TLS: the system trust store, or only `SMTP_CA_FILE` when it is set."""
    cafile = str(settings.ca_file) if settings.ca_file else None
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _size_limit(value: str | None) -> int | None:
    """The number of an EHLO `SIZE n` line; None for no limit, or a value that is not a number."""
    try:
        size = int((value or "0").split()[0]) if (value or "").strip() else 0
    except ValueError:
        return None
    return size if size > 0 else None


QUIT_WAIT = 2.0  # seconds for the goodbye: nothing depends on it
_EHLO_KEYWORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


def ehlo_features(reply: Reply) -> dict[str, str]:
    """The extensions an EHLO reply offers (keyword, lower case → its parameters).

    A line that is not an extension (RFC 5321 4.1.1.1: a keyword of letters, digits
    and hyphens, then parameters) is a broken reply, not something to skip: a relay
    that garbles EHLO cannot be trusted to keep its replies in order.
    """
    features: dict[str, str] = {}
    for line in reply.lines[1:]:
        if not line.strip():  # smtp-sink ends with a bare "250 ": nothing offered, nothing shifted
            continue
        keyword, _, params = line.strip().replace("=", " ", 1).partition(" ")  # old `AUTH=LOGIN`
        if not _EHLO_KEYWORD.match(keyword):
            raise ProtocolError(f"malformed EHLO line {line[:80]!r}")
        key = keyword.lower()
        features[key] = f"{features[key]} {params}".strip() if key in features else params.strip()
    return features


class _Refused(Exception):
    """A reply of 4xx/5xx in a stage that allows refusals: the transaction ends, the connection stays."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


def _expect(reply: Reply, ok: tuple[int, ...], stage: str) -> Reply:
    """`reply` if it is one of `ok`; _Refused for 4xx/5xx; ProtocolError for anything else."""
    if reply.code in ok:
        return reply
    if reply.code >= 400:
        raise _Refused(reply)
    raise ProtocolError(f"{stage} answered {reply.code} where {'/'.join(map(str, ok))} was due")


class SMTPTransport:
    """One SMTP connection; `open()` again after a ConnectionLost to reconnect.

    `smtputf8_needed` names (a few of) the recipients whose addresses need
    SMTPUTF8: when it is not empty, `open()` refuses a server that lacks it, so
    a send stops before its first message rather than failing them one by one.
    """

    def __init__(
        self, settings: SMTPSettings, *, smtputf8_needed: Sequence[str] = (), tokens: TokenSource | None = None
    ) -> None:
        self.settings = settings
        self.smtputf8_needed = tuple(smtputf8_needed)
        self._wire: Wire | None = None
        self.features: dict[str, str] = {}
        self.max_size: int | None = None
        self.smtputf8 = False
        self.pipelining = False
        password = settings.password.reveal() if settings.password else None
        self._redactor = Redactor(password, settings.username)
        if settings.auth == "xoauth2" and tokens is None:
            from newsletter.oauth.tokens import token_source

            tokens = token_source(settings)
        self._tokens = tokens
        self._refused_token: Token | None = None  # the token of the last XOAUTH2 login that failed
        self.login: str | None = None  # how the last `open()` logged in, and as whom

    # -- errors, with the password kept out ---------------------------------------

    def _text(self, reply: Reply | str) -> str:
        return self._redactor.clean(str(reply))

    def _setup_error(self, reason: str, code: int | None = None) -> SetupError:
        return SetupError(self._redactor.clean(reason), host=self.settings.host, port=self.settings.port, code=code)

    def _lost(self, reason: str, *, data_sent: bool = False, code: int | None = None) -> ConnectionLost:
        self._drop()
        return ConnectionLost(
            self._redactor.clean(reason),
            host=self.settings.host,
            port=self.settings.port,
            data_sent=data_sent,
            code=code,
        )

    # -- connecting ---------------------------------------------------------------

    def _check_plaintext_auth(self) -> None:
        s = self.settings
        if s.security != "none" or not s.username:
            return
        if not s.allow_plaintext_auth:
            raise self._setup_error(
                "refusing to send the password without TLS (SMTP_SECURITY=none); "
                "use starttls or tls, or set SMTP_ALLOW_PLAINTEXT_AUTH=1 for a relay on this machine"
            )
        if not s.on_loopback and not s.plaintext_auth_any_host:
            raise self._setup_error(
                f"refusing to send the password without TLS to {s.host}, which is not this machine: "
                "SMTP_ALLOW_PLAINTEXT_AUTH=1 covers loopback only; set it to `any` if the network "
                "to this relay is trusted"
            )

    def _check_plaintext_token(self) -> None:
        s = self.settings
        if s.auth == "xoauth2" and s.security == "none" and not (s.allow_plaintext_auth and s.on_loopback):
            raise self._setup_error(
                "refusing to send an OAuth access token without TLS (SMTP_SECURITY=none); use starttls "
                "or tls (SMTP_ALLOW_PLAINTEXT_AUTH=1 allows it only for a relay on this machine)"
            )

    def open(self) -> None:
        """Connect and log in. An XOAUTH2 token refused (or cut off) that was fetched before this
        call is renewed once and the login tried again: it expired during the campaign."""
        started = time.monotonic()
        self._refused_token = None
        try:
            self._open()
        except (SetupError, ConnectionLost):
            refused, self._refused_token = self._refused_token, None
            if self._tokens is None or refused is None or refused.fetched_at >= started:
                raise
            self._tokens.renew(refused)
            self._open()

    def _open(self) -> None:
        self._check_plaintext_token()
        self._check_plaintext_auth()
        self._drop()
        self.login = None
        try:
            self._wire = self._connect()
            self._check_extensions()
            self._authenticate(self._wire)
        except (SetupError, ConnectionLost, TokenError):
            self._drop()
            raise
        except ssl.SSLCertVerificationError as exc:
            self._drop()
            hint = "" if self.settings.ca_file else "; if a private CA signed it, name that CA in SMTP_CA_FILE"
            raise self._setup_error(f"TLS failed: certificate verify failed: {exc.verify_message}{hint}") from None
        except ssl.SSLError as exc:
            self._drop()
            raise self._setup_error(f"TLS failed: {exc.reason or exc}") from None
        except _Refused as exc:
            self._drop()
            if 400 <= exc.reply.code < 500:  # "too many connections", "try again later"
                raise self._lost(self._text(exc.reply), code=exc.reply.code) from None
            raise self._setup_error(self._text(exc.reply), exc.reply.code) from None
        except ReplyTimeout as exc:
            raise self._lost(f"timed out: {exc}") from None
        except Closed:
            raise self._lost("the relay closed the connection") from None
        except ProtocolError as exc:
            raise self._lost(f"protocol error: {exc}") from None
        except OSError as exc:
            raise self._lost(f"cannot connect: {exc.strerror or exc}") from None

    def _connect(self) -> Wire:
        s = self.settings
        wire = Wire.connect(s.host, s.port, s.timeout)
        self._wire = wire  # so that a failure below closes it
        if s.security == "tls":
            wire.start_tls(tls_context(s), s.host)
        _expect(wire.reply(), (220,), "the greeting")
        self.features = self._ehlo(wire)
        if s.security == "starttls":
            if "starttls" not in self.features:
                raise self._setup_error(
                    "the server does not offer STARTTLS; refusing to continue in clear text "
                    "(SMTP_SECURITY=tls for port 465, or none only for a trusted local relay)"
                )
            wire.send(b"STARTTLS\r\n")
            _expect(wire.reply(), (220,), "STARTTLS")
            wire.start_tls(tls_context(s), s.host)
            self.features = self._ehlo(wire)  # RFC 3207: forget what was said in clear
        return wire

    @staticmethod
    def _ehlo(wire: Wire) -> dict[str, str]:
        wire.send(f"EHLO {_local_name()}\r\n".encode("ascii"))
        return ehlo_features(_expect(wire.reply(), (250,), "EHLO"))

    def _check_extensions(self) -> None:
        self.max_size = _size_limit(self.features.get("size")) if "size" in self.features else None
        self.smtputf8 = "smtputf8" in self.features
        self.pipelining = "pipelining" in self.features
        if self.smtputf8_needed and not self.smtputf8:
            shown = ", ".join(self.smtputf8_needed[:5])
            more = "..." if len(self.smtputf8_needed) > 5 else ""
            raise self._setup_error(
                f"the list has addresses with non-ASCII characters before the @ ({shown}{more}), "
                "which need SMTPUTF8, and this server does not offer it; nothing was sent. "
                "Remove those rows or use a relay that offers SMTPUTF8"
            )

    def _authenticate(self, wire: Wire) -> None:
        """One login with one mechanism (PLAIN, else LOGIN): a wrong password costs one failure
        in the relay's log, not one per mechanism, which counts toward lock-outs."""
        s = self.settings
        if not s.username:
            return
        if "auth" not in self.features:
            raise self._setup_error("SMTP_USERNAME is set but the server offers no AUTH")
        if self._tokens is not None:
            self._xoauth2(wire, s.username, self._tokens)
            return
        password = s.password.reveal() if s.password else ""
        if not (s.username.isascii() and password.isascii()):
            raise self._setup_error(
                "SMTP_USERNAME and SMTP_PASSWORD must be ASCII: relays differ in how they decode other characters"
            )
        mechanisms = self.features["auth"].upper().split()
        user, secret = s.username.encode(), password.encode()
        try:
            if "PLAIN" in mechanisms:
                token = base64.b64encode(b"\0" + user + b"\0" + secret)
                wire.send(b"AUTH PLAIN " + token + b"\r\n")
                reply = wire.reply()
            elif "LOGIN" in mechanisms:
                wire.send(b"AUTH LOGIN\r\n")
                _expect(wire.reply(), (334,), "AUTH LOGIN")
                wire.send(base64.b64encode(user) + b"\r\n")
                _expect(wire.reply(), (334,), "AUTH LOGIN")
                wire.send(base64.b64encode(secret) + b"\r\n")
                reply = wire.reply()
            else:
                offered = " ".join(mechanisms) or "none"
                raise self._setup_error(
                    f"the server offers no login mechanism we speak (PLAIN, LOGIN); it offers {offered}"
                )
            if reply.code == 334:  # a challenge we did not expect: cancel the exchange (RFC 4954)
                wire.send(b"*\r\n")
                reply = wire.reply()
            _expect(reply, (235,), "AUTH")
        except _Refused as exc:
            if 400 <= exc.reply.code < 500:
                raise
            raise self._setup_error(
                f"authentication failed for {s.username}: {self._text(exc.reply)}{_password_hint(exc.reply)}",
                exc.reply.code,
            ) from None
        self.login = f"{'PLAIN' if 'PLAIN' in mechanisms else 'LOGIN'} as {s.username}"

    def _xoauth2(self, wire: Wire, user: str, tokens: TokenSource) -> None:
        """`AUTH XOAUTH2` with the token as initial response; one mechanism, one try per token.

        A refusal may come as `334 <base64 JSON>` (status, schemes, scope): the client
        must answer it with an empty line, and then the relay sends its 535.
        """
        mechanisms = self.features["auth"].upper().split()
        if "XOAUTH2" not in mechanisms:
            offered = " ".join(mechanisms) or "none"
            raise self._setup_error(f"SMTP_AUTH=xoauth2, but the server does not offer XOAUTH2; it offers {offered}")
        if not user.isascii():
            raise self._setup_error("SMTP_USERNAME must be ASCII for XOAUTH2")
        token = tokens.get()
        self._redactor.add(token.value)
        details: dict[str, object] = {}
        try:
            wire.send(b"AUTH XOAUTH2 " + xoauth2_string(user, token.value) + b"\r\n")
            reply = wire.reply()
            if reply.code == 334:
                details = _challenge_details(reply.text)
                wire.send(b"\r\n")
                reply = wire.reply()
            _expect(reply, (235,), "AUTH XOAUTH2")
        except _Refused as exc:
            self._refused_token = token
            if 400 <= exc.reply.code < 500:
                raise
            raise self._setup_error(
                f"XOAUTH2 login refused for {user}{_status(details)}: {self._text(exc.reply)}. "
                f"{_token_hint(exc.reply, details, self.settings)}",
                exc.reply.code,
            ) from None
        except Closed:
            self._refused_token = token  # some relays just hang up on an expired token
            raise
        self.login = f"XOAUTH2 as {user} ({tokens.label})"

    @property
    def connected(self) -> bool:
        return self._wire is not None

    # -- sending ------------------------------------------------------------------

    def check(self, message: Outgoing) -> None:
        """Raise SetupError if this server has said it cannot take `message`; call after `open()`.

        The sender calls this before it marks a recipient `sending`, so a refusal
        here leaves the journal untouched: nobody is marked failed for a limit
        that is the campaign's problem, not the recipient's.
        """
        size = len(message.data)
        if self.max_size is not None and size > self.max_size:
            raise self._setup_error(
                f"the message for {message.envelope.recipient} is {size:,} bytes; this server accepts "
                f"at most {self.max_size:,} (its SIZE): make the attachments or images smaller"
            )
        if message.envelope.smtputf8 and not self.smtputf8:
            raise self._setup_error(
                f"{message.envelope.recipient} has non-ASCII characters before the @, which need "
                "SMTPUTF8, and this server does not offer it"
            )

    def send(self, message: Outgoing) -> None:
        """One transaction, every reply matched to its command (see the module docstring).

        `ended` turns true just before the final dot is written: from then on the
        relay may have the message, so a failure is `unknown`, never a retry.
        """
        wire = self._wire
        if wire is None:
            raise self._lost("not connected")
        self.check(message)
        ended = False
        try:
            wire.expect_silence()
            try:
                self._envelope(wire, message)
                wire.expect_silence()  # nothing may come between 354 and our data
                wire.send(_payload(message.data))
                ended = True
                wire.send(b".\r\n")
                _expect(wire.reply(), (250,), "the end of the data")
            except _Refused as exc:
                if exc.reply.code == 421:  # the relay is closing this connection
                    self._drop()
                elif not ended:  # a refusal after the dot ends the transaction by itself
                    self._reset(wire)
                raise RecipientRefused(exc.reply.code, self._text(exc.reply.text)) from None
            wire.expect_silence()  # a second reply to the dot: its 250 may not be its own
        except ReplyTimeout as exc:
            raise self._lost(f"timed out: {exc}", data_sent=ended) from None
        except Closed:
            raise self._lost("connection lost", data_sent=ended) from None
        except ProtocolError as exc:
            raise self._lost(f"protocol error: {exc}", data_sent=ended) from None
        except OSError as exc:
            raise self._lost(f"connection lost: {exc.strerror or exc}", data_sent=ended) from None

    def _envelope(self, wire: Wire, message: Outgoing) -> None:
        """MAIL, RCPT and DATA, in one write when the relay offers PIPELINING (RFC 2920);
        returns once DATA got its 354, raises _Refused with the first refusal otherwise."""
        envelope = message.envelope
        options = " SMTPUTF8 BODY=8BITMIME" if envelope.smtputf8 else ""
        if self.max_size is not None:
            options += f" SIZE={len(message.data)}"  # RFC 1870: the server may refuse at once
        commands = (
            f"MAIL FROM:<{envelope.sender}>{options}\r\n".encode(),
            f"RCPT TO:<{envelope.recipient}>\r\n".encode(),
            b"DATA\r\n",
        )
        stages = (((250,), "MAIL"), ((250, 251), "RCPT"), ((354,), "DATA"))
        if not self.pipelining:
            for command, (ok, stage) in zip(commands, stages, strict=True):
                if command is not commands[0]:
                    wire.expect_silence()
                wire.send(command)
                _expect(wire.reply(), ok, stage)
            return
        wire.send(b"".join(commands))
        replies = [wire.reply() for _ in commands]
        refusal: _Refused | None = None
        for reply, (ok, stage) in zip(replies, stages, strict=True):
            try:
                _expect(reply, ok, stage)
            except _Refused as exc:
                refusal = refusal or exc
        if refusal is None:
            return
        if replies[2].code == 354:  # DATA accepted although MAIL or RCPT failed: end the empty message
            wire.send(b".\r\n")
            wire.reply()
        raise refusal

    def _reset(self, wire: Wire) -> None:
        """A clean transaction for the next message, or a fresh connection if RSET fails."""
        try:
            wire.expect_silence()
            wire.send(b"RSET\r\n")
            if wire.reply().code != 250:
                self._drop()
        except (OSError, ProtocolError):
            self._drop()

    def _drop(self) -> None:
        wire, self._wire = self._wire, None
        if wire is not None:
            wire.close()

    def close(self) -> None:
        wire, self._wire = self._wire, None
        if wire is None:
            return
        wire.timeout = min(wire.timeout, QUIT_WAIT)  # a stop must not wait a full timeout for "221"
        with contextlib.suppress(OSError, ProtocolError):
            wire.send(b"QUIT\r\n")
            wire.reply()
        wire.close()


def _challenge_details(text: str) -> dict[str, object]:
    """The JSON object a `334` XOAUTH2 refusal carries in base64; empty if it is not one."""
    try:
        data = json.loads(base64.b64decode(text.strip(), validate=True))
    except (ValueError, TypeError):
        return {}
    return data if isinstance(data, dict) else {}


def _status(details: dict[str, object]) -> str:
    shown = [f"{key} {details[key]}" for key in ("status", "scope") if isinstance(details.get(key), str | int)]
    return f" ({', '.join(shown)})" if shown else ""


def _token_hint(reply: Reply, details: dict[str, object], settings: SMTPSettings) -> str:
    """What to do about a refused token, in the user's terms."""
    if "5.7.139" in reply.text or "disabled" in reply.text.lower():
        return (
            "The organisation has turned SMTP AUTH off for this mailbox: an administrator must allow "
            "'Authenticated SMTP' for it (Microsoft 365 admin center, the user, Mail, Manage email apps)"
        )
    if str(details.get("status")) == "400":
        return "The relay could not read the login: check that SMTP_USERNAME is the signed-in mailbox"
    where = (
        "check the token that SMTP_OAUTH_TOKEN_COMMAND prints (for this mailbox, for SMTP, not expired)"
        if settings.oauth_token_command
        else f"run `newsletter login {settings.oauth_provider}` again, signing in as {settings.username}"
    )
    return f"The access token was not accepted (expired, revoked, or for another mailbox or scope): {where}"


def _password_hint(reply: Reply) -> str:
    """Microsoft's replies when a tenant has turned password logins off point to XOAUTH2."""
    text = reply.text.lower()
    if "5.7.139" in text or "5.7.30" in text or "basic authentication" in text:
        return (
            ". This relay no longer takes passwords: sign in with OAuth instead (SMTP_AUTH=xoauth2; "
            "README: 'Microsoft 365 and Gmail')"
        )
    return ""


def _payload(data: bytes) -> bytes:
    """The message dot-stuffed and ending in a line break, without the final dot."""
    payload = dot_stuffed(data)
    return payload if payload.endswith(b"\r\n") else payload + b"\r\n"


def _local_name() -> str:
    """The name we give in EHLO: this machine's, when it is a plain ASCII host name."""
    name = socket.getfqdn()
    return name if name.isascii() and re.fullmatch(r"[A-Za-z0-9.-]+", name) else "localhost"
