"""A finding: one problem a check found, how bad it is, and where; shared by every check.

`newsletter check` prints findings and the preview page shows them in its checks
panel, so both say the same thing in the same words.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from newsletter.inputs.recipients import Recipient

Level = Literal["error", "warning", "info"]
LEVELS: tuple[Level, ...] = ("error", "warning", "info")


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: how bad, a stable code, what to do, and where when that is known."""

    level: Level
    code: str
    message: str
    path: str | None = None
    line: int | None = None
    recipient: str | None = None

    @property
    def location(self) -> str:
        if self.path is None:
            return ""
        return f"{self.path}:{self.line}" if self.line is not None else self.path

    def __str__(self) -> str:
        where = f"{self.location}: " if self.path else ""
        who = f" ({self.recipient})" if self.recipient else ""
        return f"{where}{self.message}{who}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "code": self.code,
            "message": self.message,
            "path": self.path,
            "line": self.line,
            "recipient": self.recipient,
            "location": self.location,
        }


def relative(path: Path | None, folder: Path) -> str | None:
    """A path as the user knows it: relative to the campaign folder when inside it."""
    if path is None:
        return None
    try:
        return path.resolve().relative_to(folder).as_posix()
    except ValueError:
        return path.name if path.is_absolute() else path.as_posix()


def who(recipient: Recipient) -> str:
    return f"{recipient.email}, recipients line {recipient.line}"


def counts(findings: Iterable[Finding]) -> dict[Level, int]:
    """How many findings of each level, every level present."""
    result: dict[Level, int] = dict.fromkeys(LEVELS, 0)
    for finding in findings:
        result[finding.level] += 1
    return result
