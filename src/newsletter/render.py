"""The Jinja environment and rendering one recipient's subject, HTML and text.

`StrictUndefined` turns a misspelt or missing field into an error at preflight
instead of an empty greeting in ten thousand inboxes. Templates run in Jinja's
immutable sandbox: a campaign folder may come from someone else, and templates
have no business mutating the data they are given.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from newsletter.campaign import ANNOUNCEMENT, Campaign
from newsletter.errors import TemplateError
from newsletter.inline import inline_css
from newsletter.plaintext import html_to_text
from newsletter.recipients import Recipient
from newsletter.unsubscribe import UnsubscribeLinks

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Rendered:
    """What one recipient reads: the subject and both bodies, HTML already inlined."""

    subject: str
    html: str
    text: str
    unsubscribe_url: str | None


def make_environment(templates: Path, *, autoescape: bool) -> jinja2.Environment:
    """A sandboxed environment that loads only from the campaign's `templates/` folder."""
    return ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(templates, encoding="utf-8"),
        undefined=jinja2.StrictUndefined,
        autoescape=autoescape,
        keep_trailing_newline=True,
        auto_reload=False,
    )


def template_location(exc: BaseException, templates: Path) -> tuple[Path | None, int | None]:
    """The deepest template file and line in a Jinja traceback."""
    lineno = getattr(exc, "lineno", None)
    filename = getattr(exc, "filename", None)
    if isinstance(exc, jinja2.TemplateSyntaxError) and filename:
        return Path(filename), lineno
    found: tuple[Path | None, int | None] = (None, None)
    for frame in traceback.extract_tb(exc.__traceback__):
        path = Path(frame.filename)
        if path.suffix and (path.parent == templates or templates in path.parents):
            found = (path, frame.lineno)
        elif frame.filename == "<template>":
            found = (Path(ANNOUNCEMENT), None)
    return found


def _reason(exc: BaseException) -> str:
    if isinstance(exc, jinja2.TemplateNotFound):
        return f"template not found: {exc.name}"
    if isinstance(exc, jinja2.UndefinedError):
        return f"undefined value: {exc.message}"
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"template syntax error: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


class Renderer:
    """Renders the campaign for one recipient at a time; templates compile once."""

    def __init__(self, campaign: Campaign, *, links: UnsubscribeLinks | None = None) -> None:
        self.campaign = campaign
        self.links = links or UnsubscribeLinks()
        templates = campaign.templates_dir
        self._templates = templates
        self._campaign_context = campaign.context()
        html_env = make_environment(templates, autoescape=True)
        text_env = make_environment(templates, autoescape=False)
        self._html = self._load(lambda: html_env.get_template(campaign.html_template))
        text_path = templates / campaign.text_template
        self._text = (
            self._load(lambda: text_env.get_template(campaign.text_template))
            if text_path.is_file()
            else None
        )
        self._subject = self._load(lambda: text_env.from_string(campaign.subject))

    @property
    def has_text_template(self) -> bool:
        return self._text is not None

    def _load(self, get: Any) -> jinja2.Template:
        try:
            template: jinja2.Template = get()
        except jinja2.TemplateError as exc:
            raise self._error(exc, None) from None
        return template

    def _error(self, exc: BaseException, recipient: Recipient | None) -> TemplateError:
        path, line = template_location(exc, self._templates)
        if path is not None and path.name == ANNOUNCEMENT:
            path = self.campaign.path
        elif path is None and isinstance(exc, jinja2.TemplateNotFound):
            path = self._templates
        who = f"{recipient.email}, recipients line {recipient.line}" if recipient else None
        return TemplateError(_reason(exc), path=path, line=line, recipient=who)

    def context(self, recipient: Mapping[str, str], unsubscribe_url: str | None) -> dict[str, Any]:
        return {
            "campaign": self._campaign_context,
            "recipient": recipient,
            "unsubscribe_url": unsubscribe_url,
        }

    def render(self, recipient: Recipient) -> Rendered:
        """Subject, inlined HTML and text for `recipient`; a TemplateError names file and line."""
        url = self.links.url_for(recipient.email)
        context = self.context(recipient.fields, url)
        try:
            subject = self._subject.render(context)
            html = self._html.render(context)
            text = self._text.render(context) if self._text is not None else None
        except Exception as exc:  # Jinja raises arbitrary errors from template code
            raise self._error(exc, recipient) from None
        subject = " ".join(subject.split())
        if _CONTROL.search(subject) or not subject:
            raise TemplateError(
                "the subject is empty or holds a control character after rendering",
                path=self.campaign.path,
                recipient=f"{recipient.email}, recipients line {recipient.line}",
            )
        html = inline_css(html)
        return Rendered(subject, html, text if text is not None else html_to_text(html), url)
