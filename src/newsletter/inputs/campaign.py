"""Reading `announcement.md` (TOML front matter + Markdown body) into a Campaign record."""

from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from newsletter.errors import CampaignError
from newsletter.inputs.folder import ANNOUNCEMENT, TEMPLATES, files_under, inside
from newsletter.inputs.recipients import column_key

FENCE = "+++"

# Keys the tool itself reads; any other key is a field for the templates.
TOOL_KEYS = frozenset(
    {"id", "subject", "from", "reply_to", "html_template", "text_template", "list_id", "list_name", "attachments",
     "language_column", "lang"}
)
# `announcement.<lang>.md`: a language tag such as `ru`, `pt-br` or `zh-hant`.
_VARIANT_NAME = re.compile(r"announcement\.([A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*)\.md")
LANGUAGE_COLUMN = "lang"
# What one campaign shares across its languages: one id (one journal, one message per
# recipient), one sender, one list header, one set of attachments, one column to choose by.
_SHARED_KEYS = frozenset({"id", "from", "reply_to", "list_id", "list_name", "attachments", "language_column"})
# Template sources larger than this are not scanned for field names (a warning only).
_SCAN_BYTES = 1024 * 1024


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
    # Language variants (`announcement.<lang>.md`), keyed by lower-case tag; only the default has them.
    lang: str | None = None
    variants: Mapping[str, Campaign] = field(default_factory=dict)
    language_column: str = LANGUAGE_COLUMN

    def variant_for(self, fields: Mapping[str, str]) -> Campaign:
        """The variant this recipient's language column names, or the default (missing, unknown)."""
        if not self.variants:
            return self
        value = fields.get(self.language_column)
        if not value:
            return self
        return self.variants.get(value.strip().lower(), self)

    @property
    def templates_dir(self) -> Path:
        return self.folder / TEMPLATES

    def context(self) -> dict[str, Any]:
        """What templates see as `campaign`: front matter plus the rendered body."""
        from markupsafe import Markup

        # Safe as markup: the body was rendered by markdown_renderer(), which escapes raw HTML.
        body = Markup(self.body_html)  # noqa: S704
        lang = self.lang or self.fields.get("lang") or ""
        return {**self.fields, "lang": lang, "body": body, "body_text": self.body_markdown}


def markdown_renderer() -> MarkdownIt:
    """CommonMark with tables and typographic quotes; raw HTML in the body stays text.

    `html: False` because the commonmark preset passes raw HTML through: a
    `<script>`, a `<link rel=stylesheet>` or an `<img onerror>` pasted into the
    announcement must reach inboxes as the characters typed, not as markup.
    """
    return MarkdownIt("commonmark", {"typographer": True, "html": False}).enable(
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


def _template_name(fields: Mapping[str, Any], key: str, path: Path, default: str) -> str:
    """A template file name inside `templates/`: relative, no `..`, no drive or backslash.

    Jinja's loader refuses `..` in includes too; this catches the front matter's
    own names early, with the key and line, instead of a confusing "not found".
    """
    name = _text(fields, key, path) or default
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or ":" in name or ".." in parts or "" in parts:
        raise CampaignError(
            f"'{key}' must name a file inside {TEMPLATES}/ (no absolute path, no '..'), got {name!r}",
            path=path,
            line=_key_line(path, key),
        )
    return name


def _key_line(path: Path, key: str) -> int:
    """The line of `key = ...` in the front matter, or 1 when it cannot be told."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError):
        return 1
    pattern = re.compile(rf"""^\s*(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')\s*=""")
    for number, line in enumerate(lines[1:], start=2):
        if line.strip() == FENCE:
            break
        if pattern.match(line):
            return number
    return 1


# `x.name`, `x["name"]` or `x['name']` anywhere in a template: a field it reads.
_FIELD_REFERENCE = re.compile(r"""\.\s*([A-Za-z_]\w*)|\[\s*(["'])([^"'\]]+)\2\s*\]""")


@dataclass(frozen=True, slots=True)
class UnusedField:
    """A front-matter key that neither the tool nor any template reads: probably a typo."""

    path: Path
    line: int
    key: str
    suggestion: str | None = None

    @property
    def message(self) -> str:
        hint = f" (did you mean '{self.suggestion}'?)" if self.suggestion else ""
        return f"front-matter key '{self.key}' is not used by any template in {TEMPLATES}/{hint}"

    def __str__(self) -> str:
        return f"{self.path.name}:{self.line}: {self.message}"


def unused_fields(campaign: Campaign) -> list[UnusedField]:
    """Front-matter keys no template references, for `newsletter check` to warn about.

    Cheap and deliberately loose: a key counts as used when `.key` or `["key"]`
    appears anywhere in a template or the subject, whatever variable it is read
    from (`{% set c = campaign %}{{ c.title }}` counts). A typo never appears.
    """
    referenced: set[str] = set()
    sources = [campaign.subject]
    for file in files_under(campaign.templates_dir):
        try:
            if file.stat().st_size <= _SCAN_BYTES:
                sources.append(file.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
    for source in sources:
        for match in _FIELD_REFERENCE.finditer(source):
            referenced.add(match.group(1) or match.group(3))
    candidates = sorted(referenced)
    # A variant's own keys too (those the default lacks): a typo there is as silent.
    keyed = [(campaign.path, key) for key in campaign.fields]
    for variant in campaign.variants.values():
        keyed += [(variant.path, key) for key in variant.fields if key not in campaign.fields]
    return [
        UnusedField(
            path,
            _key_line(path, key),
            key,
            next(iter(difflib.get_close_matches(key, candidates, n=1)), None),
        )
        for path, key in keyed
        if key not in TOOL_KEYS and key not in referenced
    ]


def find_in_templates(templates: Path, text: str) -> tuple[Path | None, int | None]:
    """The first template file and line holding `text`, to point an error at; (None, None) if none."""
    if not text:
        return None, None
    for file in files_under(templates):
        try:
            if file.stat().st_size > _SCAN_BYTES:
                continue
            for number, line in enumerate(file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if text in line:
                    return file, number
        except OSError:
            continue
    return None, None


def derive_id(path: Path, subject: str) -> str:
    """A stable campaign id from the file name and subject, used when the front matter has none."""
    slug = re.sub(r"[^a-z0-9]+", "-", path.stem.lower()).strip("-") or "campaign"
    digest = hashlib.sha256(subject.encode("utf-8")).hexdigest()[:10]
    return f"{slug}-{digest}"


def _read(path: Path, folder: Path) -> str:
    if path.exists() and not inside(path.resolve(), folder.resolve()):  # its body goes into every message
        raise CampaignError(
            "leads outside the campaign folder (a symbolic link?); the announcement is read only "
            "from the folder itself: replace the link with the file",
            path=path,
        )
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CampaignError(
            f"no {ANNOUNCEMENT} in {folder}; run `newsletter init` to start a campaign", path=path
        ) from None
    except UnicodeDecodeError as exc:
        raise CampaignError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from None
    except OSError as exc:  # a folder of that name, no permission
        raise CampaignError(f"cannot be read: {exc.strerror or exc}", path=path) from None


def _variant_template(templates: Path, default_name: str, fields: Mapping[str, Any], key: str, lang: str) -> str:
    """A variant's template: its own `key`, else `name.<lang>.ext` beside the default if it exists."""
    if key in fields:
        return default_name  # already resolved from the variant's own front matter
    stem, dot, suffix = default_name.rpartition(".")
    candidate = f"{stem}.{lang}.{suffix}" if dot else f"{default_name}.{lang}"
    return candidate if (templates / candidate).is_file() else default_name


def load_campaign(folder: Path) -> Campaign:
    """Read and validate `announcement.md` in `folder`, and its language variants beside it."""
    path = folder / ANNOUNCEMENT
    text = _read(path, folder)
    front, body, _ = split_front_matter(text, path)
    fields = _parse_toml(front, path)
    subject = _text(fields, "subject", path, required=True)
    assert subject is not None
    campaign_id = _text(fields, "id", path) or derive_id(path, subject)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", campaign_id):
        raise CampaignError(
            "'id' may hold letters, digits, '.', '_' and '-' (at most 100)", path=path, line=1
        )
    default = Campaign(
        folder=folder,
        path=path,
        id=campaign_id,
        subject=subject,
        body_markdown=body.strip("\n") + "\n",
        body_html=markdown_renderer().render(body),
        fields=fields,
        sender=_text(fields, "from", path),
        reply_to=_text(fields, "reply_to", path),
        html_template=_template_name(fields, "html_template", path, "announcement.html"),
        text_template=_template_name(fields, "text_template", path, "announcement.txt"),
        language_column=column_key(_text(fields, "language_column", path) or LANGUAGE_COLUMN),
    )
    variants = {lang: _load_variant(default, file, lang) for lang, file in _variant_files(folder)}
    return replace(default, variants=variants) if variants else default


def _variant_files(folder: Path) -> list[tuple[str, Path]]:
    found: dict[str, Path] = {}
    try:
        names = sorted(entry.name for entry in folder.iterdir())
    except OSError:
        return []
    for name in names:
        match = _VARIANT_NAME.fullmatch(name)
        if match is None:
            continue
        lang = match.group(1).lower()
        if lang in found:
            raise CampaignError(
                f"two variants for the language {lang!r} ({found[lang].name} and {name}): keep one",
                path=folder / name,
            )
        found[lang] = folder / name
    return sorted(found.items())


def _load_variant(default: Campaign, path: Path, lang: str) -> Campaign:
    """`announcement.<lang>.md`: what its front matter sets wins, the rest comes from the default.

    The id stays the default's: the journal knows one campaign, and each recipient
    gets one message in one language. A variant with an empty body keeps the default body.
    """
    front, body, _ = split_front_matter(_read(path, default.folder), path)
    own = _parse_toml(front, path)
    for key in _SHARED_KEYS & own.keys():
        raise CampaignError(
            f"'{key}' is the same for every language: set it in {ANNOUNCEMENT} and remove it here",
            path=path,
            line=_key_line(path, key),
        )
    fields = {**default.fields, **own}
    has_body = bool(body.strip())
    templates = default.templates_dir
    return replace(
        default,
        path=path,
        subject=_text(own, "subject", path) or default.subject,
        body_markdown=body.strip("\n") + "\n" if has_body else default.body_markdown,
        body_html=markdown_renderer().render(body) if has_body else default.body_html,
        fields=fields,
        html_template=_variant_template(
            templates, _template_name(fields, "html_template", path, "announcement.html"), own, "html_template", lang
        ),
        text_template=_variant_template(
            templates, _template_name(fields, "text_template", path, "announcement.txt"), own, "text_template", lang
        ),
        lang=lang,
        variants={},
    )
