"""A campaign folder: the names of its files, and the five options that locate and read them.

The CLI's global options (`--campaign`, `--recipients`, `--env-file`, `--encoding`,
`--delimiter`), the library's `newsletter.load` and the preview page all describe a
campaign with this one record, so a file name or a default is decided here only.
A folder may come from a stranger: `read_inside` is the one way a file that the
folder names (an attachment, an image) is read, and it never leaves the folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from newsletter.inputs.recipients import RecipientList

ANNOUNCEMENT = "announcement.md"
TEMPLATES = "templates"
RECIPIENTS = "recipients.csv"
EXAMPLE_RECIPIENTS = "recipients.example.csv"  # the starter's list of example colleagues
ENV_FILE = ".env"
OUTBOX = "outbox"
PREVIEW = "preview"
STATE_DIR = ".newsletter"  # the journal and whatever else a run keeps between runs
JOURNAL_FILE = "journal.sqlite3"
UNSUBSCRIBED = "unsubscribed.csv"
DEFAULT_ENCODING = "utf-8"
_UNSAFE_IN_NAMES = re.compile(r"[^A-Za-z0-9@._+-]")


@dataclass(frozen=True)
class CampaignFolder:
    """Where a campaign's inputs are, and how its list is read; nothing is opened here."""

    path: Path = Path(".")
    recipients: Path | None = None  # default: recipients.csv in the folder
    env_file: Path | None = None  # default: .env in the folder, when there is one
    encoding: str = DEFAULT_ENCODING
    delimiter: str | None = None  # default: sniffed from the header row

    @property
    def root(self) -> Path:
        return self.path.resolve()

    @property
    def recipients_path(self) -> Path:
        return (self.recipients or self.root / RECIPIENTS).resolve()

    def example_list(self) -> Path | None:
        """The example list to use instead, when no list was named and `recipients.csv` is missing.

        A fresh starter campaign (and this project's own folder) has only
        `recipients.example.csv`; `check` and `preview` use it rather than stop,
        and say so. `send` to a relay never does on its own: those are example addresses.
        """
        if self.recipients is not None or self.recipients_path.exists():
            return None
        example = self.root / EXAMPLE_RECIPIENTS
        return example if example.is_file() else None

    @property
    def settings_file(self) -> Path | None:
        """The `.env` to read: the one named on purpose, else the folder's own if it exists."""
        if self.env_file is not None:
            return self.env_file
        own = self.root / ENV_FILE
        return own if own.is_file() else None

    @property
    def announcement(self) -> Path:
        return self.root / ANNOUNCEMENT

    @property
    def templates(self) -> Path:
        return self.root / TEMPLATES

    @property
    def outbox(self) -> Path:
        return self.root / OUTBOX

    @property
    def preview(self) -> Path:
        return self.root / PREVIEW

    @property
    def journal(self) -> Path:
        return self.root / STATE_DIR / JOURNAL_FILE

    @property
    def unsubscribed(self) -> Path:
        return self.root / UNSUBSCRIBED

    def rows(self) -> RecipientList:
        """The list, opened lazily: iterating it reads the CSV row by row."""
        return RecipientList(self.recipients_path, encoding=self.encoding, delimiter=self.delimiter)

    def watched(self) -> list[Path]:
        """Every file whose change changes a message: announcement, templates, list, settings."""
        files = [self.announcement, self.recipients_path, self.env_file or self.root / ENV_FILE]
        if self.templates.is_dir():
            files += sorted(path for path in self.templates.rglob("*") if path.is_file())
        return files


def address_stem(address: str) -> str:
    """A file name for one recipient's file (outbox, preview): safe on every filesystem,
    and still showing whom it is for."""
    return _UNSAFE_IN_NAMES.sub("_", address)[:150]


def inside(path: Path, folder: Path) -> bool:
    """Whether resolved `path` lies within resolved `folder` (symlinks already followed)."""
    return path == folder or folder in path.parents


def read_inside(folder: Path, name: str, *, use: str) -> tuple[Path, bytes]:
    """The file `name` (relative to `folder`) and its bytes; ValueError says why it cannot be had.

    Attachments and inline images are read through this one function: a path that
    leads out of the folder, by `..` or by a link, is refused. `use` completes
    the refusal: "only files inside the campaign folder can be {use}".
    """
    root = folder.resolve()
    path = (root / name).resolve()
    if not inside(path, root):
        raise ValueError(f"only files inside the campaign folder can be {use}; copy it there")
    if not path.is_file():
        raise ValueError("no such file in the campaign folder (paths are relative to it)")
    try:
        return path, path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read it: {exc.strerror}") from None
