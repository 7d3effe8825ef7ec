"""Delivery over SMTP with smtplib: one persistent, verified connection per transport.

The transaction is driven step by step (MAIL, RCPT, DATA) rather than through
`sendmail`, so that a broken connection tells whether the message data had
already been handed over: before DATA it is safe to retry, after it the outcome
is unknown and the journal must say so.

Security rules kept here, whatever the settings say:

- TLS is verified (certificate chain and host name); `starttls` never falls back
  to clear text when the server does not offer STARTTLS.
- The password goes out in clear only with SMTP_SECURITY=none plus
  SMTP_ALLOW_PLAINTEXT_AUTH: `1` for a loopback host, `any` for another.
- smtplib's debug output is never switched on: it prints the AUTH line, which
  carries the password in base64. Every server reply that ends up in an error,
  the journal or the terminal has the password scrubbed out, in case a server
  echoes it.
- A message the server has said it cannot take (over its SIZE, or needing
  SMTPUTF8 it does not offer) is refused before MAIL, with the reason.
"""

from __future__ import annotations

import base64
import contextlib
import smtplib
import socket
import ssl
from collections.abc import Sequence

from newsletter.errors import ConnectionLost, RecipientRefused, SetupError
from newsletter.inputs.settings import SMTPSettings
from newsletter.message.builder import Outgoing


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


class SMTPTransport:
    """One SMTP connection; `open()` again after a ConnectionLost to reconnect.

    `smtputf8_needed` names (a few of) the recipients whose addresses need
    SMTPUTF8: when it is not empty, `open()` refuses a server that lacks it, so
    a send stops before its first message rather than failing them one by one.
    """

    def __init__(self, settings: SMTPSettings, *, smtputf8_needed: Sequence[str] = ()) -> None:
        self.settings = settings
        self.smtputf8_needed = tuple(smtputf8_needed)
        self._smtp: smtplib.SMTP | None = None
        self.max_size: int | None = None
        self.smtputf8 = False
        self._secrets = self._secret_forms()

    # -- keeping the password out of every text --------------------------------

    def _secret_forms(self) -> tuple[str, ...]:
        """The password as a server could echo it: plain, and base64 as AUTH PLAIN/LOGIN send it."""
        s = self.settings
        password = s.password.reveal() if s.password else ""
        if not password:
            return ()
        user = s.username or ""
        raw = password.encode("utf-8")
        forms = {
            password,
            base64.b64encode(raw).decode("ascii"),
            base64.b64encode(f"\0{user}\0{password}".encode()).decode("ascii"),
        }
        return tuple(sorted(forms, key=len, reverse=True))

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "********")
        return text

    def _text(self, reply: bytes | str) -> str:
        text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
        return self._scrub(" ".join(text.split()))

    def _setup_error(self, reason: str, code: int | None = None) -> SetupError:
        return SetupError(self._scrub(reason), host=self.settings.host, port=self.settings.port, code=code)

    def _lost(self, reason: str, *, data_sent: bool = False, code: int | None = None) -> ConnectionLost:
        self._drop()
        return ConnectionLost(
            self._scrub(reason), host=self.settings.host, port=self.settings.port, data_sent=data_sent, code=code
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

    def open(self) -> None:
        self._check_plaintext_auth()
        try:
            self._smtp = self._connect()
            self._check_extensions(self._smtp)
            self._authenticate(self._smtp)
        except (SetupError, ConnectionLost):
            self._drop()
            raise
        except ssl.SSLCertVerificationError as exc:
            self._drop()
            hint = "" if self.settings.ca_file else "; if a private CA signed it, name that CA in SMTP_CA_FILE"
            raise self._setup_error(f"TLS failed: certificate verify failed: {exc.verify_message}{hint}") from None
        except ssl.SSLError as exc:
            self._drop()
            raise self._setup_error(f"TLS failed: {exc.reason or exc}") from None
        except smtplib.SMTPResponseException as exc:
            self._drop()
            if 400 <= exc.smtp_code < 500:  # "too many connections", "try again later"
                raise self._lost(self._text(exc.smtp_error), code=exc.smtp_code) from None
            raise self._setup_error(self._text(exc.smtp_error), exc.smtp_code) from None
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise self._lost(f"cannot connect: {exc}") from None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        # smtplib's debug output stays off: its trace includes the AUTH command.
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

    def _check_extensions(self, smtp: smtplib.SMTP) -> None:
        smtp.ehlo_or_helo_if_needed()  # SMTP_SSL has not said EHLO yet
        self.max_size = _size_limit(smtp.esmtp_features.get("size"))
        self.smtputf8 = smtp.has_extn("smtputf8")
        if self.smtputf8_needed and not self.smtputf8:
            shown = ", ".join(self.smtputf8_needed[:5])
            more = "..." if len(self.smtputf8_needed) > 5 else ""
            raise self._setup_error(
                f"the list has addresses with non-ASCII characters before the @ ({shown}{more}), "
                "which need SMTPUTF8, and this server does not offer it; nothing was sent. "
                "Remove those rows or use a relay that offers SMTPUTF8"
            )

    def _authenticate(self, smtp: smtplib.SMTP) -> None:
        s = self.settings
        if not s.username:
            return
        if not smtp.has_extn("auth"):
            raise self._setup_error("SMTP_USERNAME is set but the server offers no AUTH")
        password = s.password.reveal() if s.password else ""
        if not (s.username.isascii() and password.isascii()):
            # smtplib encodes AUTH as ASCII and would fail with the offending character in the error.
            raise self._setup_error(
                "SMTP_USERNAME and SMTP_PASSWORD must be ASCII: Python's smtplib cannot send other characters"
            )
        try:
            smtp.login(s.username, password)
        except smtplib.SMTPAuthenticationError as exc:
            if 400 <= exc.smtp_code < 500:
                raise
            raise self._setup_error(
                f"authentication failed for {s.username}: {self._text(exc.smtp_error)}", exc.smtp_code
            ) from None

    @property
    def connected(self) -> bool:
        return self._smtp is not None

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
        smtp = self._smtp
        if smtp is None:
            raise self._lost("not connected")
        self.check(message)
        envelope = message.envelope
        options: list[str] = ["SMTPUTF8", "BODY=8BITMIME"] if envelope.smtputf8 else []
        if self.max_size is not None:
            options.append(f"SIZE={len(message.data)}")  # RFC 1870: the server may refuse at once
        data_sent = False
        code: int
        reply: bytes | str
        try:
            if smtp.has_extn("pipelining") and not envelope.smtputf8:
                code, reply = self._pipelined_commands(smtp, message, options)
                if code == 354:
                    data_sent = True
                    code, reply = self._pipelined_data(smtp, message)
            else:
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
        raise RecipientRefused(code, self._text(reply))

    @staticmethod
    def _pipelined_commands(smtp: smtplib.SMTP, message: Outgoing, options: list[str]) -> tuple[int, bytes]:
        """MAIL, RCPT and DATA in one write (RFC 2920): two round trips a message, not four.

        Returns (354, ...) when the data may follow, else the first failing reply.
        """
        envelope = message.envelope
        extra = (" " + " ".join(options)) if options else ""
        smtp.send(f"MAIL FROM:<{envelope.sender}>{extra}\r\nRCPT TO:<{envelope.recipient}>\r\nDATA\r\n")
        mail, rcpt, data = smtp.getreply(), smtp.getreply(), smtp.getreply()
        expected = ((mail, (250,)), (rcpt, (250, 251)), (data, (354,)))
        failure = next((reply for reply, ok in expected if reply[0] not in ok), None)
        if failure is None:
            return data
        if data[0] == 354:  # a server that took DATA anyway: end the empty message (reset follows)
            smtp.send(b".\r\n")
            smtp.getreply()
        return failure

    @staticmethod
    def _pipelined_data(smtp: smtplib.SMTP, message: Outgoing) -> tuple[int, bytes]:
        """The message itself after the 354, dot-stuffed, and the relay's final reply."""
        payload = dot_stuffed(message.data)
        # One write: the data and its terminator in separate writes meet Nagle's algorithm
        # and the peer's delayed ACK, which costs tens of milliseconds a message.
        smtp.send(payload + (b".\r\n" if payload.endswith(b"\r\n") else b"\r\n.\r\n"))
        return smtp.getreply()

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
            with contextlib.suppress(OSError):
                smtp.close()

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            with contextlib.suppress(OSError):
                smtp.close()
