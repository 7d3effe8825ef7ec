"""Issue 13, finding 2: output files written through links that came with the campaign folder.

A folder that ships `outbox/<a known address>.eml.part -> ~/.bashrc` had the quickstart's
own `newsletter send` overwrite that file; the same for preview files and the journal.
Every file the tool writes is now a new temporary (no-follow, exclusive) in a folder
checked not to be a link, and a link planted in `outbox/`, `preview/` or `.newsletter/`
is refused by name before anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.security.conftest import cli, make_campaign

BASHRC = "alias ls='ls --color'  # the user's own start-up file\n"
ANN = "ann@example.org"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside the campaign folder that the folder's links point at."""
    path = tmp_path / "home" / ".bashrc"
    path.parent.mkdir()
    path.write_text(BASHRC, encoding="utf-8")
    return path


def _untouched(victim: Path) -> bool:
    return victim.read_text(encoding="utf-8") == BASHRC and list(victim.parent.iterdir()) == [victim]


def test_a_planted_part_file_in_the_outbox_is_refused(tmp_path: Path, victim: Path) -> None:
    folder = make_campaign(tmp_path / "c", text="echo owned >> ~/.ssh/authorized_keys\n")
    (folder / "outbox").mkdir()
    planted = folder / "outbox" / f"{ANN}.eml.part"
    planted.symlink_to(victim)

    result = cli(folder, "send", "--yes")

    assert result.exit_code == 2, result.output
    assert f"{planted} is a symbolic link (to {victim})" in result.output.replace("\n", "")
    assert _untouched(victim)
    assert not list((folder / "outbox").glob("*.eml"))  # refused before any message was written


def test_a_linked_outbox_folder_is_refused(tmp_path: Path, victim: Path) -> None:
    folder = make_campaign(tmp_path / "c")
    (folder / "outbox").symlink_to(victim.parent)

    result = cli(folder, "send", "--yes")

    assert result.exit_code == 2, result.output
    assert "outbox is a symbolic link" in result.output.replace("\n", "")
    assert _untouched(victim)


@pytest.mark.parametrize("suffix", [".html", ".txt", ".eml"])
def test_a_planted_preview_file_is_refused(tmp_path: Path, victim: Path, suffix: str) -> None:
    folder = make_campaign(tmp_path / "c")
    (folder / "preview").mkdir()
    planted = folder / "preview" / f"{ANN}{suffix}"
    planted.symlink_to(victim)

    result = cli(folder, "preview")

    assert result.exit_code == 2, result.output
    assert f"{planted} is a symbolic link" in result.output.replace("\n", "")
    assert _untouched(victim)


def test_a_linked_image_folder_under_preview_is_refused(tmp_path: Path, victim: Path) -> None:
    """Images are copied beside the preview at their relative paths: `preview/images` must be real."""
    folder = make_campaign(tmp_path / "c", html='<p>Hi</p><img src="images/x.png" alt="x">')
    (folder / "images").mkdir()
    (folder / "images" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / "preview").mkdir()
    (folder / "preview" / "images").symlink_to(victim.parent)

    result = cli(folder, "preview", "--web-version")

    assert result.exit_code == 2, result.output
    assert "images is a symbolic link" in result.output.replace("\n", "")
    assert _untouched(victim)


def test_a_dangling_journal_link_is_refused(tmp_path: Path) -> None:
    """SQLite follows links: a dangling one created the journal wherever it pointed."""
    folder = make_campaign(tmp_path / "c")
    elsewhere = tmp_path / "elsewhere" / "journal.sqlite3"
    elsewhere.parent.mkdir()
    (folder / ".newsletter").mkdir()
    (folder / ".newsletter" / "journal.sqlite3").symlink_to(elsewhere)

    result = cli(folder, "send", "--yes")

    assert result.exit_code == 2, result.output
    assert "journal.sqlite3 is a symbolic link" in result.output.replace("\n", "")
    assert not elsewhere.exists() and list(elsewhere.parent.iterdir()) == []
    assert not (folder / "outbox").exists()


def test_a_linked_state_folder_is_refused(tmp_path: Path) -> None:
    folder = make_campaign(tmp_path / "c")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (folder / ".newsletter").symlink_to(elsewhere)

    result = cli(folder, "status")

    assert result.exit_code == 2, result.output
    assert ".newsletter is a symbolic link" in result.output.replace("\n", "")
    assert list(elsewhere.iterdir()) == []


def test_a_link_made_after_the_check_is_not_written_through(tmp_path: Path, victim: Path) -> None:
    """The write itself is no-follow and exclusive, whatever appears in the folder after its check."""
    from newsletter.inputs.safefiles import OutputDir  # new with the fix: the tests above run without it

    out = OutputDir(tmp_path / "out")
    with out:
        (tmp_path / "out" / "a.eml.part").symlink_to(victim)
        with pytest.raises(Exception, match="is a symbolic link"):
            out.write("a.eml", b"attacker's text")
        (tmp_path / "out" / "b.eml").symlink_to(victim)
        with pytest.raises(Exception, match="is a symbolic link"):
            out.write("b.eml", b"attacker's text")
        # A temporary left by a killed run (a real file) is replaced, not refused.
        (tmp_path / "out" / "c.eml.part").write_bytes(b"half a message")
        written = out.write("c.eml", b"a whole message")
    assert written.read_bytes() == b"a whole message" and not os.path.lexists(tmp_path / "out" / "c.eml.part")
    assert _untouched(victim)


def test_a_folder_of_your_own_named_with_out_may_hold_links(tmp_path: Path, victim: Path) -> None:
    """`--out` outside the campaign is the user's: its own links stay, but none is written through."""
    folder = make_campaign(tmp_path / "c")
    site = tmp_path / "site"
    site.mkdir()
    (site / "old-issue").symlink_to(victim.parent)

    result = cli(folder, "preview", "--out", str(site))

    assert result.exit_code == 0, result.output
    assert (site / f"{ANN}.html").is_file() and not (site / f"{ANN}.html").is_symlink()
    (site / f"{ANN}.txt").unlink()
    (site / f"{ANN}.txt").symlink_to(victim)

    refused = cli(folder, "preview", "--out", str(site))

    assert refused.exit_code == 2, refused.output
    assert f"{site / ANN}.txt is a symbolic link" in refused.output.replace("\n", "")
    assert _untouched(victim)
