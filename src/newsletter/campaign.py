"""Reading `announcement.md` (TOML front matter + Markdown body) into a Campaign record."""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from newsletter.errors import CampaignError

ANNOUNCEMENT = "announcement.md"
TEMPLATES = "templates"
FENCE = "+++"

# Keys the tool itself reads; any other key is a field for the templates.
TOOL_KEYS = frozenset(
    {"id", "subject", "from", "reply_to", "html_template", "text_template", "list_id"}
)


@dataclass(frozen=True)
class Campaign:
    """One announcement: where it lives, what it says and how it is laid out."""

    folder: Path
    path: Path
    id: str
    subject: str
    body_markdown: str
    body_html: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    sender: str | None = None
    reply_to: str | None = None
    html_template: str = "announcement.html"
    text_template: str = "announcement.txt"

    @property
    def templates_dir(self) -> Path:
        return self.folder / TEMPLATES

    def context(self) -> dict[str, Any]:
        """What templates see as `campaign`: front matter plus the rendered body."""
        from markupsafe import Markup

        return {**self.fields, "body": Markup(self.body_html), "body_text": self.body_markdown}


def markdown_renderer() -> MarkdownIt:
    """CommonMark with tables and typographic quotes; raw HTML in the body stays text."""
    return MarkdownIt("commonmark", {"typographer": True}).enable(
        ["replacements", "smartquotes", "table", "strikethrough"]
    )


def split_front_matter(text: str, path: Path) -> tuple[str, str, int]:
    """Return (front matter, body, first line of the body)."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != FENCE:
        raise CampaignError(f"must start with a '{FENCE}' line opening the TOML front matter", path=path, line=1)
    for index, line in enumerate(lines[1:], start=1):
        if line.strip() == FENCE:
            return "".join(lines[1:index]), "".join(lines[index + 1 :]), index + 2
    raise CampaignError(f"the front matter is never closed by a '{FENCE}' line", path=path, line=1)


_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")


def _parse_toml(front: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(front)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_LINE.search(str(exc))
        line = int(match.group(1)) + 1 if match else 1  # +1: the opening fence
        reason = _TOML_LINE.sub("", str(exc)).strip()
        raise CampaignError(f"invalid TOML front matter: {reason}", path=path, line=line) from None


def _text(fields: Mapping[str, Any], key: str, path: Path, *, required: bool = False) -> str | None:
    value = fields.get(key)
    if value is None:
        if required:
            raise CampaignError(f"the front matter needs a '{key}' key", path=path, line=1)
        return None
    if not isinstance(value, str) or not value.strip():
        raise CampaignError(f"'{key}' must be a non-empty string", path=path, line=1)
    return value.strip()


def derive_id(path: Path, subject: str) -> str:
    """A stable campaign id from the file name and subject, used when the front matter has none."""
    slug = re.sub(r"[^a-z0-9]+", "-", path.stem.lower()).strip("-") or "campaign"
    digest = hashlib.sha256(subject.encode("utf-8")).hexdigest()[:10]
    return f"{slug}-{digest}"


def load_campaign(folder: Path) -> Campaign:
    """Read and validate `announcement.md` in `folder`."""
    path = folder / ANNOUNCEMENT
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CampaignError(
            f"no {ANNOUNCEMENT} in {folder}; run `newsletter init` to start a campaign", path=path
        ) from None
    except UnicodeDecodeError as exc:
        raise CampaignError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from None
    front, body, _ = split_front_matter(text, path)
    fields = _parse_toml(front, path)
    subject = _text(fields, "subject", path, required=True)
    assert subject is not None
    campaign_id = _text(fields, "id", path) or derive_id(path, subject)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", campaign_id):
        raise CampaignError(
            "'id' may hold letters, digits, '.', '_' and '-' (at most 100)", path=path, line=1
        )
    return Campaign(
        folder=folder,
        path=path,
        id=campaign_id,
        subject=subject,
        body_markdown=body.strip("\n") + "\n",
        body_html=markdown_renderer().render(body),
        fields=fields,
        sender=_text(fields, "from", path),
        reply_to=_text(fields, "reply_to", path),
        html_template=_text(fields, "html_template", path) or "announcement.html",
        text_template=_text(fields, "text_template", path) or "announcement.txt",
    )
