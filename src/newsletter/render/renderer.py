"""The Jinja environment and rendering one recipient's subject, HTML and text.

A misspelt or missing field printed without a fallback is an error at preflight
instead of an empty greeting in ten thousand inboxes; with a fallback
(`recipient.name or "colleague"`) a column the list lacks is fine
(`newsletter.render.undefined`). Templates run in Jinja's
immutable sandbox: a campaign folder may come from someone else, and templates
have no business mutating the data they are given.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from newsletter.errors import TemplateError
from newsletter.inputs.campaign import Campaign, find_in_templates
from newsletter.inputs.folder import ANNOUNCEMENT, RECIPIENTS, PrivateFiles
from newsletter.inputs.recipients import Recipient
from newsletter.inputs.text import CONTROL
from newsletter.message.unsubscribe import UnsubscribeLinks
from newsletter.render.inline import ExternalStylesheet
from newsletter.render.loader import CampaignLoader
from newsletter.render.plaintext import html_to_text
from newsletter.render.sandbox import BudgetedSandbox
from newsletter.render.skeleton import SkeletonInliner
from newsletter.render.template_errors import describe, template_location
from newsletter.render.undefined import FieldUndefined
from newsletter.render.wrap import wrap


@dataclass(frozen=True, slots=True)
class Rendered:
    """What one recipient reads: the subject and both bodies, HTML already inlined."""

    subject: str
    html: str
    text: str
    unsubscribe_url: str | None


def make_environment(
    templates: Path, *, autoescape: bool, private: PrivateFiles | None = None
) -> jinja2.Environment:
    """A sandboxed environment that loads only from the campaign's `templates/` folder.

    The loader refuses links out of it and the campaign's `private` files
    (`newsletter.render.loader`); the sandbox bounds loops, time and output per
    render (`newsletter.render.sandbox`).
    """
    environment = BudgetedSandbox(
        loader=CampaignLoader(templates, private=private),
        undefined=FieldUndefined,
        autoescape=autoescape,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    environment.filters["wordwrap"] = _remembering(_wordwrap)
    return environment


@jinja2.pass_environment
def _wordwrap(
    environment: jinja2.Environment,
    s: Any,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    """Jinja's `wordwrap` (each line of `s` a paragraph), with `newsletter.render.wrap` doing the wrapping."""
    if type(s) is not str:  # Markup and the like: Jinja's own filter keeps their type rules
        return jinja2.filters.do_wordwrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens)
    if wrapstring is None:
        wrapstring = environment.newline_sequence
    return wrapstring.join(
        [
            wrapstring.join(wrap(line, width, break_long_words=break_long_words, break_on_hyphens=break_on_hyphens))
            for line in s.splitlines()
        ]
    )


def _remembering(wordwrap: Callable[..., str]) -> Callable[..., str]:
    """`wordwrap` with its answers kept: textwrap was most of a text part's cost, and the
    campaign's own paragraphs (and most recipient-dependent ones) wrap the same every time."""

    @functools.lru_cache(maxsize=512)
    def cached(environment: jinja2.Environment, text: str, args: tuple[Any, ...], kwargs: tuple[Any, ...]) -> str:
        return wordwrap(environment, text, *args, **dict(kwargs))

    @jinja2.pass_environment
    def remembered(environment: jinja2.Environment, text: Any, *args: Any, **kwargs: Any) -> str:
        if type(text) is not str:  # Markup, numbers, undefined: as Jinja would, uncached
            return wordwrap(environment, text, *args, **kwargs)
        try:
            return cached(environment, text, args, tuple(kwargs.items()))
        except TypeError:  # an unhashable argument: Jinja reports it, if it is wrong at all
            return wordwrap(environment, text, *args, **kwargs)

    return remembered


class Renderer:
    """Renders the campaign for one recipient at a time; templates compile once."""

    def __init__(
        self,
        campaign: Campaign,
        *,
        links: UnsubscribeLinks | None = None,
        private: PrivateFiles | None = None,
        list_name: str = RECIPIENTS,
    ) -> None:
        """`private`: the files no template may be (default: the campaign folder's, default names);
        `list_name`: the CSV's file name, for errors about its columns."""
        self.campaign = campaign
        self.links = links or UnsubscribeLinks()
        self.list_name = list_name  # the CSV's file name, for errors about its columns
        templates = campaign.templates_dir
        self._templates = templates
        self._campaign_context = campaign.context()
        html_env = make_environment(templates, autoescape=True, private=private)
        text_env = make_environment(templates, autoescape=False, private=private)
        self._html = self._load(lambda: html_env.get_template(campaign.html_template))
        text_path = templates / campaign.text_template
        self._text = (
            self._load(lambda: text_env.get_template(campaign.text_template))
            if text_path.is_file()
            else None
        )
        self._subject = self._load(lambda: text_env.from_string(campaign.subject))
        self.inliner = SkeletonInliner(self._render_html)
        # One renderer per language variant, each with its own templates and skeleton cache:
        # a variant's layout differs from the default's, so their inlined shapes never mix.
        self._variants = {
            lang: Renderer(variant, links=self.links, private=private, list_name=list_name)
            for lang, variant in campaign.variants.items()
        }

    def for_fields(self, fields: Mapping[str, str]) -> Renderer:
        """The renderer of the variant this recipient reads (the default one without variants)."""
        if not self._variants:
            return self
        variant = self.campaign.variant_for(fields)
        return self._variants.get(variant.lang or "", self)

    @property
    def has_text_template(self) -> bool:
        return self._text is not None

    def _load(self, get: Any) -> jinja2.Template:
        try:
            template: jinja2.Template = get()
        except (jinja2.TemplateError, RecursionError, MemoryError) as exc:  # nesting too deep to compile
            raise self._error(exc, None) from None
        # Jinja keeps a template's globals as a ChainMap over the environment's and copies
        # it into every render's context key by key; nothing changes them after loading,
        # so one plain dict serves every recipient and is copied at C speed.
        template.globals = dict(template.globals)
        return template

    def _error(self, exc: BaseException, recipient: Recipient | None) -> TemplateError:
        path, line = template_location(exc, self._templates)
        if path is not None and path.name == ANNOUNCEMENT:
            path = self.campaign.path
        elif path is None and isinstance(exc, jinja2.TemplateNotFound):
            path = self._templates
        who = f"{recipient.email}, recipients line {recipient.line}" if recipient else None
        code, reason = self.explain(exc, recipient.fields if recipient is not None else None)
        return TemplateError(reason, path=path, line=line, recipient=who, code=code)

    def explain(self, exc: BaseException, fields: Mapping[str, str] | None) -> tuple[str, str]:
        """(finding code, reason) for an error rendering `fields`, in the user's words."""
        return describe(exc, fields=fields, front_matter=self._campaign_context, list_name=self.list_name)

    def context(self, recipient: Mapping[str, str], unsubscribe_url: str | None) -> dict[str, Any]:
        return {
            "campaign": self._campaign_context,
            "recipient": recipient,
            "unsubscribe_url": unsubscribe_url,
        }

    def _render_html(self, fields: Mapping[str, str], unsubscribe_url: str | None) -> str:
        return self._html.render(self.context(fields, unsubscribe_url))

    def render_templates(self, recipient: Recipient) -> tuple[str, str, str | None]:
        """Subject, HTML (not inlined) and text template output; Jinja's own exceptions pass.

        The check's scan of the first rows calls this alone: every undefined field
        shows here, at a fraction of a full render's cost.
        """
        variant = self.for_fields(recipient.fields)
        if variant is not self:
            return variant.render_templates(recipient)
        return self._outputs(recipient.fields, self.links.url_for(recipient.email))

    def _outputs(self, fields: Mapping[str, str], url: str | None) -> tuple[str, str, str | None]:
        context = self.context(fields, url)
        subject = self._subject.render(context)
        html = self._html.render(context)
        return subject, html, self._text.render(context) if self._text is not None else None

    def render(self, recipient: Recipient) -> Rendered:
        """Subject, inlined HTML and text for `recipient`; a TemplateError names file and line."""
        variant = self.for_fields(recipient.fields)
        if variant is not self:
            return variant.render(recipient)
        url = self.links.url_for(recipient.email)
        try:
            subject, html, text = self._outputs(recipient.fields, url)
        except Exception as exc:  # Jinja raises arbitrary errors from template code
            raise self._error(exc, recipient) from None
        subject = " ".join(subject.split())
        if CONTROL.search(subject) or not subject:
            raise TemplateError(
                "the subject is empty or holds a control character after rendering",
                path=self.campaign.path,
                recipient=f"{recipient.email}, recipients line {recipient.line}",
            )
        try:
            html = self.inliner.inline(html, recipient.fields, url)
        except ExternalStylesheet as exc:  # name the template that links it
            path, line = find_in_templates(self._templates, exc.url)
            raise TemplateError(
                exc.reason,
                path=path or self._templates / self.campaign.html_template,
                line=line,
                recipient=f"{recipient.email}, recipients line {recipient.line}",
            ) from None
        return Rendered(subject, html, text if text is not None else html_to_text(html), url)
