"""A campaign folder: the names of its files, and the five options that locate and read them.

The CLI's global options (`--campaign`, `--recipients`, `--env-file`, `--encoding`,
`--delimiter`), the library's `newsletter.load` and the preview page all describe a
campaign with this one record, so a file name or a default is decided here only.
A folder may come from a stranger: `read_inside` is the one way a file that the
folder names (an attachment, an image) is read, and it never leaves the folder;
`PrivateFiles` are the files no template, attachment or image may ever be; and
`files_under` walks `templates/` without following a link.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from newsletter.errors import InputError
from newsletter.inputs.recipients import RecipientList
from newsletter.inputs.where import Where

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
_UNSAFE_IN_NAMES = re.compile(r"[^\w@.+-]")  # `%` is unsafe too: it marks what was replaced
_LONGEST_STEM = 150


@dataclass(frozen=True)
class CampaignFolder:
    """Where a campaign's inputs are, and how its list is read; nothing is opened here."""

    path: Path = Path(".")
    recipients: Path | None = None  # default: recipients.csv in the folder
    env_file: Path | None = None  # default: .env in the folder, when there is one
    encoding: str = DEFAULT_ENCODING
    delimiter: str | None = None  # default: sniffed from the header row
    where: tuple[Where, ...] = ()  # `--where`: only the rows matching every condition

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

    def private(self) -> PrivateFiles:
        """The files of this campaign that must never be read into a message."""
        files = [
            ("the settings file", self.root / ENV_FILE),
            ("the recipient list", self.recipients_path),
            ("the unsubscribe list", self.unsubscribed),
        ]
        if self.env_file is not None:
            files.append(("the settings file", self.env_file))
        return PrivateFiles(tuple(files), self.root / STATE_DIR)

    def rows(self) -> RecipientList:
        """The list, opened lazily: iterating it reads the CSV row by row."""
        return RecipientList(self.recipients_path, encoding=self.encoding, delimiter=self.delimiter, where=self.where)

    def watched(self) -> list[Path]:
        """Every file whose change changes a message: announcement, templates, list, settings."""
        files = [self.announcement, self.recipients_path, self.env_file or self.root / ENV_FILE]
        return files + files_under(self.templates)


@dataclass(frozen=True)
class PrivateFiles:
    """Files that hold secrets or addresses: settings, the list, `unsubscribed.csv`, the state folder.

    None of them may become a template, an attachment or an image, whatever name
    leads to it: its own, a link, or a hard link (a folder unpacked from an archive
    can hold `templates/footer.txt` as a hard link of its `.env`, which the user
    then fills in with the password).
    """

    files: tuple[tuple[str, Path], ...]  # (what it is, where)
    state_dir: Path

    def identify(self, path: Path) -> str | None:
        """What `path` is, e.g. "the settings file .env", when it is one of these; else None."""
        real = path.resolve()
        state = self.state_dir.resolve()
        if inside(real, state):
            return f"the state folder {STATE_DIR}/ (the journal)"
        try:
            identity = _identity(real)
        except OSError:
            identity = None
        for what, private in self.files:
            private = private.resolve()
            if real == private or (identity is not None and _same(identity, private)):
                return f"{what} {private.name}"
        if identity is not None and state.is_dir() and not state.is_symlink():
            with os.scandir(state) as entries:
                for entry in entries:
                    if entry.is_file(follow_symlinks=False) and _same(identity, Path(entry.path)):
                        return f"the state folder {STATE_DIR}/ (the journal)"
        return None


def _identity(path: Path) -> tuple[int, int]:
    found = path.stat()
    return found.st_dev, found.st_ino


def _same(identity: tuple[int, int], path: Path) -> bool:
    try:
        return _identity(path) == identity
    except OSError:
        return False


def check_templates_folder(templates: Path) -> None:
    """Refuse a templates folder that is a link, or that leads outside its campaign folder.

    With `templates -> .` every file of the campaign, `.env` included, would be a
    template; with `templates -> /` every file of the machine. A missing folder is
    not refused here: loading a template from it then says what is missing.
    """
    if templates.is_symlink():
        raise InputError(
            f"the templates folder is a symbolic link (to {os.readlink(templates)}); templates are "
            f"read only from a real {TEMPLATES}/ folder inside the campaign folder: replace the "
            "link with a folder that holds the templates",
            path=templates,
        )
    if templates.exists() and not inside(templates.resolve(), templates.parent.resolve()):
        raise InputError(
            f"the templates folder leads outside the campaign folder (to {templates.resolve()}); "
            f"templates are read only from a real {TEMPLATES}/ folder inside it",
            path=templates,
        )


def files_under(directory: Path) -> list[Path]:
    """Every regular file under `directory`, sorted; no link is followed or listed.

    Nothing at all when `directory` is itself a link: a walk through `templates -> /`
    would read the whole filesystem.
    """
    if directory.is_symlink() or not directory.is_dir():
        return []
    found = []
    for top, _, names in os.walk(directory):  # followlinks=False: a linked folder is not entered
        for name in names:
            path = Path(top, name)
            if not path.is_symlink() and path.is_file():
                found.append(path)
    return sorted(found)


def address_stem(address: str) -> str:
    """A file name for one recipient's file (outbox, preview): safe on every filesystem,
    still showing whom it is for, and one per address.

    Characters a file name should not hold become `%XX` (their UTF-8 bytes) and `%`
    itself is one of them, so two addresses never share a name (`a#b@` and `a_b@` once
    both became `a_b@`, and one message overwrote the other in the outbox). A name
    too long for some filesystems keeps its start and ends in a hash of the whole.
    """
    stem = _UNSAFE_IN_NAMES.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), address)
    if len(stem) <= _LONGEST_STEM:
        return stem
    digest = hashlib.sha256(address.encode()).hexdigest()[:16]
    return f"{stem[: _LONGEST_STEM - 17]}-{digest}"


def inside(path: Path, folder: Path) -> bool:
    """Whether resolved `path` lies within resolved `folder` (symlinks already followed)."""
    return path == folder or folder in path.parents


def read_inside(
    folder: Path, name: str, *, use: str, private: PrivateFiles | None = None
) -> tuple[Path, bytes]:
    """The file `name` (relative to `folder`) and its bytes; ValueError says why it cannot be had.

    Attachments and inline images are read through this one function: a path that
    leads out of the folder, by `..` or by a link, is refused, and so is one of the
    campaign's `private` files (default: those of `folder` with the default names).
    `use` completes the refusal: "only files inside the campaign folder can be {use}".
    """
    root = folder.resolve()
    path = (root / name).resolve()
    if not inside(path, root):
        raise ValueError(f"only files inside the campaign folder can be {use}; copy it there")
    what = (private if private is not None else CampaignFolder(root).private()).identify(path)
    if what is not None:
        raise ValueError(f"it is {what}, which is never {use}: settings and addresses stay private")
    if not path.is_file():
        raise ValueError("no such file in the campaign folder (paths are relative to it)")
    try:
        return path, path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read it: {exc.strerror}") from None
