"""Limits: a message over the server's SIZE is refused before MAIL (and nobody is marked
failed for it); a CSV too wide or with a line too long is refused with a clear message.
"""

from __future__ import annotations

import re
from pathlib import Path

from newsletter.inputs.recipients import MAX_COLUMNS, MAX_LINE_BYTES
from newsletter.project import load_project
from tests.conftest import write_env
from tests.security.conftest import CountingServer, cli, make_campaign, serve


def _point_at(folder: Path, server: CountingServer) -> None:
    write_env(folder, {"SMTP_HOST": server.host, "SMTP_PORT": str(server.port), "SMTP_SECURITY": "none"})


def _state(status_output: str, state: str) -> int:
    match = re.search(rf"{state}\s*│\s*(\d+)", status_output)
    assert match, status_output
    return int(match.group(1))


def test_messages_over_size_are_refused_before_mail_and_nobody_is_marked(campaign: Path) -> None:
    with serve(data_size_limit=5000) as small:
        _point_at(campaign, small)
        result = cli(campaign, "send", "--yes")
        status = cli(campaign, "status")

    assert result.exit_code == 2, result.output
    assert re.search(r"bytes; this server accepts at most 5,000 \(its SIZE\)", result.output)
    assert small.recorder.mail_commands == 0 and small.messages == []
    assert _state(status.output, "sent") == 0 and _state(status.output, "failed") == 0
    assert _state(status.output, "pending") == 12

    # The campaign fixed (here: a relay that takes bigger messages), the same command sends everyone once.
    with serve() as large:
        _point_at(campaign, large)
        again = cli(campaign, "send", "--yes")
    assert again.exit_code == 0, again.output
    assert len(large.recorder.by_recipient()) == 12 and len(large.messages) == 12


def test_a_huge_html_body_is_refused_before_mail(tmp_path: Path) -> None:
    folder = make_campaign(tmp_path / "c", body="A long paragraph of the announcement. " * 40_000)
    with serve(data_size_limit=1_000_000) as server:
        _point_at(folder, server)
        result = cli(folder, "send", "--yes")
    assert result.exit_code == 2
    assert "this server accepts at most 1,000,000" in result.output
    assert server.recorder.mail_commands == 0


def test_an_attachment_over_size_is_refused_before_mail(tmp_path: Path) -> None:
    folder = make_campaign(tmp_path / "c", extra='attachments = ["book.pdf"]')
    (folder / "book.pdf").write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 400)  # 100 KB, 137 KB in base64
    with serve(data_size_limit=100_000) as server:
        _point_at(folder, server)
        checked = cli(folder, "check")
        result = cli(folder, "send", "--yes")
    assert checked.exit_code == 0, checked.output  # the attachment is fine; this relay's limit is not
    assert result.exit_code == 2
    assert "this server accepts at most 100,000" in result.output
    assert server.recorder.mail_commands == 0


def test_only_the_oversized_message_stops_the_run_earlier_ones_are_sent(tmp_path: Path) -> None:
    csv = f"email,name,organization\nann@example.org,Ann,Small\nbob@example.org,Bob,{'B' * 60_000}\n"
    folder = make_campaign(tmp_path / "c", csv=csv, html="<p>{{ recipient.name }} {{ recipient.organization }}</p>")
    with serve(data_size_limit=40_000) as server:
        _point_at(folder, server)
        result = cli(folder, "send", "--yes", "--connections", "1")
        status = cli(folder, "status")
    assert result.exit_code == 2
    assert "the message for bob@example.org is" in result.output
    assert [m.rcpt_tos for m in server.messages] == [["ann@example.org"]]
    assert server.recorder.mail_commands == 1
    # Bob is neither failed nor unknown: still pending, sent by the next run.
    assert _state(status.output, "sent") == 1 and _state(status.output, "pending") == 1
    assert _state(status.output, "failed") == 0 and _state(status.output, "unknown") == 0


def test_a_message_that_fits_is_sent(tmp_path: Path) -> None:
    folder = make_campaign(tmp_path / "c", csv="email,name\nann@example.org,Ann\n")
    project = load_project(folder, environ={})
    size = len(project.message(next(project.recipients.recipients()))[1].data)
    with serve(data_size_limit=size + 200) as server:
        _point_at(folder, server)
        result = cli(folder, "send", "--yes")
    assert result.exit_code == 0, result.output
    assert len(server.messages) == 1


def test_a_test_send_over_size_is_refused(campaign: Path) -> None:
    with serve(data_size_limit=5000) as server:
        _point_at(campaign, server)
        result = cli(campaign, "send", "--to", "me@example.org")
    assert result.exit_code == 2
    assert "this server accepts at most 5,000" in result.output
    assert server.recorder.mail_commands == 0


def test_too_many_columns_is_refused(tmp_path: Path) -> None:
    header = ",".join(["email", *(f"c{i}" for i in range(MAX_COLUMNS))])
    folder = make_campaign(tmp_path / "c", csv=f"{header}\nann@example.org\n")
    result = cli(folder, "check")
    assert result.exit_code == 2
    assert f"recipients.csv:1: {MAX_COLUMNS + 1} columns; at most {MAX_COLUMNS} are read" in result.output


def test_a_line_too_long_is_refused_with_its_number(tmp_path: Path) -> None:
    long_line = "bob@example.org," + "x" * (2 * MAX_LINE_BYTES)
    folder = make_campaign(tmp_path / "c", csv=f"email,name\nann@example.org,Ann\n{long_line}\n")
    result = cli(folder, "check")
    assert result.exit_code == 2
    assert f"recipients.csv:3: line longer than {MAX_LINE_BYTES} bytes" in result.output
    assert "Traceback" not in result.output
