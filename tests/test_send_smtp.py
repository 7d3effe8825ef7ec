"""The example campaign sent to a real SMTP server: what arrives is what we promise."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import invoke, write_env
from tests.smtpd import Server, running_server


def test_every_recipient_gets_one_complete_message(campaign: Path, smtp: Server, example_addresses: list[str]) -> None:
    write_env(campaign, smtp.env())
    result = invoke("--campaign", str(campaign), "send", "--yes")
    assert result.exit_code == 0, result.output
    received = smtp.recorder.by_recipient()
    assert sorted(received) == sorted(a.lower() for a in example_addresses)
    assert all(len(copies) == 1 for copies in received.values())
    assert "12 sent" in result.output


def test_headers_parts_and_inlined_styles(campaign: Path, smtp: Server) -> None:
    write_env(campaign, smtp.env(NEWSLETTER_UNSUBSCRIBE_URL="https://example.org/u?e={email}"))
    assert invoke("--campaign", str(campaign), "send", "--yes").exit_code == 0
    by_rcpt = smtp.recorder.by_recipient()
    message = by_rcpt["anna.petrova@academy.example.org"][0].message
    assert message["From"] == "Sergei Mozer <sergei.mozer@example.org>"
    assert message["To"].addresses[0].display_name == "Анна Петрова"
    assert "=?utf-8?" in by_rcpt["anna.petrova@academy.example.org"][0].data.decode("ascii").split("\r\n\r\n")[0]
    assert message["Subject"] == "New book: Development of the Institute of Digital Customs"
    assert re.fullmatch(r"<[^@\s]+@example\.org>", message["Message-ID"])
    assert message["Date"]
    assert message["Reply-To"] == "sergei.mozer@example.org"
    assert message["MIME-Version"] == "1.0"
    assert message["List-Unsubscribe"] == "<https://example.org/u?e=anna.petrova@academy.example.org>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.get_payload()
    assert text.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    assert "Dear Анна Петрова," in text.get_content()
    body = html.get_content()
    assert "Анна Петрова" in body
    assert re.search(r'<td[^>]+class="button-cell"[^>]+style=(["\'])(?:(?!\1).)*background', body)  # on the cell
    assert "https://example.org/u?e=anna.petrova@academy.example.org" in body


def test_message_ids_are_unique(campaign: Path, smtp: Server) -> None:
    write_env(campaign, smtp.env())
    assert invoke("--campaign", str(campaign), "send", "--yes").exit_code == 0
    ids = [m.message["Message-ID"] for m in smtp.messages]
    assert len(ids) == len(set(ids)) == 12


def test_empty_name_falls_back_to_colleague(campaign: Path, smtp: Server) -> None:
    write_env(campaign, smtp.env())
    assert invoke("--campaign", str(campaign), "send", "--yes").exit_code == 0
    greetings = [m.message.get_body(("plain",)).get_content() for m in smtp.messages]  # type: ignore[union-attr]
    assert sum("Dear colleague," in g for g in greetings) == 1


def test_starttls_and_auth(campaign: Path, smtp_tls: Server) -> None:
    write_env(campaign, smtp_tls.env(SMTP_USERNAME="mozer", SMTP_PASSWORD="correct horse"))
    result = invoke("--campaign", str(campaign), "send", "--yes")
    assert result.exit_code == 0, result.output
    assert len(smtp_tls.messages) == 12
    assert smtp_tls.recorder.logins == [("mozer", "correct horse")] * 2 or smtp_tls.recorder.logins[0] == (
        "mozer",
        "correct horse",
    )


def test_untrusted_certificate_is_refused(campaign: Path, smtp_tls: Server) -> None:
    env = smtp_tls.env(SMTP_USERNAME="mozer", SMTP_PASSWORD="correct horse")
    del env["SMTP_CA_FILE"]
    write_env(campaign, env)
    result = invoke("--campaign", str(campaign), "send", "--yes")
    assert result.exit_code == 2
    assert "certificate verify failed" in result.output.lower() or "tls failed" in result.output.lower()
    assert smtp_tls.messages == [] and smtp_tls.recorder.logins == []


def test_wrong_password_stops_with_exit_2_and_marks_nothing(campaign: Path, smtp_tls: Server) -> None:
    write_env(campaign, smtp_tls.env(SMTP_USERNAME="mozer", SMTP_PASSWORD="wrong"))
    result = invoke("--campaign", str(campaign), "send", "--yes")
    assert result.exit_code == 2
    assert "authentication failed" in result.output
    assert "wrong" not in result.output
    assert "sending" not in result.output  # no empty progress bar above the error
    status = invoke("--campaign", str(campaign), "status")
    assert re.search(r"sent\s*│\s*0", status.output)
    assert smtp_tls.messages == []


def test_server_without_starttls_is_refused(campaign: Path, ca_file: Path) -> None:
    with running_server() as plain:
        write_env(campaign, {**plain.env(), "SMTP_SECURITY": "starttls", "SMTP_CA_FILE": str(ca_file)})
        result = invoke("--campaign", str(campaign), "send", "--yes")
        assert result.exit_code == 2
        assert "does not offer STARTTLS" in result.output
        assert plain.messages == []


def test_servers_without_pipelining_get_one_command_at_a_time(campaign: Path, smtp: Server) -> None:
    """Most tests speak to a server that offers PIPELINING (the fast path); this one does not."""
    smtp.behaviour.pipelining = False
    smtp.behaviour.replies["dmitry.sokolov@eec.example.org"] = ["550 5.1.1 no such user"]
    smtp.behaviour.drop_after_data = {"olga.smirnova@research.example.org"}
    write_env(campaign, smtp.env())
    result = invoke("--campaign", str(campaign), "send", "--yes", "--connections", "1")
    assert result.exit_code == 1
    received = smtp.recorder.by_recipient()
    assert len(received) == 11 and all(len(copies) == 1 for copies in received.values())
    assert "dmitry.sokolov@eec.example.org (line 3): failed: 550 5.1.1 no such user" in result.output
    assert "olga.smirnova@research.example.org (line 7): unknown" in result.output
