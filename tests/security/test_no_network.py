"""No network while rendering: stylesheets are never fetched, images never loaded.

A real listener on 127.0.0.1 stands where the template points; each test
asserts it saw zero connections. (cssutils, which premailer uses, fetches CSS
`@import` by itself even with premailer's `allow_network=False`: the first
version of this suite caught it doing so.)
"""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

import pytest

from tests.security.conftest import Listener, cli, make_campaign

PAGE = """<!DOCTYPE html>
<html>
<head>
{head}
<style>.x {{ color: red }}</style>
</head>
<body><p class="x">Dear {{{{ recipient.name }}}}</p>{body}</body>
</html>
"""


def _campaign(tmp_path: Path, *, head: str = "", body: str = "") -> Path:
    return make_campaign(tmp_path / "c", html=PAGE.format(head=head, body=body))


@pytest.mark.parametrize(
    "head",
    [
        '<link rel="stylesheet" href="{url}/site.css">',
        "<LINK REL=StyleSheet HREF={url}/site.css>",
        '<link rel="alternate stylesheet" href="{url}/site.css" media="screen">',
        '<link rel="&#115;tylesheet" href="{url}/site.css">',
        "<style>@import url({url}/site.css);</style>",
        '<style>@import "{url}/site.css" screen;</style>',
        "<style>/* comment */ @IMPORT url('{url}/site.css');</style>",
        "<style>@\\69mport url({url}/site.css);</style>",
        '<style media="print">@import url({url}/site.css);</style>',
    ],
)
def test_an_external_stylesheet_is_an_error_and_is_never_fetched(
    tmp_path: Path, listener: Listener, head: str
) -> None:
    folder = _campaign(tmp_path, head=head.format(url=listener.url))

    result = cli(folder, "check")

    assert result.exit_code == 2, result.output
    assert "external stylesheet" in result.output
    assert f"{listener.url}/site.css" in result.output
    assert "never fetched from the network" in result.output
    assert "announcement.html:4:" in result.output  # the template line that links it
    send = cli(folder, "send", "--yes")
    assert send.exit_code == 2
    assert not (folder / "outbox").exists()
    assert listener.requests == []


def test_a_stylesheet_url_from_front_matter_is_refused_too(tmp_path: Path, listener: Listener) -> None:
    folder = make_campaign(
        tmp_path / "c",
        extra=f'css = "{listener.url}/site.css"',
        html='<html><head><link rel="stylesheet" href="{{ campaign.css }}"></head><body>hi</body></html>',
    )

    result = cli(folder, "check")

    assert result.exit_code == 2
    assert "external stylesheet" in result.output
    assert listener.requests == []


def test_images_and_css_urls_are_kept_but_never_loaded(tmp_path: Path, listener: Listener) -> None:
    head = f"<style>.hero {{ background: url({listener.url}/bg.png) }}</style>"
    body = (
        f'<img src="{listener.url}/pixel.png" alt="logo">'
        f'<div class="hero">x</div><img srcset="{listener.url}/a.png 2x" src="{listener.url}/b.png" alt="">'
    )
    folder = _campaign(tmp_path, head=head, body=body)

    checked = cli(folder, "check")
    sent = cli(folder, "send", "--yes")
    previewed = cli(folder, "preview")

    assert checked.exit_code == 0, checked.output
    assert sent.exit_code == 0, sent.output
    assert previewed.exit_code == 0, previewed.output
    eml = next((folder / "outbox").glob("ann@example.org*.eml")).read_bytes()
    message = message_from_bytes(eml, policy=policy.default)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert f'src="{listener.url}/pixel.png"' in html
    assert f"url({listener.url}/bg.png)" in html
    assert listener.requests == []


def test_at_import_written_as_text_in_the_body_is_just_text(tmp_path: Path, listener: Listener) -> None:
    folder = make_campaign(tmp_path / "c", body=f"Write `@import url({listener.url}/x.css);` in your CSS.")

    result = cli(folder, "send", "--yes")

    assert result.exit_code == 0, result.output
    assert listener.requests == []
