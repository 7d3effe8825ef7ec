"""The preview page in a real browser: Debian's Chromium, driven by Playwright, headless.

In CI (`CI` set) a missing browser fails the run instead of skipping it: these
tests are the only proof that the page works.
"""

from __future__ import annotations

import http.server
import os
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, FrameLocator, Page, Playwright, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from newsletter import project as api
from newsletter.inputs.folder import CampaignFolder
from newsletter.web.preview import LiveCampaign, PreviewServer, Source, running
from tests.conftest import ROOT, break_template, write_env

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
# As root, without a network: no sandbox, and nothing that phones home at startup.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = ROOT / "docs" / "preview.png"
# Live reload polls every 0.8 s; a loaded CI machine gets some slack on top.
expect.set_options(timeout=10_000)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: CI must run the browser tests (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def server(campaign: Path) -> Iterator[PreviewServer]:
    source = Source(CampaignFolder(campaign), load=lambda: api.load_project(campaign, environ={}))
    with running(LiveCampaign(source)) as preview:
        yield preview


@pytest.fixture
def page(browser: Browser, server: PreviewServer) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(server.url)
    expect(frame(page).locator(".greeting")).to_be_visible()
    yield page
    context.close()


def frame(page: Page) -> FrameLocator:
    return page.frame_locator("#frame")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_page_loads_with_the_first_recipient(page: Page) -> None:
    expect(page.locator("#subject")).to_have_text("New book: Development of the Institute of Digital Customs")
    expect(page.locator("#from-name")).to_have_text("Sergei Mozer")
    expect(page.locator("#from-address")).to_have_text("<sergei.mozer@example.org>")
    expect(page.locator("#h-to")).to_have_text("Анна Петрова <anna.petrova@academy.example.org>")
    expect(page.locator("#h-reply-to")).to_have_text("sergei.mozer@example.org")
    expect(page.locator("#h-list-unsubscribe")).to_have_text("missing")
    expect(page.locator("#recipients li")).to_have_count(12)
    expect(page.locator("#position")).to_have_text("1 of 12")
    expect(frame(page).locator(".greeting")).to_have_text("Dear Анна Петрова,")
    expect(page.locator("#check-counts")).to_have_text("2 warnings")
    expect(page.locator("#check-list li")).to_have_count(2)
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#live")).to_have_attribute("data-state", "ok")


def test_picking_another_recipient_changes_the_greeting(page: Page) -> None:
    page.locator("#search").fill("müller")
    expect(page.locator("#recipients li")).to_have_count(1)
    page.locator("#recipients li").first.click()
    expect(frame(page).locator(".greeting")).to_have_text("Dear Jürgen Müller,")
    expect(page.locator("#h-to")).to_have_text("Jürgen Müller <juergen.mueller@zoll.example.com>")
    expect(page).to_have_url(f"{page.url.split('?')[0]}?email=juergen.mueller%40zoll.example.com")
    page.locator("#search").fill("")
    expect(page.locator("#recipients li")).to_have_count(12)
    page.locator("#next").click()
    expect(frame(page).locator(".greeting")).to_have_text("Здравствуйте, Ольга Смирнова!")  # her variant: ru
    expect(page.locator("#position")).to_have_text("6 of 12")
    page.locator("#next").click()
    expect(frame(page).locator(".greeting")).to_have_text("Dear colleague,")  # no name in the list
    page.locator("#prev").click()
    expect(frame(page).locator(".greeting")).to_have_text("Здравствуйте, Ольга Смирнова!")  # her variant: ru
    expect(page.locator('#recipients li[aria-selected="true"]')).to_contain_text("olga.smirnova@research.example.org")


def test_search_by_address_and_pick_with_the_keyboard(page: Page) -> None:
    page.locator("#search").fill("novak@vse")
    expect(page.locator("#recipients li")).to_have_count(1)
    page.locator("#search").press("Enter")
    expect(frame(page).locator(".greeting")).to_have_text("Dear Pavel Novák,")


def test_phone_toggle_changes_the_iframe_width(page: Page) -> None:
    iframe = page.locator("#frame")

    def width() -> float:
        box = iframe.bounding_box()
        assert box is not None
        return box["width"]

    assert 600 <= width() <= 800
    page.get_by_role("button", name="Phone").click()
    expect(page.locator("#width-phone")).to_have_attribute("aria-pressed", "true")
    page.wait_for_function("document.getElementById('frame').getBoundingClientRect().width === 375")
    assert width() == 375
    page.get_by_role("button", name="Desktop").click()
    page.wait_for_function("document.getElementById('frame').getBoundingClientRect().width === 720")


def test_text_tab_shows_the_text_part_and_source_tab_the_message(page: Page) -> None:
    page.get_by_role("tab", name="Plain text").click()
    text = page.locator("#pane-text")
    expect(text).to_be_visible()
    expect(page.locator("#frame")).to_be_hidden()
    expect(text).to_contain_text("Dear Анна Петрова,")
    expect(text).to_contain_text("NEW PUBLICATION")
    assert "<" not in text.inner_text().split("Download the book")[0]  # plain text, not markup
    page.get_by_role("tab", name="Source").click()
    source = page.locator("#pane-source")
    expect(source).to_be_visible()
    expect(source).to_contain_text("Content-Type: multipart/alternative")
    expect(source).to_contain_text("Message-ID: <")
    page.get_by_role("tab", name="HTML").click()
    expect(page.locator("#frame")).to_be_visible()


def test_download_link_gives_the_eml(page: Page) -> None:
    with page.expect_download() as download_info:
        page.locator("#download").click()
    download = download_info.value
    assert download.suggested_filename == "anna.petrova@academy.example.org.eml"
    data = Path(download.path()).read_bytes()
    assert b"Content-Type: multipart/alternative" in data
    assert page.locator("#pane-source").text_content() == data.decode("utf-8")


@pytest.mark.parametrize("changed", ["template", "css", "announcement", "csv", "env"])
def test_editing_a_file_updates_the_page_without_reload(page: Page, campaign: Path, changed: str) -> None:
    page.evaluate("window.__notReloaded = true")
    if changed == "template":
        edit(campaign / "templates" / "announcement.html", "Dear {{", "Hello {{")
        expect(frame(page).locator(".greeting")).to_have_text("Hello Анна Петрова,")
    elif changed == "css":
        edit(campaign / "templates" / "style.css", ".greeting {\n", ".greeting {\n  color: #aa0011;\n")
        expect(frame(page).locator(".greeting")).to_have_css("color", "rgb(170, 0, 17)")
    elif changed == "announcement":
        edit(campaign / "announcement.md", 'subject = "New book:', 'subject = "Just out:')
        expect(page.locator("#subject")).to_have_text("Just out: Development of the Institute of Digital Customs")
    elif changed == "csv":
        with (campaign / "recipients.csv").open("a", encoding="utf-8") as stream:
            stream.write("new.reader@example.org,New Reader,Example Library\n")
        expect(page.locator("#recipients li")).to_have_count(13)
        page.locator("#recipients li").last.click()
        expect(frame(page).locator(".greeting")).to_have_text("Dear New Reader,")
    else:
        write_env(campaign, {"NEWSLETTER_UNSUBSCRIBE_MAILTO": "unsubscribe@example.org"})
        expect(page.locator("#h-list-unsubscribe")).to_have_text("<mailto:unsubscribe@example.org?subject=unsubscribe>")
        expect(page.locator("#check-list li[data-code='unsubscribe-header']")).to_have_count(0)
    expect(page.locator("#live-text")).to_contain_text("updated")
    assert page.evaluate("window.__notReloaded") is True


def test_broken_template_shows_file_and_line_then_recovers(page: Page, campaign: Path) -> None:
    template = campaign / "templates" / "announcement.html"
    good = break_template(campaign, 10)
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(page.locator("#error-title")).to_have_text("Template error")
    expect(page.locator("#error-where")).to_have_text("templates/announcement.html, line 10")
    expect(page.locator("#error-message")).to_contain_text("syntax error")
    expect(page.locator("#stale")).to_be_visible()  # the last good render stays, marked as such
    expect(page.locator("#check-counts")).to_contain_text("1 error")
    # The picker still works and the server still answers while the template is broken.
    page.locator("#next").click()
    expect(page.locator("#position")).to_have_text("2 of 12")
    template.write_text(good, encoding="utf-8")
    expect(error).to_be_hidden()
    expect(frame(page).locator(".greeting")).to_have_text("Dear Дмитрий Соколов,")
    expect(page.locator("#stale")).to_be_hidden()


def test_missing_field_names_the_recipient(page: Page, campaign: Path) -> None:
    edit(campaign / "templates" / "announcement.html", 'recipient.name or "colleague"', "recipient.nickname")
    expect(page.locator("#error-where")).to_have_text(
        "templates/announcement.html, line 3 — rendering for anna.petrova@academy.example.org, recipients line 2"
    )
    expect(page.locator("#error-message")).to_contain_text("nickname")
    # the four Russian readers use announcement.ru.html, which still reads recipient.name
    expect(page.locator('#check-list li[data-code="missing-field"]')).to_contain_text("8 recipients affected")


def test_scripts_in_the_email_never_run(page: Page, campaign: Path) -> None:
    block = "{% block content %}"
    payload = (
        '<script>document.body.setAttribute("data-ran", "script")</script>'
        '<img src="data:," alt="" onerror="document.body.setAttribute(\'data-ran\', \'handler\')">'
    )
    edit(campaign / "templates" / "announcement.html", block, block + payload)
    expect(frame(page).locator(".greeting")).to_be_visible()
    page.wait_for_timeout(300)
    expect(frame(page).locator("body")).not_to_have_attribute("data-ran", "script")
    expect(frame(page).locator("body")).not_to_have_attribute("data-ran", "handler")
    assert page.evaluate("document.title").endswith("newsletter preview")


def test_screenshot_for_the_readme(browser: Browser, campaign: Path, tmp_path: Path) -> None:
    """The README's picture of the page on the example campaign, set up as its .env.example suggests.

    Written to docs/preview.png when that file is missing or NEWSLETTER_SCREENSHOT=1
    (the Date header changes every run; the picture need not).
    """
    write_env(
        campaign,
        {
            "NEWSLETTER_UNSUBSCRIBE_URL": "https://example.org/unsubscribe?address={email}&token={token}",
            "NEWSLETTER_SECRET": "example-secret-for-the-screenshot",
        },
    )
    source = Source(CampaignFolder(campaign), load=lambda: api.load_project(campaign, environ={}))
    with running(LiveCampaign(source)) as server:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        page = context.new_page()
        page.goto(server.url_for("juergen.mueller@zoll.example.com"))
        expect(frame(page).locator(".greeting")).to_have_text("Dear Jürgen Müller,")
        expect(page.locator("#check-counts")).to_have_text("All clear")
        page.wait_for_timeout(300)  # let the iframe paint its fonts
        target = tmp_path / "preview.png"
        page.screenshot(path=str(target), full_page=True)
        context.close()
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 900)
    if not SCREENSHOT.exists() or os.environ.get("NEWSLETTER_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        SCREENSHOT.write_bytes(data)


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A web server on 127.0.0.1 standing in for the sender's image host: it notes every request."""

    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        body = {"/font.woff2": b"wOF2", "/clip.mp4": b""}.get(self.path, _PIXEL)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


_PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


@pytest.fixture
def image_host() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    host = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=host.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{host.server_address[1]}", seen
    finally:
        host.shutdown()
        host.server_close()
        thread.join(timeout=5)


def test_remote_content_is_loaded_only_after_the_toggle(
    page: Page, campaign: Path, image_host: tuple[str, list[str]]
) -> None:
    base, seen = image_host
    remote = (
        f'<img class="remote" src="{base}/pixel.png" alt="" width="1" height="1">'
        f'<div style="background-image:url({base}/background.png);width:10px;height:10px"></div>'
        f'<link rel="prefetch" href="{base}/prefetch.png">'
        f'<video src="{base}/clip.mp4" autoplay muted></video>'
        f"<style>@font-face {{ font-family: Remote; src: url({base}/font.woff2); }}"
        " .remote-font { font-family: Remote; }</style>"
        '<p class="remote-font">text in a remote font</p>'
    )
    edit(campaign / "templates" / "announcement.html", "{% block content %}", "{% block content %}" + remote)
    expect(frame(page).locator("img.remote")).to_be_attached()
    page.wait_for_timeout(1500)
    assert seen == []  # by default nothing at all reaches the image host
    expect(page.locator("#remote")).to_have_attribute("aria-pressed", "false")
    page.locator("#remote").click()
    expect(page.locator("#remote")).to_have_attribute("aria-pressed", "true")
    deadline = time.monotonic() + 10
    while not {"/pixel.png", "/background.png"} <= set(seen) and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert {"/pixel.png", "/background.png"} <= set(seen), seen
    assert "remote=1" in (page.locator("#frame").get_attribute("src") or "")


def test_a_campaign_that_cannot_load_says_so_everywhere(page: Page, campaign: Path) -> None:
    csv_file = campaign / "recipients.csv"
    rows = csv_file.read_text(encoding="utf-8")
    csv_file.unlink()
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error-where")).to_have_text("recipients.csv")
    expect(page.locator("#error-note")).to_contain_text("recipients.example.csv")
    expect(page.locator("#check-counts")).to_have_text("Not checked")  # never "All clear" beside an error
    expect(page.locator("#check-counts")).not_to_contain_text("All clear")
    expect(page.locator("#recipients-note")).to_have_text(
        "The recipient list could not be read: see the error on the right."
    )
    download = page.locator("#download")
    expect(download).to_have_attribute("aria-disabled", "true")
    assert download.get_attribute("href") is None and download.get_attribute("download") is None
    with pytest.raises(PlaywrightTimeoutError), page.expect_download(timeout=1500):
        download.click()
    csv_file.write_text(rows, encoding="utf-8")
    expect(page.locator("#error")).to_be_hidden()
    expect(download).not_to_have_attribute("aria-disabled", "true")
    with page.expect_download() as download_info:
        download.click()
    assert download_info.value.suggested_filename == "anna.petrova@academy.example.org.eml"
