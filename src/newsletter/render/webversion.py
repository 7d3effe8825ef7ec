"""The web version: a standalone `index.html` of the announcement to publish as "view in browser".

It is rendered for nobody in particular: every recipient field is empty (the
templates' own fallbacks apply, e.g. "Dear colleague"), and there is no
unsubscribe link, because a public page must not carry anyone's address or
token. The page's own "view in browser" link is blanked, since it would point
at itself. Local images are copied beside it at the same relative paths.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

from newsletter.inputs.campaign import Campaign
from newsletter.inputs.folder import PrivateFiles
from newsletter.inputs.recipients import Recipient
from newsletter.inputs.safefiles import OutputDir
from newsletter.message.images import InlineImages
from newsletter.render.renderer import Rendered, Renderer

INDEX = "index.html"
URL_FIELD = "web_version_url"


class _Nobody(dict[str, str]):
    """Recipient fields of no one: any field a template asks for is empty, never undefined."""

    def __missing__(self, key: str) -> str:
        return ""


def render_web_version(campaign: Campaign, *, private: PrivateFiles | None = None) -> Rendered:
    """The announcement as the public sees it; TemplateError like any render."""
    public = replace(campaign, fields={**campaign.fields, URL_FIELD: ""})
    return Renderer(public, private=private).render(Recipient(line=0, email="", fields=_Nobody()))


def write_web_version(
    campaign: Campaign,
    out: Path | OutputDir,
    *,
    images: InlineImages | None = None,
    private: PrivateFiles | None = None,
) -> Path:
    """Write `out/index.html` (and the images it uses), never through a link; return its path.

    A `Path` is opened as a strict output folder: no link in it or at it.
    """
    rendered = render_web_version(campaign, private=private)
    with contextlib.ExitStack() as stack:
        folder = out if isinstance(out, OutputDir) else stack.enter_context(OutputDir(out))
        if images is not None:
            images.copy_beside(rendered.html, folder)
        return folder.write(INDEX, rendered.html.encode("utf-8"))
