"""CSS inlining with premailer, offline, behind one function.

Email clients drop or ignore `<style>` blocks, so every rule is copied onto the
elements it matches. Media queries stay in `<style>` for the clients that do
read them. premailer never touches the network here (`allow_network=False`).

`allow_network=False` is not enough on its own: premailer then silently leaves
`<link rel=stylesheet>` in place (every recipient's mail client would fetch it),
and cssutils fetches `@import url(...)` by itself while parsing. So both are
refused with an error naming the URL, and CSS is parsed by a cssutils parser
whose fetcher never fetches. Images (`<img src>`, `url(...)`) are never loaded.
"""

from __future__ import annotations

import functools
import html as html_module
import logging
import re
from typing import Any

import cssutils
from premailer import Premailer

from newsletter.errors import TemplateError

_QUIET = logging.getLogger("newsletter.cssutils")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


_LINK_TAG = re.compile(r"<link\b[^>]*>", re.I)
_STYLESHEET_REL = re.compile(r"""\brel\s*=\s*["']?[^"'>]*\bstylesheet\b""", re.I)
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.I)
_STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.I | re.S)
_IMPORT = re.compile(r"@import\s*(?:url\(\s*)?[\"']?([^\"');\s]*)", re.I)


class ExternalStylesheet(TemplateError):
    """A `<link rel=stylesheet>` or `@import`: the CSS would have to come from the network."""

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(
            f"external stylesheet {url!r}: styles are never fetched from the network while "
            "rendering; put the CSS in a file in templates/ and include it inside <style>"
        )


def external_stylesheet(html: str) -> str | None:
    """The URL of a `<link rel=stylesheet>` or CSS `@import` in `html`, if there is one."""
    for match in _LINK_TAG.finditer(html):
        tag = html_module.unescape(match.group(0))  # `rel="&#115;tylesheet"` is a stylesheet too
        if _STYLESHEET_REL.search(tag):
            href = _HREF.search(tag)
            return next((g for g in href.groups() if g), "") if href else ""
    for block in _STYLE_BLOCK.finditer(html):
        found = _IMPORT.search(block.group(1))
        if found:
            return found.group(1)
    return None


_NULL_HANDLER = logging.NullHandler()


def _no_fetch(url: str) -> None:
    """The cssutils fetcher: nothing is ever loaded (None tells cssutils "not available")."""
    return None


@functools.lru_cache(maxsize=64)
def _parse_offline(css: str, validate: bool) -> Any:
    """Parse a `<style>` block without fetching; refuse `@import` however it is spelt.

    Cached like premailer's own parser cache: every recipient shares the same CSS.
    """
    sheet = cssutils.CSSParser(fetcher=_no_fetch, validate=validate).parseString(css)
    for rule in sheet.cssRules:
        if rule.type == rule.IMPORT_RULE:
            raise ExternalStylesheet(rule.href)
    return sheet


class _OfflinePremailer(Premailer):  # type: ignore[misc]  # premailer has no type hints
    def _parse_css_string(self, css_body: str, validate: bool = True) -> Any:
        return _parse_offline(css_body, validate)


def inline_css(html: str) -> str:
    """Return `html` with its `<style>` rules moved into `style=` attributes.

    Raises ExternalStylesheet (without a path: the caller knows the templates)
    for a stylesheet that would have to be fetched.
    """
    url = external_stylesheet(html)
    if url is not None:
        raise ExternalStylesheet(url)
    premailer = _OfflinePremailer(
        html,
        allow_network=False,
        allow_loading_external_files=False,
        disable_validation=True,
        cssutils_logging_handler=_NULL_HANDLER,  # one instance: cssutils keeps every handler given
        cssutils_logging_level=logging.CRITICAL,
        strip_important=False,
        remove_classes=False,
    )
    result: str = premailer.transform()
    if html.lstrip().lower().startswith("<!doctype") and not result.lstrip().lower().startswith("<!doctype"):
        result = "<!DOCTYPE html>\n" + result
    return result
