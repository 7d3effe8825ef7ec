"""Delivery over SMTP with smtplib: one persistent, verified connection per transport.

The transaction is driven step by step (MAIL, RCPT, DATA) rather than through
`sendmail`, so that a broken connection tells whether the message data had
already been handed over: before DATA it is safe to retry, after it the outcome
is unknown and the journal must say so.
"""

from __future__ import annotations

import smtplib
import socket
import ssl

from newsletter.config import SMTPSettings
from newsletter.errors import ConnectionLost, RecipientRefused, SetupError
from newsletter.message import Outgoing

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def tls_context(settings: SMTPSettings) -> ssl.SSLContext:
    """Verified TLS: the system trust store, or only `SMTP_CA_FILE` when it is set."""
    cafile = str(settings.ca_file) if settings.ca_file else None
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())


class SMTPTransport:
    """One SMTP connection; `open()` again after a ConnectionLost to reconnect."""

    def __init__(self, settings: SMTPSettings) -> None:
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None
        self.max_size: int | None = None
        self.smtputf8 = False

    @property
    def destination(self) -> str:
        return self.settings.address

    def _setup_error(self, reason: str, code: int | None = None) -> SetupError:
        return SetupError(reason, host=self.settings.host, port=self.settings.port, code=code)

    def _lost(self, reason: str, *, data_sent: bool = False, code: int | None = None) -> ConnectionLost:
        self._drop()
        return ConnectionLost(
            reason, host=self.settings.host, port=self.settings.port, data_sent=data_sent, code=code
        )

    def open(self) -> None:
        settings = self.settings
        if settings.security == "none" and settings.username and not settings.allow_plaintext_auth:
            raise self._setup_error(
                "refusing to send the password without TLS (SMTP_SECURITY=none); "
                "use starttls or tls, or set SMTP_ALLOW_PLAINTEXT_AUTH=1 for a trusted local relay"
            )
        try:
            self._smtp = self._connect()
            self._authenticate(self._smtp)
        except (SetupError, ConnectionLost):
            self._drop()
            raise
        except ssl.SSLError as exc:
            self._drop()
            raise self._setup_error(f"TLS failed: {exc.reason or exc}") from None
        except smtplib.SMTPResponseException as exc:
            self._drop()
            if 400 <= exc.smtp_code < 500:  # "too many connections", "try again later"
                raise self._lost(_text(exc.smtp_error), code=exc.smtp_code) from None
            raise self._setup_error(_text(exc.smtp_error), exc.smtp_code) from None
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise self._lost(f"cannot connect: {exc}") from None
        self.max_size = int(self._smtp.esmtp_features.get("size", "0") or 0) or None
        self.smtputf8 = self._smtp.has_extn("smtputf8")

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if s.security == "tls":
            return smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=tls_context(s))
        smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        smtp.ehlo()
        if s.security == "starttls":
            if not smtp.has_extn("starttls"):
                smtp.close()
                raise self._setup_error(
                    "the server does not offer STARTTLS; refusing to continue in clear text "
                    "(SMTP_SECURITY=tls for port 465, or none only for a trusted local relay)"
                )
            smtp.starttls(context=tls_context(s))
            smtp.ehlo()
        return smtp

    def _authenticate(self, smtp: smtplib.SMTP) -> None:
        s = self.settings
        if not s.username:
            return
        if not smtp.has_extn("auth"):
            raise self._setup_error("SMTP_USERNAME is set but the server offers no AUTH")
        password = s.password.reveal() if s.password else ""
        try:
            smtp.login(s.username, password)
        except smtplib.SMTPAuthenticationError as exc:
            if 400 <= exc.smtp_code < 500:
                raise
            raise self._setup_error(
                f"authentication failed for {s.username}: {_text(exc.smtp_error)}", exc.smtp_code
            ) from None

    @property
    def connected(self) -> bool:
        return self._smtp is not None

    def send(self, message: Outgoing) -> None:
        smtp = self._smtp
        if smtp is None:
            raise self._lost("not connected")
        envelope = message.envelope
        options: list[str] = []
        if envelope.smtputf8:
            if not self.smtputf8:
                raise RecipientRefused(553, "the address needs SMTPUTF8, which this server does not offer")
            options = ["SMTPUTF8", "BODY=8BITMIME"]
        data_sent = False
        try:
            code, reply = smtp.mail(envelope.sender, options)
            if code == 250:
                code, reply = smtp.rcpt(envelope.recipient)
            if code in (250, 251):
                data_sent = True
                code, reply = smtp.data(message.data)
        except smtplib.SMTPDataError as exc:  # DATA itself refused, before any data went
            code, reply, data_sent = exc.smtp_code, exc.smtp_error, False
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            reason = "timed out" if isinstance(exc, socket.timeout | TimeoutError) else "connection lost"
            raise self._lost(f"{reason}: {exc}" if str(exc) else reason, data_sent=data_sent) from None
        if code == 250:
            return
        if code == 421 or code < 0:
            self._drop()
        else:
            self._reset()
        raise RecipientRefused(code, _text(reply))

    def _reset(self) -> None:
        """A clean transaction for the next message, or a fresh connection if RSET fails."""
        if self._smtp is None:
            return
        try:
            self._smtp.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.close()
            except OSError:
                pass

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            try:
                smtp.close()
            except OSError:
                pass
