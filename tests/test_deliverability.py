"""What Gmail and Yahoo ask of bulk senders, checked on the bytes a real SMTP server received."""

from __future__ import annotations

import html
import re
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from newsletter.inputs.settings import Secret
from newsletter.message.unsubscribe import verify_token
from tests.conftest import invoke, write_env
from tests.smtpd import Server

SECRET = "deliverability-test-secret-0123456789"
SETTINGS = {
    "NEWSLETTER_UNSUBSCRIBE_URL": "https://news.example.org/unsubscribe?email={email}&token={token}",
    "NEWSLETTER_SECRET": SECRET,
    "NEWSLETTER_UNSUBSCRIBE_MAILTO": "unsubscribe@example.org",
}
LIST_ID = "research-announcements.example.org"


def header_lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def raw_header(data: bytes, name: str) -> str:
    """A header exactly as it went over the wire, folding included."""
    lines = header_lines(data)
    for index, line in enumerate(lines):
        if line.lower().startswith(name.lower().encode() + b":"):
            end = index + 1
            while end < len(lines) and lines[end][:1] in (b" ", b"\t"):
                end += 1
            return b"\r\n".join(lines[index:end]).decode("ascii")
    raise AssertionError(f"no {name} header")


def set_front_matter(folder: Path, old: str, new: str) -> None:
    path = folder / "announcement.md"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_the_example_carries_every_header_and_a_visible_unsubscribe_link(campaign: Path, smtp: Server) -> None:
    write_env(campaign, smtp.env(**SETTINGS))
    result = invoke("--campaign", str(campaign), "send", "--yes")
    assert result.exit_code == 0, result.output
    assert len(smtp.messages) == 12
    secret = Secret(SECRET)
    ids = set()
    for item in smtp.messages:
        data, message = item.data, item.message
        address = item.rcpt_tos[0]
        for line in header_lines(data):
            assert line.isascii()
            assert len(line) <= 998  # RFC 5322 2.1.1
        for name in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Reply-To"):
            assert len(message.get_all(name) or []) == 1, name
        assert re.fullmatch(r"<[^<>@\s]+@example\.org>", message["Message-ID"])
        ids.add(message["Message-ID"])
        assert parsedate_to_datetime(message["Date"]).tzinfo is not None
        assert message["List-Id"] == f"Russian Customs Academy research announcements <{LIST_ID}>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

        # The https link and the mailto, each in angle brackets, never RFC 2047-encoded:
        # no provider decodes encoded-words there, and one-click would silently break.
        wire = raw_header(data, "List-Unsubscribe")
        assert "=?" not in wire
        https, mailto = (part.strip(" <>") for part in message["List-Unsubscribe"].split(","))
        assert f"<{https}>" in wire
        assert mailto == "mailto:unsubscribe@example.org?subject=unsubscribe"
        query = parse_qs(urlsplit(https).query)
        assert urlsplit(https).netloc == "news.example.org"
        assert query["email"] == [address]
        assert verify_token(secret, LIST_ID, address, query["token"][0])

        # The same link, visible to the reader in both parts.
        html_body = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        # "Отписаться" in the Russian variant
        assert re.search(rf'<a href="{re.escape(html.escape(https))}"[^>]*>(Unsubscribe|Отписаться)</a>', html_body)
        text_body = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        # whole, never broken at a "-"
        assert re.search(rf"(Unsubscribe|Отписаться): {re.escape(https)}", " ".join(text_body.split()))
    assert len(ids) == 12


def test_a_token_from_one_message_does_not_work_for_another_address(campaign: Path, smtp: Server) -> None:
    write_env(campaign, smtp.env(**SETTINGS))
    assert invoke("--campaign", str(campaign), "send", "--yes").exit_code == 0
    first, second = smtp.messages[:2]
    link = str(first.message["List-Unsubscribe"]).split(",")[0].strip("<> ")
    token = parse_qs(urlsplit(link).query)["token"][0]
    assert verify_token(Secret(SECRET), LIST_ID, first.rcpt_tos[0], token)
    assert not verify_token(Secret(SECRET), LIST_ID, second.rcpt_tos[0], token)


def test_an_http_unsubscribe_url_gets_no_one_click_and_check_says_why(campaign: Path, smtp: Server) -> None:
    settings = {**SETTINGS, "NEWSLETTER_UNSUBSCRIBE_URL": "http://news.example.org/u?e={email}&t={token}"}
    write_env(campaign, smtp.env(**settings))
    assert invoke("--campaign", str(campaign), "send", "--yes").exit_code == 0
    message = smtp.messages[0].message
    assert message["List-Unsubscribe"].startswith("<http://news.example.org/u?e=")
    assert message["List-Unsubscribe-Post"] is None
    result = invoke("--campaign", str(campaign), "check")
    assert "NEWSLETTER_UNSUBSCRIBE_URL is not https://" in result.output


def test_list_id_defaults_to_one_under_the_senders_domain(campaign: Path, smtp: Server) -> None:
    set_front_matter(campaign, f'list_id = "{LIST_ID}"\n', "")
    write_env(campaign, smtp.env())
    assert invoke("--campaign", str(campaign), "send", "--yes").exit_code == 0
    assert smtp.messages[0].message["List-Id"] == (
        "Russian Customs Academy research announcements "
        "<russian-customs-academy-research-announc.example.org>"
    )


def test_a_malformed_list_id_stops_check(campaign: Path) -> None:
    set_front_matter(campaign, f'list_id = "{LIST_ID}"', 'list_id = "research announcements"')
    result = invoke("--campaign", str(campaign), "check")
    assert result.exit_code == 2
    assert "announcement.md: 'list_id': 'research announcements' is not a list id" in result.output


# -- what check says -----------------------------------------------------------------


def test_check_passes_the_configured_example_without_a_warning(campaign: Path) -> None:
    write_env(campaign, SETTINGS)
    result = invoke("--campaign", str(campaign), "check")
    assert result.exit_code == 0, result.output
    assert "All checks passed." in result.output
    assert "warning" not in result.output
    # the Russian variant is the largest: Cyrillic takes several bytes a letter once quoted-printable
    assert re.search(r"largest message\s+[1-4]\d\.\d KiB", result.output)


def test_check_warns_about_a_120_kb_html_body_gmail_would_clip(campaign: Path) -> None:
    write_env(campaign, SETTINGS)
    paragraph = "The book traces the World Customs Organization's work on digital customs. "
    path = campaign / "announcement.md"
    path.write_text(path.read_text(encoding="utf-8") + "\n" + paragraph * 1600 + "\n", encoding="utf-8")
    result = invoke("--campaign", str(campaign), "check")
    assert result.exit_code == 0, result.output
    match = re.search(r"warning: the HTML is (\d+\.\d) KiB: Gmail clips messages over 102 KiB", result.output)
    assert match is not None, result.output
    assert 118 < float(match.group(1)) < 140


def test_check_warns_about_forgeable_links_and_a_short_secret(campaign: Path) -> None:
    write_env(
        campaign,
        {"NEWSLETTER_UNSUBSCRIBE_URL": "https://news.example.org/u?e={email}", "NEWSLETTER_SECRET": "short"},
    )
    result = invoke("--campaign", str(campaign), "check")
    assert "has {email} but no {token}: anyone could unsubscribe anyone" in result.output
    assert "NEWSLETTER_SECRET is shorter than 16 characters" in result.output
    assert "short" not in result.output.replace("shorter", "")  # the secret itself is never printed


def test_check_hints_when_the_from_domain_is_not_the_relay_logins(campaign: Path, smtp: Server) -> None:
    write_env(campaign, smtp.env(**SETTINGS, SMTP_USERNAME="mailer@relay.example.net", SMTP_PASSWORD="pw"))
    result = invoke("--campaign", str(campaign), "check")
    assert result.exit_code == 0, result.output
    assert "info: From is @example.org but the relay login is @relay.example.net" in result.output
    write_env(campaign, smtp.env(**SETTINGS, SMTP_USERNAME="news@mail.example.org", SMTP_PASSWORD="pw"))
    assert "relay login" not in invoke("--campaign", str(campaign), "check").output
    write_env(campaign, smtp.env(**SETTINGS, SMTP_USERNAME="AKIAEXAMPLEKEY", SMTP_PASSWORD="pw"))
    assert "relay login" not in invoke("--campaign", str(campaign), "check").output


# -- the web version ------------------------------------------------------------------


def test_the_web_version_has_the_announcement_and_nobodys_data(
    campaign: Path, tmp_path: Path, example_addresses: list[str]
) -> None:
    write_env(campaign, SETTINGS)
    set_front_matter(
        campaign, "+++\n", '+++\nweb_version_url = "https://example.org/news/digital-customs.html"\n'
    )
    out = tmp_path / "site"
    result = invoke("--campaign", str(campaign), "preview", "--out", str(out), "--web-version")
    assert result.exit_code == 0, result.output
    assert f"Web version (no recipient data): {out / 'index.html'}" in result.output
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "Development of the Institute of Digital Customs" in page
    assert "Dear colleague," in page
    for address in example_addresses:
        assert address not in page
    assert "Анна Петрова" not in page
    assert "token=" not in page
    assert "https://example.org/news/digital-customs.html" not in page  # no link to itself
    # ...while the messages do link to it.
    eml = next(out.glob("*.eml")).read_bytes().decode("ascii")
    assert "https://example.org/news/digital-customs.html" in eml.replace("=\r\n", "")
