"""Files attached to every message: `attachments = ["book.pdf"]` in the front matter.

Paths are relative to the campaign folder and must stay inside it: a campaign
folder may come from someone else, and its front matter must not be able to
mail out `~/.ssh/id_ed25519` to a list. Each file is validated and read when the
campaign is loaded, so a typo stops `check` with the file's name, and the bytes
are read once for the whole list, not once per recipient.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from newsletter.campaign import Campaign, _key_line
from newsletter.errors import CampaignError

FIELD = "attachments"

# The standard library's own table only, so a type does not depend on the
# machine's /etc/mime.types; plus the formats a book or paper ships in.
_TYPES = mimetypes.MimeTypes()
for _type, _ext in (
    ("application/epub+zip", ".epub"),
    ("application/x-mobipocket-ebook", ".mobi"),
    ("image/webp", ".webp"),
    ("text/calendar", ".ics"),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", ".docx"),
    ("application/vnd.oasis.opendocument.text", ".odt"),
):
    _TYPES.add_type(_type, _ext)
_COMPRESSED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}


def guess_type(path: Path) -> str:
    """The MIME type for a file name; `application/octet-stream` when unknown."""
    content_type, encoding = _TYPES.guess_type(path.name, strict=False)
    if encoding is not None:  # `book.tar.gz` is a gzip file, whatever is inside
        return _COMPRESSED.get(encoding, "application/octet-stream")
    return content_type or "application/octet-stream"


def inside(path: Path, folder: Path) -> bool:
    """Whether resolved `path` lies within resolved `folder` (symlinks already followed)."""
    return path == folder or folder in path.parents


@dataclass(frozen=True)
class Attachment:
    """One file as every recipient gets it."""

    path: Path
    content_type: str
    data: bytes

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def size(self) -> int:
        return len(self.data)


def load_attachments(campaign: Campaign) -> tuple[Attachment, ...]:
    """The front matter's `attachments`, checked and read; CampaignError names the bad entry."""
    value = campaign.fields.get(FIELD)
    if value is None:
        return ()
    line = _key_line(campaign.path, FIELD)
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise CampaignError(
            f"'{FIELD}' must be a list of file names, e.g. {FIELD} = [\"book.pdf\"]",
            path=campaign.path,
            line=line,
        )
    folder = campaign.folder.resolve()
    found = []
    for entry in value:
        if not isinstance(entry, str) or not entry.strip():
            raise CampaignError(
                f"'{FIELD}': every entry must be a file name, got {entry!r}", path=campaign.path, line=line
            )
        found.append(_load(entry.strip(), folder, campaign.path, line))
    return tuple(found)


def _load(name: str, folder: Path, where: Path, line: int) -> Attachment:
    def error(reason: str) -> CampaignError:
        return CampaignError(f"'{FIELD}': {name!r}: {reason}", path=where, line=line)

    path = (folder / name).resolve()
    if not inside(path, folder):
        raise error("only files inside the campaign folder can be attached; copy it there")
    if not path.is_file():
        raise error("no such file in the campaign folder (paths are relative to it)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"cannot read it: {exc.strerror}") from None
    return Attachment(path, guess_type(path), data)
