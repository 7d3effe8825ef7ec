"""CSS inlining with premailer, offline, behind one function.

Email clients drop or ignore `<style>` blocks, so every rule is copied onto the
elements it matches. Media queries stay in `<style>` for the clients that do
read them. premailer never touches the network here (`allow_network=False`).
"""

from __future__ import annotations

import logging

from premailer import Premailer

_QUIET = logging.getLogger("newsletter.cssutils")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def inline_css(html: str) -> str:
    """Return `html` with its `<style>` rules moved into `style=` attributes."""
    premailer = Premailer(
        html,
        allow_network=False,
        allow_loading_external_files=False,
        disable_validation=True,
        cssutils_logging_handler=logging.NullHandler(),
        cssutils_logging_level=logging.CRITICAL,
        strip_important=False,
        remove_classes=False,
    )
    result: str = premailer.transform()
    if html.lstrip().lower().startswith("<!doctype") and not result.lstrip().lower().startswith("<!doctype"):
        result = "<!DOCTYPE html>\n" + result
    return result
