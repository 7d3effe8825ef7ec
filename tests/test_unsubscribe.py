"""Unsubscribing: signed links, the one-click server, unsubscribed.csv, and suppression on later sends."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from newsletter import project as api
from newsletter.delivery.suppression import add_unsubscribed, is_dead_address, read_unsubscribed
from newsletter.errors import ConfigError
from newsletter.inputs.folder import UNSUBSCRIBED
from newsletter.inputs.settings import Secret
from newsletter.message.unsubscribe import UnsubscribeLinks, make_token, verify_token
from newsletter.web.unsubscribe import UnsubscribeApp, make_unsubscribe_server
from tests.conftest import invoke, write_env
from tests.smtpd import Server

SECRET = "test-secret-0123456789abcdef"
URL = "https://news.example.org/unsubscribe?email={email}&token={token}"
SETTINGS = {
    "NEWSLETTER_UNSUBSCRIBE_URL": URL,
    "NEWSLETTER_SECRET": SECRET,
    "NEWSLETTER_UNSUBSCRIBE_MAILTO": "unsubscribe@example.org",
}
ANNA = "anna.petrova@academy.example.org"
LIST_ID = "research-announcements.example.org"


def links(url: str = URL) -> UnsubscribeLinks:
    return UnsubscribeLinks(url=url, secret=Secret(SECRET), list_id=LIST_ID)


# -- tokens and links ---------------------------------------------------------------


def test_a_token_verifies_for_its_address_and_list_only() -> None:
    secret = Secret(SECRET)
    token = make_token(secret, LIST_ID, ANNA)
    assert verify_token(secret, LIST_ID, ANNA, token)
    assert verify_token(secret, LIST_ID, ANNA.upper(), token)  # addresses compare case-insensitively
    assert not verify_token(secret, LIST_ID, "bob@example.org", token)  # forged for someone else
    assert not verify_token(secret, "other.example.org", ANNA, token)
    assert not verify_token(Secret("another secret, same length!"), LIST_ID, ANNA, token)
    assert not verify_token(secret, LIST_ID, ANNA, token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not verify_token(secret, LIST_ID, ANNA, "é" * 24)  # non-ASCII input is refused, not an error


@pytest.mark.parametrize("email", [ANNA, "Anna.Petrova@Academy.example.org", "o'brien+x@example.org", "Анна@пример.рф"])
def test_links_sent_by_earlier_versions_still_verify(email: str) -> None:
    # Earlier versions signed the case-folded address; for these addresses that is the same text.
    digest = hmac.new(SECRET.encode(), f"{LIST_ID}\n{email.casefold()}".encode(), hashlib.sha256).digest()
    earlier = base64.urlsafe_b64encode(digest[:18]).decode()
    assert verify_token(Secret(SECRET), LIST_ID, email, earlier)


@pytest.mark.parametrize(
    "url",
    [URL, "https://news.example.org/u/{email}/{token}", "https://x.example/p?list=a&t={token}&e={email}"],
)
@pytest.mark.parametrize("email", [ANNA, "o'brien+books@example.org", "ユーザー@例え.jp"])
def test_a_link_parses_back_to_its_address_and_token(url: str, email: str) -> None:
    made = links(url).url_for(email)
    assert made is not None
    parts = urlsplit(made)
    token = make_token(Secret(SECRET), LIST_ID, email)
    assert links(url).parse(parts.path, parts.query) == (email, token)  # both as the request line has them


@pytest.mark.parametrize("email", [ANNA, "ユーザー@例え.jp", "a+b%c@example.org", "#x?y&z=1@example.org"])
def test_under_a_wsgi_server_that_passes_only_the_decoded_path_links_still_work(tmp_path: Path, email: str) -> None:
    app = UnsubscribeApp(links("https://x.example/u/{email}/{token}"), tmp_path / UNSUBSCRIBED)
    made = app.links.url_for(email)
    assert made is not None
    # PEP 3333: PATH_INFO is the decoded path, as latin-1 text of its bytes; no REQUEST_URI or RAW_URI.
    path_info = unquote(urlsplit(made).path).encode("utf-8").decode("latin-1")
    status, page = app.respond({"REQUEST_METHOD": "GET", "PATH_INFO": path_info, "QUERY_STRING": ""})
    assert status == "200 OK"
    assert f"<strong>{html.escape(email)}</strong>" in page.decode()


def test_requests_that_are_not_our_links_parse_to_nothing() -> None:
    assert links().parse("/unsubscribe", "email=a%40example.org") is None  # no token
    assert links().parse("/other", "email=a%40example.org&token=" + "A" * 24) is None
    assert links().parse("/unsubscribe", "email=a%40example.org&token=short") is None


def test_header_has_the_https_link_and_the_mailto_and_allows_one_click() -> None:
    value, one_click = UnsubscribeLinks(
        url="https://x.example/u?e={email}&t={token},x",
        mailto="off@example.org",
        secret=Secret(SECRET),
        list_id=LIST_ID,
    ).header_for("a@example.org")
    assert value is not None
    assert value.startswith("<https://x.example/u?e=a@example.org&t=")
    assert "%2Cx>" in value  # a comma would split the RFC 2369 list
    assert value.endswith(", <mailto:off@example.org?subject=unsubscribe>")
    assert one_click
    assert not UnsubscribeLinks(url="http://x.example/u?e={email}").header_for("a@example.org")[1]
    assert not UnsubscribeLinks(url="https://x.example/preferences").header_for("a@example.org")[1]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": "https://x.example/u?e={email}&t={token}"}, "set NEWSLETTER_SECRET"),
        ({"url": "https://x.example/u?e={email} x"}, "cannot hold spaces"),
        ({"url": "https://x.example/u?e=<{email}>"}, "cannot hold spaces"),
        ({"mailto": "not an address"}, "NEWSLETTER_UNSUBSCRIBE_MAILTO"),
    ],
)
def test_unusable_unsubscribe_settings_are_refused(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        UnsubscribeLinks(**settings)  # type: ignore[arg-type]


# -- unsubscribed.csv and the CLI ---------------------------------------------------


def test_the_cli_adds_addresses_once_from_arguments_and_from_a_file(campaign: Path, tmp_path: Path) -> None:
    result = invoke("--campaign", str(campaign), "unsubscribe", ANNA, "Bob@Example.org")
    assert result.exit_code == 0, result.output
    assert "2 address(es) added" in result.output
    listing = tmp_path / "bounces.csv"
    listing.write_text("email,reason\n# from the helpdesk\nbob@example.org,asked\ncarol@example.org,asked\n\n")
    result = invoke("--campaign", str(campaign), "unsubscribe", "--from-file", str(listing))
    assert result.exit_code == 0, result.output
    assert "1 address(es) added" in result.output
    assert read_unsubscribed(campaign / UNSUBSCRIBED) == {ANNA, "bob@example.org", "carol@example.org"}
    lines = (campaign / UNSUBSCRIBED).read_text().splitlines()
    assert lines[0] == "email,added,source"
    assert lines[1].startswith(f'"{ANNA}","20') and lines[1].endswith(',"cli"')  # rows are quoted


def test_a_bad_address_in_a_file_names_its_line_and_adds_nothing(campaign: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("ok@example.org\nbob@\n")
    result = invoke("--campaign", str(campaign), "unsubscribe", "--from-file", str(listing))
    assert result.exit_code == 2
    assert "list.txt:2:" in result.output
    assert "bob@" in result.output
    assert not (campaign / UNSUBSCRIBED).exists()


def test_a_header_row_in_the_middle_of_the_file_is_not_an_address(tmp_path: Path) -> None:
    path = tmp_path / UNSUBSCRIBED
    add_unsubscribed(path, ["a@example.org"])
    with path.open("a", encoding="utf-8") as stream:  # two files concatenated by hand
        stream.write("email,added,source\nb@example.org,2024-01-01T00:00:00Z,import\n")
    assert read_unsubscribed(path) == {"a@example.org", "b@example.org"}
    assert add_unsubscribed(path, ["B@example.org", "c@example.org"]) == ["c@example.org"]


# -- suppression on later sends -------------------------------------------------------


def _new_campaign_id(folder: Path, new_id: str) -> None:
    path = folder / "announcement.md"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('id = "digital-customs-2021"', f'id = "{new_id}"'), encoding="utf-8")


def test_an_unsubscribed_address_is_skipped_on_the_next_run(campaign: Path, smtp: Server) -> None:
    write_env(campaign, smtp.env(**SETTINGS))
    assert invoke("--campaign", str(campaign), "unsubscribe", ANNA.upper()).exit_code == 0
    result = invoke("--campaign", str(campaign), "send", "--yes")
    assert result.exit_code == 0, result.output
    assert ANNA not in smtp.recorder.by_recipient()
    assert len(smtp.messages) == 11
    assert "1 suppressed (1 unsubscribed, 0 failed permanently in an earlier campaign)" in result.output
    status = invoke("--campaign", str(campaign), "status")
    assert "suppressed" in status.output
    assert "Suppressed, never sent to: 1 unsubscribed" in status.output


def test_ignore_suppression_asks_first_and_then_sends(campaign: Path, smtp: Server) -> None:
    write_env(campaign, smtp.env())
    invoke("--campaign", str(campaign), "unsubscribe", ANNA)
    refused = invoke("--campaign", str(campaign), "send", "--ignore-suppression")
    assert refused.exit_code == 2
    assert "confirmation" in refused.output
    assert smtp.messages == []
    result = invoke("--campaign", str(campaign), "send", "--ignore-suppression", "--yes")
    assert result.exit_code == 0, result.output
    assert ANNA in smtp.recorder.by_recipient()


def test_a_dead_address_is_skipped_by_later_campaigns_but_a_relay_refusal_is_not(
    campaign: Path, smtp: Server
) -> None:
    dmitry = "dmitry.sokolov@eec.example.org"
    smtp.behaviour.replies[ANNA] = ["550 5.1.1 <anna.petrova@academy.example.org>: no such user"]
    smtp.behaviour.replies[dmitry] = ["554 5.7.1 Relay access denied"]
    write_env(campaign, smtp.env())
    first = invoke("--campaign", str(campaign), "send", "--yes")
    assert first.exit_code == 1
    _new_campaign_id(campaign, "second-announcement")
    second = invoke("--campaign", str(campaign), "send", "--yes")
    assert second.exit_code == 0, second.output
    received = smtp.recorder.by_recipient()
    assert ANNA not in received  # 5.1.1: the mailbox does not exist
    assert len(received[dmitry]) == 1  # 5.7.1 said nothing about the address
    assert "1 suppressed (0 unsubscribed, 1 failed permanently in an earlier campaign)" in second.output


@pytest.mark.parametrize(
    ("code", "reply", "dead"),
    [
        (550, "5.1.1 no such user", True),
        (550, "Requested action not taken: mailbox unavailable", True),
        (553, "mailbox name not allowed", True),
        (550, "5.2.1 mailbox disabled", True),
        (554, "5.7.1 Relay access denied", False),
        (550, "5.7.1 Message rejected as spam", False),
        (552, "5.3.4 Message size exceeds fixed limit", False),
        (553, "5.1.8 sender address rejected", False),
        (554, "Transaction failed", False),
        (452, "4.2.2 mailbox full", False),
        (None, None, False),
    ],
)
def test_which_permanent_failures_mean_a_dead_address(code: int | None, reply: str | None, dead: bool) -> None:
    assert is_dead_address(code, reply) is dead


# -- the unsubscribe server ------------------------------------------------------------


@contextmanager
def serving(campaign: Path) -> Iterator[tuple[str, list[str]]]:
    """The server for `campaign` on a free loopback port; yields its base URL and who it unsubscribed."""
    project = api.load_project(campaign, environ={})
    recorded: list[str] = []
    app = UnsubscribeApp(
        project.builder.links,
        campaign / UNSUBSCRIBED,
        list_name="Research announcements",
        on_unsubscribe=recorded.append,
    )
    server = make_unsubscribe_server(app, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", recorded
    finally:
        server.shutdown()
        server.server_close()


def request(url: str, *, data: bytes | None = None, content_type: str | None = None) -> tuple[int, str]:
    headers = {"Content-Type": content_type} if content_type else {}
    try:
        prepared = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 (loopback)
        with urllib.request.urlopen(prepared, timeout=5) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def local(base: str, link: str) -> str:
    """The public https link as the reverse proxy hands it to the server on loopback."""
    parts = urlsplit(link)
    return f"{base}{parts.path}?{parts.query}"


def received_link(smtp: Server, address: str) -> str:
    header = smtp.recorder.by_recipient()[address][0].message["List-Unsubscribe"]
    return str(header).split(",")[0].strip("<> ")


def test_one_click_from_a_received_message_unsubscribes_and_the_next_campaign_skips(
    campaign: Path, smtp: Server
) -> None:
    write_env(campaign, smtp.env(**SETTINGS))
    assert invoke("--campaign", str(campaign), "send", "--yes").exit_code == 0
    link = received_link(smtp, ANNA)
    with serving(campaign) as (base, recorded):
        # What Gmail sends when the reader presses its "Unsubscribe" button (RFC 8058).
        status, page = request(
            local(base, link), data=b"List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
        )
    assert status == 200
    assert "You are unsubscribed" in page
    assert recorded == [ANNA]
    assert read_unsubscribed(campaign / UNSUBSCRIBED) == {ANNA}
    assert (campaign / UNSUBSCRIBED).read_text().splitlines()[1].endswith(',"one-click"')
    _new_campaign_id(campaign, "second-announcement")
    smtp.recorder.messages.clear()
    result = invoke("--campaign", str(campaign), "send", "--yes")
    assert result.exit_code == 0, result.output
    assert ANNA not in smtp.recorder.by_recipient()
    assert len(smtp.messages) == 11


def test_opening_the_link_only_asks_and_the_page_button_posts_one_click(campaign: Path) -> None:
    write_env(campaign, SETTINGS)
    link = links().url_for(ANNA)
    assert link is not None
    with serving(campaign) as (base, recorded):
        status, page = request(local(base, link))
        assert status == 200
        assert "Stop sending Research announcements to <strong>anna.petrova@academy.example.org</strong>?" in page
        assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in page
        assert recorded == []  # a link scanner opening the link changes nothing
        assert not (campaign / UNSUBSCRIBED).exists()
        boundary = "----form"
        body = (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
            f"One-Click\r\n--{boundary}--\r\n"
        ).encode()
        status, _ = request(local(base, link), data=body, content_type=f"multipart/form-data; boundary={boundary}")
        assert status == 200
    assert recorded == [ANNA]


def test_a_forged_or_edited_link_is_refused_and_records_nothing(campaign: Path) -> None:
    write_env(campaign, SETTINGS)
    anna_link = links().url_for(ANNA)
    assert anna_link is not None
    forged = anna_link.replace("anna.petrova", "someone.else")  # Anna's token, another address
    one_click = {"data": b"List-Unsubscribe=One-Click", "content_type": "application/x-www-form-urlencoded"}
    with serving(campaign) as (base, recorded):
        assert request(local(base, forged), **one_click)[0] == 403  # type: ignore[arg-type]
        assert request(local(base, forged))[0] == 403
        guessed = local(base, anna_link)[:-4] + "AAAA"
        assert request(guessed, **one_click)[0] == 403  # type: ignore[arg-type]
        assert request(f"{base}/unsubscribe?email={ANNA}", **one_click)[0] == 404  # type: ignore[arg-type]
        assert request(f"{base}/elsewhere")[0] == 404
        assert request(local(base, anna_link), data=b"please", content_type="text/plain")[0] == 400
    assert recorded == []
    assert not (campaign / UNSUBSCRIBED).exists()


def test_the_server_refuses_to_start_without_signed_links(campaign: Path) -> None:
    write_env(campaign, {"NEWSLETTER_UNSUBSCRIBE_URL": "https://x.example/u?e={email}"})
    result = invoke("--campaign", str(campaign), "unsubscribe-server", "--port", "0")
    assert result.exit_code == 2
    assert "needs NEWSLETTER_UNSUBSCRIBE_URL with {email} and {token}" in result.output


def test_a_malformed_row_in_unsubscribed_csv_stops_the_send_with_its_line(campaign: Path) -> None:
    (campaign / UNSUBSCRIBED).write_text("email,added,source\nok@example.org,,\nbob@,,\n", encoding="utf-8")
    result = invoke("--campaign", str(campaign), "send")
    assert result.exit_code == 2
    assert "unsubscribed.csv:3:" in result.output
    assert not (campaign / "outbox").exists()
