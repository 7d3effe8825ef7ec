"""A readable plain-text part derived from HTML, for campaigns without a text template.

Spam filters and text-only readers expect a text/plain alternative; this keeps
paragraphs, list items and link targets, and drops everything else.
"""

from __future__ import annotations

import re
import textwrap
from html.parser import HTMLParser

_BLOCKS = {"p", "div", "table", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "blockquote", "section"}
_SKIP = {"style", "script", "head", "title"}


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._href: list[str | None] = []
        # Hidden elements (the inbox preheader) are not part of the reading text.
        self._hidden: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if self._hidden:
            if tag == self._hidden[-1]:
                self._hidden.append(tag)
            return
        if "display:none" in (attributes.get("style") or "").replace(" ", "").lower():
            self._hidden.append(tag)
            return
        if tag in _SKIP:
            self._skip += 1
        elif tag in _BLOCKS:
            self.parts.append("\n\n")
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag == "a":
            self._href.append(attributes.get("href"))

    def handle_endtag(self, tag: str) -> None:
        if self._hidden:
            if tag == self._hidden[-1]:
                self._hidden.pop()
            return
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n\n")
        elif tag == "a" and self._href:
            href = self._href.pop()
            if href and href.startswith(("http://", "https://", "mailto:")):
                self.parts.append(f" <{href.removeprefix('mailto:')}>")

    def handle_data(self, data: str) -> None:
        if not self._skip and not self._hidden:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str, *, width: int = 72) -> str:
    """Paragraphs wrapped at `width`, list items kept, link targets shown in angle brackets."""
    collector = _TextCollector()
    collector.feed(html)
    collector.close()
    text = "".join(collector.parts)
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text)]
    wrapped = []
    for paragraph in paragraphs:
        if not paragraph:
            continue
        lines = [line.strip() for line in paragraph.split("\n") if line.strip()]
        wrapped.append("\n".join(_fill(line, width) for line in lines))
    return "\n\n".join(wrapped) + "\n"


def _fill(line: str, width: int) -> str:
    indent = "  " if line.startswith("- ") else ""
    return textwrap.fill(line, width=width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)
