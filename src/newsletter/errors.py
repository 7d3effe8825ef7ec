"""One root error type; subclasses carry where it happened so the CLI can say it.

The library raises, only the CLI prints. Each class says the exit code the CLI
gives it (`exit_code`, as click's `ClickException` does), so the mapping from
errors to codes is made here once: input and configuration problems
(`InputError`, `SetupError`) mean nothing was sent and map to 2; anything else a
run could not finish is 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

EXIT_FAILED, EXIT_INPUT = 1, 2


class NewsletterError(Exception):
    """Root of every error this package raises on purpose."""

    exit_code: ClassVar[int] = EXIT_FAILED

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (preflight renders in child processes); the
        # default pickling calls __init__ with the message alone and loses path and line.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[NewsletterError], args: tuple[Any, ...], state: dict[str, Any]) -> NewsletterError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class InputError(NewsletterError):
    """Bad input or configuration, found before anything is sent.

    `path`, `line` and `field` say where; `str()` gives the
    `file:line: field 'x': reason` form users can jump to.
    """

    exit_code: ClassVar[int] = EXIT_INPUT

    def __init__(
        self,
        reason: str,
        *,
        path: Path | str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.reason = reason
        self.path = Path(path) if path is not None else None
        self.line = line
        self.field = field
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path.name if self.path.is_absolute() else str(self.path)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        field = f"field '{self.field}': " if self.field else ""
        return f"{where}{field}{self.reason}"


class ConfigError(InputError):
    """A setting (flag, environment or `.env`) is missing or malformed."""


class TokenError(InputError):
    """An OAuth access token could not be had (the token command, a refresh, a sign-in): exit 2."""


class CampaignError(InputError):
    """`announcement.md` cannot be read: front matter, required keys, Markdown."""


class RecipientsError(InputError):
    """The recipients CSV as a whole is unusable (encoding, header, no email column)."""


class TemplateError(InputError):
    """A template failed to load or render; `recipient` names the CSV row.

    `code` is the check's finding code: `missing-field` when a field the template
    prints is not there, else `template-error`.
    """

    def __init__(
        self,
        reason: str,
        *,
        path: Path | str | None = None,
        line: int | None = None,
        recipient: str | None = None,
        code: str = "template-error",
    ) -> None:
        self.recipient = recipient
        self.code = code
        super().__init__(reason, path=path, line=line)

    def __str__(self) -> str:
        text = super().__str__()
        if self.path is not None and self.path.is_absolute() and self.path.parent.name == "templates":
            text = f"templates/{text}"  # as the user finds the file: templates/announcement.html:3
        return f"{text} (rendering for {self.recipient})" if self.recipient else text


class DeliveryError(NewsletterError):
    """The relay could not be used at all (connect, TLS, auth); nothing more can be sent.

    Carries `host` and `port` so the message reads `host:port: reason`.
    """

    def __init__(self, reason: str, *, host: str, port: int, code: int | None = None) -> None:
        self.reason = reason
        self.host = host
        self.port = port
        self.code = code
        super().__init__(self.__str__())

    def __str__(self) -> str:
        code = f"{self.code} " if self.code else ""
        return f"{self.host}:{self.port}: {code}{self.reason}"


class SetupError(DeliveryError):
    """TLS or authentication refused: a configuration problem, exit 2, nothing marked."""

    exit_code: ClassVar[int] = EXIT_INPUT


class RelayUnreachable(SetupError):
    """The first connection of a run could not be made: nothing was sent."""

    @classmethod
    def from_lost(cls, lost: ConnectionLost) -> RelayUnreachable:
        reason = f"{lost.reason}; nothing was sent. Check SMTP_HOST and SMTP_PORT, and that the relay runs"
        return cls(reason, host=lost.host, port=lost.port, code=lost.code)


class RelayRefusing(NewsletterError):
    """The relay refuses every message alike (a login or relay-permission problem): the run
    stopped, and the recipients it refused are left to send again."""

    exit_code: ClassVar[int] = EXIT_INPUT


class Cancelled(InputError):
    """The confirmation was refused (or could not be asked); nothing was sent."""


class Interrupted(Cancelled):
    """A stop request (Ctrl-C, SIGTERM) came during the check, before any message; nothing was sent."""


class CheckFailed(InputError):
    """The pre-send check found problems; nothing was sent. `report` holds them all."""

    def __init__(self, report: Any, reason: str, *, list_name: str) -> None:
        self.report = report
        self.report_name = list_name  # the CSV's name, as its problems are printed
        super().__init__(reason)


class ConnectionLost(DeliveryError, ConnectionError):
    """The connection dropped or timed out; a reconnect may help.

    `data_sent` is true when the message data had been handed over before the
    break: the relay may or may not have taken it, so the outcome is unknown.
    """

    def __init__(self, reason: str, *, host: str, port: int, code: int | None = None, data_sent: bool = False) -> None:
        self.data_sent = data_sent
        super().__init__(reason, host=host, port=port, code=code)


class RecipientRefused(NewsletterError):
    """The relay answered one message with an error reply.

    `permanent` is true for 5xx replies (never retried automatically) and
    false for 4xx (deferred, retried later).
    """

    def __init__(self, code: int, text: str) -> None:
        self.code = code
        self.text = text
        super().__init__(f"{code} {text}")

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600
