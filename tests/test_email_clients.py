"""The example email as mail clients and spam filters meet it: SpamAssassin, dark mode, Outlook.

SpamAssassin is Debian's (`apt-get install spamassassin`), run with local tests
only (`-L`: no DNS, no network). In CI (`CI` set) a missing SpamAssassin or
Chromium fails the run instead of skipping it.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, invoke, write_env

SPAMASSASSIN = shutil.which("spamassassin")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
DARK_SCREENSHOT = ROOT / "docs" / "email-dark.png"
UNSUBSCRIBE = {
    "NEWSLETTER_UNSUBSCRIBE_URL": "https://example.org/unsubscribe?address={email}&token={token}",  # as README
    "NEWSLETTER_SECRET": "example-secret-for-the-tests",
}
# " 0.7 HTML_FONT_LOW_CONTRAST BODY: ..." in the report `spamassassin -t` appends
_RULE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s", re.M)


def _require(tool: str, present: bool) -> None:
    if present:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{tool} is missing: CI must run this test")
    pytest.skip(f"{tool} is not installed")


def _sent_message(campaign: Path) -> bytes:
    write_env(campaign, UNSUBSCRIBE)
    result = invoke("--campaign", str(campaign), "send")
    assert result.exit_code == 0, result.output
    return (campaign / "outbox" / "anna.petrova@academy.example.org.eml").read_bytes()


def spam_rules(message: bytes, home: Path) -> tuple[float, dict[str, float]]:
    """SpamAssassin's score and the rules that hit, local tests only."""
    assert SPAMASSASSIN is not None
    done = subprocess.run(
        [SPAMASSASSIN, "-L", "-t", "-p", str(home / "user_prefs")],  # empty user prefs: the defaults
        input=message,
        capture_output=True,
        timeout=300,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
    )
    report = done.stdout.decode("utf-8", "replace")
    score = re.search(r"^X-Spam-Status: \w+, score=(-?[\d.]+)", report, re.M)
    assert score is not None, report + done.stderr.decode("utf-8", "replace")
    table = report.split("Content analysis details:", 1)[-1]
    return float(score.group(1)), {name: float(points) for points, name in _RULE.findall(table)}


def test_spamassassin_finds_nothing_in_our_html(campaign: Path, tmp_path: Path) -> None:
    _require("spamassassin", SPAMASSASSIN is not None)
    home = tmp_path / "sa"
    home.mkdir()
    (home / "user_prefs").write_text("", encoding="utf-8")
    score, rules = spam_rules(_sent_message(campaign), home)
    ours = {name: points for name, points in rules.items() if name.startswith(("HTML_", "MIME_")) and points > 0}
    assert ours == {}, rules
    assert score <= 0, rules


def test_spamassassin_scores_the_old_transparent_preheader(campaign: Path, tmp_path: Path) -> None:
    """The test can fail: the preheader coloured transparent, as it was, is scored."""
    _require("spamassassin", SPAMASSASSIN is not None)
    style = campaign / "templates" / "style.css"
    css = style.read_text(encoding="utf-8")
    transparent = css.replace("  mso-hide: all;\n}", "  mso-hide: all;\n  color: transparent;\n}", 1)
    style.write_text(transparent, encoding="utf-8")
    home = tmp_path / "sa"
    home.mkdir()
    (home / "user_prefs").write_text("", encoding="utf-8")
    _, rules = spam_rules(_sent_message(campaign), home)
    assert rules.get("HTML_FONT_LOW_CONTRAST", 0) > 0, rules


# -- dark mode and Outlook, in Chromium -----------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    _require(str(CHROMIUM), CHROMIUM.exists())
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _example_html(campaign: Path) -> str:
    write_env(campaign, UNSUBSCRIBE)
    result = invoke("--campaign", str(campaign), "preview", "--recipient", "anna.petrova@academy.example.org")
    assert result.exit_code == 0, result.output
    return (campaign / "preview" / "anna.petrova@academy.example.org.html").read_text(encoding="utf-8")


@pytest.mark.browser
def test_dark_mode_darkens_the_example_and_keeps_the_button_readable(
    chromium: object, campaign: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import Browser

    assert isinstance(chromium, Browser)
    html = _example_html(campaign)
    colours = {}
    for scheme in ("light", "dark"):
        page = chromium.new_page(viewport={"width": 720, "height": 1100}, device_scale_factor=1)
        page.emulate_media(color_scheme=scheme)
        page.set_content(html)
        colours[scheme] = page.evaluate(
            """() => Object.fromEntries(['.content', 'body', 'a.button', '.button-cell', 'h1', '.content p']
                 .map(s => [s, [getComputedStyle(document.querySelector(s)).backgroundColor,
                                getComputedStyle(document.querySelector(s)).color]]))"""
        )
        if scheme == "dark":
            target = tmp_path / "email-dark.png"
            page.screenshot(path=str(target), full_page=True)
        page.close()
    light, dark = colours["light"], colours["dark"]
    assert light[".content"][0] == "rgb(255, 255, 255)"
    assert dark[".content"][0] == "rgb(28, 32, 38)"
    assert dark["body"][0] == "rgb(18, 20, 23)"
    assert dark[".content p"][1] == "rgb(228, 231, 235)" and dark["h1"][1] == "rgb(214, 228, 245)"
    assert dark["a.button"][1] == "rgb(255, 255, 255)" and dark[".button-cell"][0] == "rgb(47, 119, 198)"
    data = target.read_bytes()
    width, height = struct.unpack(">II", data[16:24])
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and width == 720 and height > 1100  # the whole message
    if not DARK_SCREENSHOT.exists() or os.environ.get("NEWSLETTER_SCREENSHOT") == "1":
        DARK_SCREENSHOT.write_bytes(data)


def test_outlook_gets_a_vml_button_and_the_others_a_padded_cell(campaign: Path) -> None:
    html = _example_html(campaign)
    button = r"<!--\[if mso\]>\s*<v:roundrect\b[^>]*href=\"([^\"]+)\".*?</v:roundrect>\s*<!\[endif\]-->"
    vml = re.search(button, html, re.S)
    assert vml is not None and vml.group(1) == "https://example.org/books/digital-customs-2021.pdf"
    assert 'xmlns:v="urn:schemas-microsoft-com:vml"' in html.split("<head>", 1)[0]
    cell = re.search(r'<td class="button-cell"[^>]*style=(["\'])(.*?)\1', html)
    link = re.search(r'<a class="button"[^>]*style="([^"]*)"', html)
    assert cell is not None and "padding:14px 32px" in cell.group(2)
    assert link is not None and "padding" not in link.group(1)


def test_check_warns_about_hiding_and_buttons_that_clients_punish(campaign: Path) -> None:
    write_env(campaign, UNSUBSCRIBE)
    template = campaign / "templates" / "announcement.html"
    text = template.read_text(encoding="utf-8")
    text = re.sub(r"<!--\[if mso\]>\s*<v:roundrect.*?<!\[endif\]-->", "", text, flags=re.S)
    text = text.replace(
        '<a class="button"', '<span style="display:none">hidden</span><a style="padding:14px 32px; background:#1a5fa8"'
    )
    text = text.replace("{%- endif %}\n", '{%- endif %}\n<p style="color:transparent">x</p>\n', 1)
    template.write_text(text, encoding="utf-8")
    result = invoke("--campaign", str(campaign), "check")
    assert result.exit_code == 0, result.output  # warnings, not errors
    assert "warning: templates/announcement.html:" in result.output
    for words in (
        "text coloured transparent: spam filters score it as hidden text",
        "display:none without mso-hide:all: Outlook for Windows shows that element anyway",
        'the button "Download the book (PDF)" has its padding on the link, which Outlook for Windows ignores',
    ):
        assert words in result.output, result.output


def test_the_example_itself_gets_none_of_those_warnings(campaign: Path) -> None:
    write_env(campaign, UNSUBSCRIBE)
    result = invoke("--campaign", str(campaign), "check")
    assert result.exit_code == 0, result.output
    assert "All checks passed." in result.output and "warning" not in result.output
