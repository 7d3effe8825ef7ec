"""Duplicate detection: the first line of every address, exact, for lists of any length."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from newsletter.inputs.recipients import DuplicateRow, Recipient, RecipientList, SeenAddresses


def test_first_sighting_is_recorded_and_later_ones_name_it() -> None:
    with SeenAddresses() as seen:
        assert seen.first_line("anna@example.org", 2) is None
        assert seen.first_line("boris@example.org", 3) is None
        assert seen.first_line("anna@example.org", 7) == 2
        assert seen.first_line("anna@example.org", 9) == 2  # the first line, not the previous one
        assert seen.first_line("boris@example.org", 12) == 3


def test_keys_are_compared_exactly() -> None:
    with SeenAddresses() as seen:
        keys = ["anna@example.org", "anna@example.or", "anna@example.org ", "änna@example.org", "ANNA@example.org"]
        for line, key in enumerate(keys, start=2):
            assert seen.first_line(key, line) is None
        for line, key in enumerate(keys, start=2):
            assert seen.first_line(key, 100) == line


def test_many_addresses_each_keep_their_own_first_line() -> None:
    count = 50_000
    with SeenAddresses() as seen:
        for line in range(count):
            assert seen.first_line(f"reader{line * 7919 % count}@example.org", line) is None
        for line in range(0, count, 97):
            assert seen.first_line(f"reader{line * 7919 % count}@example.org", count + line) == line


def test_closed_means_gone() -> None:
    seen = SeenAddresses()
    seen.first_line("anna@example.org", 2)
    seen.close()
    with pytest.raises(sqlite3.ProgrammingError):
        seen.first_line("anna@example.org", 3)


def test_the_list_reports_case_insensitive_duplicates_with_their_first_line(tmp_path: Path) -> None:
    path = tmp_path / "recipients.csv"
    path.write_text(
        "email,name\n"
        "Anna@Example.org,Anna\n"
        "boris@example.org,Boris\n"
        "anna@example.ORG,Anna again\n"
        "ÄNNA@example.org,Änna\n"
        "änna@example.org,Änna again\n"
        "BORIS@EXAMPLE.ORG,Boris again\n",
        encoding="utf-8",
    )
    rows = list(RecipientList(path))
    assert [(r.line, r.email) for r in rows if isinstance(r, Recipient)] == [
        (2, "Anna@example.org"),
        (3, "boris@example.org"),
        (5, "ÄNNA@example.org"),
    ]
    assert [(r.line, r.first_line) for r in rows if isinstance(r, DuplicateRow)] == [(4, 2), (6, 5), (7, 3)]


def test_every_pass_over_the_list_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "recipients.csv"
    path.write_text("email\nanna@example.org\nanna@example.org\n", encoding="utf-8")
    recipients = RecipientList(path)
    for _ in range(2):
        assert [type(row) for row in recipients] == [Recipient, DuplicateRow]
