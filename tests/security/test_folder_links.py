"""Issue 13, finding 1: a `templates/` folder that is a link, and templates that are private files.

With `templates -> .` every file of the campaign was a template: `{% include ".env" %}`
put the relay password into every message. The templates folder must be a real folder
of the campaign, and no template may be `.env`, the list, `unsubscribed.csv` or the
journal, under any name (a hard link included).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from newsletter.inputs.folder import CampaignFolder
from tests.conftest import write_env
from tests.security.conftest import cli, make_campaign, run

PASSWORD = "pw-IN-THE-DOTENV-7731"
SECRET = "NEWSLETTER-SECRET-IN-THE-DOTENV-5519"


def _outbox(folder: Path) -> str:
    outbox = folder / "outbox"
    files = sorted(outbox.glob("*.eml")) if outbox.is_dir() else []
    return "".join(path.read_text(encoding="utf-8", errors="replace") for path in files)


def _hostile(tmp_path: Path, html: str) -> Path:
    """A campaign whose templates/ is a link to the campaign folder itself."""
    folder = make_campaign(tmp_path / "c", html=html, text=None)
    real = folder / "templates"
    for file in real.iterdir():
        file.rename(folder / file.name)
    real.rmdir()
    (folder / "templates").symlink_to(".")
    write_env(folder, {"SMTP_PASSWORD": PASSWORD, "NEWSLETTER_SECRET": SECRET})
    return folder


def test_templates_linked_to_the_campaign_folder_is_refused(tmp_path: Path) -> None:
    folder = _hostile(tmp_path, '<p>{% include ".env" %}</p><pre>{% include "recipients.csv" %}</pre>')

    result = cli(folder, "send", "--yes")

    assert result.exit_code == 2, result.output
    assert "templates: the templates folder is a symbolic link (to .)" in result.output
    assert PASSWORD not in result.output and SECRET not in result.output
    assert PASSWORD not in _outbox(folder) and "bob@example.org" not in _outbox(folder)
    assert not (folder / "outbox").exists()


def test_templates_linked_to_the_root_stops_check_at_once(tmp_path: Path) -> None:
    """`templates -> /` read any file and made `check` walk the whole filesystem."""
    folder = make_campaign(tmp_path / "c", extra='html_template = "etc/passwd"', text=None)
    for file in (folder / "templates").iterdir():
        file.unlink()
    (folder / "templates").rmdir()
    (folder / "templates").symlink_to("/")

    started = time.monotonic()
    result = run(folder, "check", timeout=60)

    assert result.returncode == 2, result.stdout + result.stderr
    assert time.monotonic() - started < 30
    assert "the templates folder is a symbolic link (to /)" in result.stderr
    assert "root:" not in result.stdout + result.stderr


def test_a_hard_link_of_the_env_file_is_no_template(tmp_path: Path) -> None:
    """An archive can ship `templates/footer.txt` as a hard link of `.env`, which the user then fills in."""
    folder = make_campaign(tmp_path / "c", html='<p>Hi</p><footer>{% include "footer.txt" %}</footer>')
    env = write_env(folder, {"SMTP_PASSWORD": PASSWORD})
    os.link(env, folder / "templates" / "footer.txt")

    result = cli(folder, "send", "--yes")

    assert result.exit_code == 2, result.output
    assert "templates/footer.txt is the settings file .env, which is never read as a template" in result.output
    assert PASSWORD not in result.output and PASSWORD not in _outbox(folder)


def test_the_list_named_by_recipients_is_no_template(tmp_path: Path) -> None:
    folder = make_campaign(tmp_path / "c", html='<p>Hi</p><pre>{% include "members.csv" %}</pre>', text=None)
    members = folder / "templates" / "members.csv"
    (folder / "recipients.csv").rename(members)

    result = cli(folder, "--recipients", str(members), "send", "--yes")

    assert result.exit_code == 2, result.output
    assert "templates/members.csv is the recipient list members.csv" in result.output
    assert "bob@example.org" not in _outbox(folder)


def test_unsubscribed_csv_is_no_template(tmp_path: Path) -> None:
    """Hard links again: the file is appended to in place, so a shipped link pair fills the template."""
    folder = make_campaign(tmp_path / "c", html='<p>Hi</p><pre>{% include "gone.txt" %}</pre>', text=None)
    (folder / "unsubscribed.csv").write_text("email\ncarol@example.org\n", encoding="utf-8")
    os.link(folder / "unsubscribed.csv", folder / "templates" / "gone.txt")

    result = cli(folder, "send", "--yes")

    assert result.exit_code == 2, result.output
    assert "templates/gone.txt is the unsubscribe list unsubscribed.csv" in result.output
    assert "carol@example.org" not in _outbox(folder)


def test_the_journal_is_no_template(tmp_path: Path) -> None:
    folder = make_campaign(tmp_path / "c")
    assert cli(folder, "send", "--yes").exit_code == 0  # the journal now lists every address
    os.link(folder / ".newsletter" / "journal.sqlite3", folder / "templates" / "log.html")
    (folder / "templates" / "announcement.html").write_text('<p>Hi</p>{% include "log.html" %}', encoding="utf-8")

    result = cli(folder, "check")

    assert result.exit_code == 2, result.output
    assert "templates/log.html is the state folder .newsletter/ (the journal)" in result.output


def test_walks_of_templates_never_follow_a_link(tmp_path: Path) -> None:
    """The walks behind `check` and the preview's reload list only real files of templates/."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "note.txt").write_text("not a template of this campaign", encoding="utf-8")
    folder = make_campaign(tmp_path / "c")
    (folder / "templates" / "more").symlink_to(outside)
    (folder / "templates" / "note.txt").symlink_to(outside / "note.txt")

    watched = CampaignFolder(folder).watched()

    assert folder / "templates" / "announcement.html" in watched
    assert [path for path in watched if path.is_symlink() or outside in path.resolve().parents] == []
    assert cli(folder, "check").exit_code == 0


def test_an_announcement_linked_from_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "notes.md"
    outside.write_text(
        '+++\nsubject = "Private notes"\nfrom = "a@example.org"\n+++\nMY-PRIVATE-NOTES\n', encoding="utf-8"
    )
    folder = make_campaign(tmp_path / "c")
    (folder / "announcement.md").unlink()
    (folder / "announcement.md").symlink_to(outside)

    result = cli(folder, "send", "--yes")

    assert result.exit_code == 2, result.output
    assert "announcement.md: leads outside the campaign folder" in result.output
    assert "MY-PRIVATE-NOTES" not in _outbox(folder)
