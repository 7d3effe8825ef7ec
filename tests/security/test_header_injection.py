"""Header injection: nothing in a CSV row, the front matter, the subject or the settings
can add a header or a recipient.

Python's own `email` package has had injection bugs (CVE-2024-6923, fixed in
3.11.10), so these tests look at the bytes that reach a real SMTP server, not at
what the library was asked to do: the rows are validated before any message is
built, on whatever Python runs the suite.
"""

from __future__ import annotations

import csv
import io
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from newsletter.inputs.recipients import InvalidRow, Recipient
from newsletter.message.builder import display_name
from newsletter.project import load_project
from tests.conftest import write_env
from tests.security.conftest import cli, header_block, header_names, make_campaign
from tests.smtpd import Server

INJECTIONS = [
    "Eve\r\nBcc: victim@evil.example",
    "Eve\nBcc: victim@evil.example",
    "Eve\rBcc: victim@evil.example",
    "Eve\x00Bcc: victim@evil.example",
    "Eve\r\n\r\n<html>forged body</html>",
    "Eve\x0bX-Injected: 1",
    "Eve\x1b[31m\x7fX-Injected: 1",
    "Eve\u2028Bcc: victim@evil.example",
    "Eve\x85Bcc: victim@evil.example",
    '"Eve" <victim@evil.example>, other@evil.example',
    # RFC 2047 encoded-words: Python's email package decodes them and, before 3.11.10 and
    # 3.12.5 (gh-121284), wrote the decoded line break back raw. Refused before it sees them.
    "=?utf-8?q?Bcc=3A_victim=40evil=2Eexample?=",
    "=?utf-8?q?Eve=0D=0ABcc=3A_victim=40evil=2Eexample?=",
    "x " * 40 + "=?utf-8?q?Eve=0D=0ABcc=3A_victim=40evil=2Eexample?=",
]


def _csv(rows: list[list[str]]) -> str:
    """A CSV as a spreadsheet writes it: fields with line breaks or quotes are quoted."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(rows)
    return out.getvalue()


def _parsed(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _assert_clean(data: bytes, expected_headers: list[str]) -> None:
    """One header line each, the same headers as a harmless row's message, nothing smuggled."""
    block = header_block(data)
    assert header_names(data) == expected_headers
    assert b"\x00" not in block and b"\x1b" not in block
    for line in block.split(b"\r\n"):
        assert b"\r" not in line and b"\n" not in line
        assert line.isascii()  # non-ASCII names travel RFC 2047-encoded
    assert not any(name in ("bcc", "cc", "x-injected") for name in header_names(data))


def test_hostile_names_reach_the_server_as_one_encoded_display_name(campaign: Path, smtp: Server) -> None:
    rows = [["email", "name", "organization"], ["plain@example.org", "Plain Name", "Org"]]
    rows += [[f"row{i}@example.org", name, name] for i, name in enumerate(INJECTIONS)]
    (campaign / "recipients.csv").write_text(_csv(rows), encoding="utf-8")
    write_env(campaign, smtp.env())

    result = cli(campaign, "send", "--yes")

    assert result.exit_code == 0, result.output
    received = smtp.recorder.by_recipient()
    # Exactly the list's addresses, each once: no row added a recipient.
    assert sorted(received) == sorted(row[0] for row in rows[1:])
    assert all(len(copies) == 1 for copies in received.values())
    assert all(m.rcpt_tos == [m.message["To"].addresses[0].addr_spec] for m in smtp.messages)
    expected = header_names(received["plain@example.org"][0].data)
    for i, name in enumerate(INJECTIONS):
        data = received[f"row{i}@example.org"][0].data
        _assert_clean(data, expected)
        to = _parsed(data)["To"]
        assert len(to.addresses) == 1
        assert to.addresses[0].addr_spec == f"row{i}@example.org"
        # The name is kept as text, whitespace and control characters folded to spaces.
        assert to.addresses[0].display_name == display_name(name)


@pytest.mark.parametrize(
    "address",
    [
        "victim@example.org\r\nBcc: evil@evil.example",
        "victim@example.org\nRCPT TO:<evil@evil.example>",
        "victim@example.org\x00evil@evil.example",
        "victim@example.org, evil@evil.example",
        "Victim <victim@example.org>",
        "victim\u2028@example.org",
        "=?utf-8?q?=0D=0AX-Injected=3A_1?=@example.org",
    ],
)
def test_an_address_with_injection_is_an_invalid_row(tmp_path: Path, address: str) -> None:
    folder = make_campaign(tmp_path / "c", csv=_csv([["email", "name"], ["ann@example.org", "Ann"], [address, "X"]]))
    project = load_project(folder, environ={})

    rows = list(project.recipients)

    assert isinstance(rows[0], Recipient)
    assert isinstance(rows[1], InvalidRow)
    assert rows[1].line == 3 and rows[1].field == "email"
    result = cli(folder, "check")
    assert result.exit_code == 2
    assert "recipients.csv:3: field 'email'" in result.output


def test_invalid_address_rows_are_never_sent_to_even_with_skip_invalid(campaign: Path, smtp: Server) -> None:
    rows = [["email", "name", "organization"], ["ann@example.org", "Ann", ""]]
    rows += [["victim@example.org\r\nBcc: evil@evil.example", "X", ""]]
    (campaign / "recipients.csv").write_text(_csv(rows), encoding="utf-8")
    write_env(campaign, smtp.env())

    refused = cli(campaign, "send", "--yes")
    assert refused.exit_code == 2 and smtp.messages == []

    result = cli(campaign, "send", "--yes", "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert [m.rcpt_tos for m in smtp.messages] == [["ann@example.org"]]
    assert b"evil" not in smtp.messages[0].data


def test_subject_built_from_a_hostile_field_stays_one_header(tmp_path: Path, smtp: Server) -> None:
    rows = [["email", "name"], ["ann@example.org", "Ann\r\nBcc: victim@evil.example"], ["bob@example.org", "Bob"]]
    folder = make_campaign(tmp_path / "c", subject="{{ recipient.name }}: news", csv=_csv(rows))
    write_env(folder, smtp.env())

    result = cli(folder, "send", "--yes")

    assert result.exit_code == 0, result.output
    received = smtp.recorder.by_recipient()
    expected = header_names(received["bob@example.org"][0].data)
    data = received["ann@example.org"][0].data
    _assert_clean(data, expected)
    assert _parsed(data)["Subject"] == "Ann Bcc: victim@evil.example: news"
    assert sorted(received) == ["ann@example.org", "bob@example.org"]


@pytest.mark.parametrize(
    ("extra", "subject", "where"),
    [
        ('reply_to = "a@example.org\\r\\nBcc: victim@evil.example"', "News", "reply_to"),
        ('reply_to = "a@example.org, victim@evil.example"', "News", "reply_to"),
        ('list_id = "list.example.org>\\r\\nBcc: victim@evil.example"', "News", "list_id"),
    ],
)
def test_front_matter_fields_with_injection_are_refused(
    tmp_path: Path, smtp: Server, extra: str, subject: str, where: str
) -> None:
    folder = make_campaign(tmp_path / "c", extra=extra, subject=subject)
    write_env(folder, smtp.env())

    result = cli(folder, "send", "--yes")

    assert result.exit_code == 2, result.output
    assert where in result.output
    assert "Traceback" not in result.output
    assert smtp.messages == []


def test_front_matter_from_with_a_line_break_is_refused(tmp_path: Path, smtp: Server) -> None:
    folder = make_campaign(tmp_path / "c")
    path = folder / "announcement.md"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            'from = "Research Institute <research@example.org>"',
            'from = "Research Institute <research@example.org>\\nBcc: victim@evil.example"',
        ),
        encoding="utf-8",
    )
    write_env(folder, smtp.env())

    result = cli(folder, "send", "--yes")

    assert result.exit_code == 2
    assert "from" in result.output and "line break" in result.output
    assert smtp.messages == []


def test_subject_with_line_breaks_in_front_matter_is_folded(tmp_path: Path, smtp: Server) -> None:
    folder = make_campaign(tmp_path / "c", subject="Hello\\r\\nBcc: victim@evil.example")
    write_env(folder, smtp.env())

    result = cli(folder, "send", "--yes")

    assert result.exit_code == 0, result.output
    assert {tuple(m.rcpt_tos) for m in smtp.messages} == {("ann@example.org",), ("bob@example.org",)}
    for received in smtp.messages:
        assert "bcc" not in header_names(received.data)
        assert received.message["Subject"] == "Hello Bcc: victim@evil.example"


@pytest.mark.parametrize(
    "value",
    [
        '"Research <research@example.org>\\r\\nBcc: victim@evil.example"',
        '"Research <research@example.org>\\nX-Injected: 1"',
        "research@example.org, victim@evil.example",
        "research@example.org <victim@evil.example>",
    ],
)
def test_newsletter_from_setting_with_injection_is_refused(tmp_path: Path, smtp: Server, value: str) -> None:
    folder = make_campaign(tmp_path / "c")
    # python-dotenv turns "\n" inside double quotes into a real line break.
    write_env(folder, {**smtp.env(), "NEWSLETTER_FROM": value})

    result = cli(folder, "send", "--yes")

    assert result.exit_code == 2, result.output
    assert "NEWSLETTER_FROM" in result.output
    assert smtp.messages == []


@pytest.mark.parametrize(
    "character", [chr(c) for c in (*range(0x20), 0x7F, 0x85, 0x2028, 0x2029)], ids=lambda c: f"U+{ord(c):04X}"
)
def test_every_control_character_in_name_and_subject_is_folded(tmp_path: Path, character: str) -> None:
    """The whole pipeline (CSV, render, MIME) on this Python, one character at a time."""
    name = f"Eve{character}Bcc: victim@evil.example{character}"
    rows = [["email", "name"], ["ann@example.org", "Ann"], ["eve@example.org", name]]
    folder = make_campaign(tmp_path / "c", subject="{{ recipient.name }} news", csv=_csv(rows))
    project = load_project(folder, environ={})
    ann, eve = project.recipients.recipients()

    expected = header_names(project.message(ann)[1].data)
    data = project.message(eve)[1].data

    _assert_clean(data, expected)
    message = _parsed(data)
    assert [a.addr_spec for a in message["To"].addresses] == ["eve@example.org"]
    assert "\n" not in message["Subject"] and "\r" not in message["Subject"]


@pytest.mark.parametrize("name", ["SMTP_USERNAME", "NEWSLETTER_REPLY_TO", "NEWSLETTER_UNSUBSCRIBE_MAILTO", "SMTP_HOST"])
def test_any_setting_with_a_line_break_is_refused(tmp_path: Path, smtp: Server, name: str) -> None:
    folder = make_campaign(tmp_path / "c")
    write_env(folder, {**smtp.env(), name: '"ok@example.org\\r\\nBcc: victim@evil.example"'})

    result = cli(folder, "send", "--yes")

    assert result.exit_code == 2, result.output
    assert name in result.output
    assert smtp.messages == []


@pytest.mark.parametrize("name", ["NEWSLETTER_FROM", "NEWSLETTER_UNSUBSCRIBE_URL", "NEWSLETTER_UNSUBSCRIBE_MAILTO"])
def test_settings_with_encoded_words_are_refused(tmp_path: Path, smtp: Server, name: str) -> None:
    folder = make_campaign(tmp_path / "c")
    value = "https://example.org/u?e==?utf-8?q?=0D=0ABcc=3A_victim=40evil=2Eexample?="
    write_env(folder, {**smtp.env(), name: value})

    result = cli(folder, "send", "--yes")

    assert result.exit_code == 2, result.output
    assert name in result.output
    assert smtp.messages == []
