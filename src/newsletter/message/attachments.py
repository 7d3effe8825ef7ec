"""Files attached to every message: `attachments = ["book.pdf"]` in the front matter.

Paths are relative to the campaign folder and must stay inside it: a campaign
folder may come from someone else, and its front matter must not be able to
mail out `~/.ssh/id_ed25519` to a list, nor the folder's own secrets and
addresses (`.env`, the list, `unsubscribed.csv`, the journal: `PrivateFiles`).
Each file is validated and read when the campaign is loaded, so a typo stops
`check` with the file's name, and the bytes are read once for the whole list,
not once per recipient.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from newsletter.errors import CampaignError
from newsletter.inputs.campaign import Campaign, _key_line
from newsletter.inputs.folder import PrivateFiles, read_inside

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


def load_attachments(campaign: Campaign, *, private: PrivateFiles | None = None) -> tuple[Attachment, ...]:
    """The front matter's `attachments`, checked and read; CampaignError names the bad entry.

    `private`: the files never attached (default: the campaign folder's, default names).
    """
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
        found.append(_load(entry.strip(), folder, campaign.path, line, private))
    return tuple(found)


def _load(name: str, folder: Path, where: Path, line: int, private: PrivateFiles | None) -> Attachment:
    try:
        path, data = read_inside(folder, name, use="attached", private=private)
    except ValueError as exc:
        raise CampaignError(f"'{FIELD}': {name!r}: {exc}", path=where, line=line) from None
    return Attachment(path, guess_type(path), data)
