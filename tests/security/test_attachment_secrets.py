"""Issue 13, finding 3: attachments (and inline images) that are the campaign's own secrets.

`attachments = [".env"]` mailed the relay password to the whole list and `check` printed
only an info line. The settings file, the list, `unsubscribed.csv` and anything under
`.newsletter/` are never attached or embedded, under any name: an input error naming
the front-matter field, exit 2, before anything is sent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import write_env
from tests.security.conftest import cli, make_campaign

PASSWORD = "pw-IN-THE-DOTENV-4410"


def _folder(tmp_path: Path, attachment: str) -> Path:
    folder = make_campaign(tmp_path / "c", extra=f'attachments = ["{attachment}"]')
    write_env(folder, {"SMTP_PASSWORD": PASSWORD})
    (folder / "unsubscribed.csv").write_text("email\ncarol@example.org\n", encoding="utf-8")
    (folder / ".newsletter").mkdir()
    (folder / ".newsletter" / "journal.sqlite3").write_bytes(b"SQLite format 3\x00 dave@example.org")
    return folder


def _sent(folder: Path) -> bytes:
    outbox = folder / "outbox"
    return b"".join(path.read_bytes() for path in outbox.glob("*.eml")) if outbox.is_dir() else b""


@pytest.mark.parametrize(
    ("attachment", "what"),
    [
        (".env", "the settings file .env"),
        ("recipients.csv", "the recipient list recipients.csv"),
        ("unsubscribed.csv", "the unsubscribe list unsubscribed.csv"),
        (".newsletter/journal.sqlite3", "the state folder .newsletter/ (the journal)"),
        ("./templates/../.env", "the settings file .env"),
    ],
)
def test_a_private_file_is_never_attached(tmp_path: Path, attachment: str, what: str) -> None:
    folder = _folder(tmp_path, attachment)

    checked = cli(folder, "check")
    sent = cli(folder, "send", "--yes")

    for result in (checked, sent):
        assert result.exit_code == 2, result.output
        assert f"announcement.md:6: 'attachments': '{attachment}': it is {what}, which is never attached" in (
            result.output.replace("\n", "")
        )
        assert PASSWORD not in result.output
    assert _sent(folder) == b""


def test_a_hard_link_of_the_env_file_is_never_attached(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "book.pdf")
    os.link(folder / ".env", folder / "book.pdf")

    result = cli(folder, "send", "--yes")

    assert result.exit_code == 2, result.output
    assert "'attachments': 'book.pdf': it is the settings file .env" in result.output.replace("\n", "")
    assert PASSWORD.encode() not in _sent(folder)


def test_the_list_named_by_recipients_is_never_attached(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "members.csv")
    (folder / "recipients.csv").rename(folder / "members.csv")

    result = cli(folder, "--recipients", str(folder / "members.csv"), "send", "--yes")

    assert result.exit_code == 2, result.output
    assert "'members.csv': it is the recipient list members.csv" in result.output.replace("\n", "")
    assert b"bob@example.org,Bob" not in _sent(folder)


def test_an_image_that_is_the_env_file_is_never_embedded(tmp_path: Path) -> None:
    """A name ending in .png, a hard link of `.env`: the type comes from the name, so only identity tells."""
    folder = make_campaign(tmp_path / "c", html='<p>Hi</p><img src="images/cover.png" alt="cover">')
    env = write_env(folder, {"SMTP_PASSWORD": PASSWORD})
    (folder / "images").mkdir()
    os.link(env, folder / "images" / "cover.png")

    result = cli(folder, "send", "--yes")

    assert result.exit_code == 2, result.output
    assert '<img src="images/cover.png">: it is the settings file .env, which is never embedded' in (
        result.output.replace("\n", "")
    )
    assert _sent(folder) == b""
