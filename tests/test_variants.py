"""Language variants: `announcement.<lang>.md` chosen per recipient by a CSV column."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from premailer import Premailer

from newsletter.inputs.campaign import load_campaign
from newsletter.inputs.recipients import Recipient
from newsletter.render.renderer import Renderer
from tests.conftest import invoke, write_env
from tests.smtpd import Server

RUSSIAN_SUBJECT = "Новая книга: «Развитие института цифровой таможни»"
ENGLISH_SUBJECT = "New book: Development of the Institute of Digital Customs"


def _languages(folder: Path) -> dict[str, str]:
    with (folder / "recipients.csv").open(encoding="utf-8") as stream:
        return {row["email"].lower(): row.get("lang", "") for row in csv.DictReader(stream)}


def _set_lang(folder: Path, email: str, value: str) -> None:
    path = folder / "recipients.csv"
    with path.open(encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    for row in rows:
        if row["email"] == email:
            row["lang"] = value
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_each_reader_gets_their_language(campaign: Path, smtp: Server) -> None:
    write_env(campaign, smtp.env(NEWSLETTER_UNSUBSCRIBE_URL="https://example.org/u?e={email}"))
    result = invoke("--campaign", str(campaign), "send", "--yes")
    assert result.exit_code == 0, result.output
    languages = _languages(campaign)
    received = smtp.recorder.by_recipient()
    assert sorted(received) == sorted(languages) and all(len(c) == 1 for c in received.values())
    assert sum(value == "ru" for value in languages.values()) == 4
    for address, copies in received.items():
        message = copies[0].message
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        if languages[address] == "ru":
            assert message["Subject"] == RUSSIAN_SUBJECT, address
            assert text.startswith("Здравствуйте, ") and "Скачать книгу:" in text
            assert 'lang="ru"' in html and "Скачать книгу (PDF)" in html
            assert "Отписаться" in html and "ВТамО" in html
            assert "Dear " not in text
        else:
            assert message["Subject"] == ENGLISH_SUBJECT, address
            assert text.startswith("Dear ") and 'lang="en"' in html
            assert "ВТамО" not in html
    # inherited from the default announcement: the link, the sender, the list
    olga = received["olga.smirnova@research.example.org"][0].message
    assert olga["From"] == "Sergei Mozer <sergei.mozer@example.org>"
    assert "research-announcements.example.org" in olga["List-Id"]
    assert "https://example.org/books/digital-customs-2021.pdf" in olga.get_body(("html",)).get_content()  # type: ignore[union-attr]


def test_unknown_or_missing_language_falls_back_to_the_default(campaign: Path, smtp: Server) -> None:
    _set_lang(campaign, "olga.smirnova@research.example.org", "de")  # no announcement.de.md
    _set_lang(campaign, "dmitry.sokolov@eec.example.org", " RU ")  # case and spaces do not matter
    write_env(campaign, smtp.env())
    check = invoke("--campaign", str(campaign), "check")
    assert check.exit_code == 0, check.output
    assert "recipients per language: en 8, ru 4" in check.output
    assert "'de' (1)" in check.output and "announcement.<lang>.md" in check.output
    assert invoke("--campaign", str(campaign), "send", "--yes").exit_code == 0
    received = smtp.recorder.by_recipient()
    assert received["olga.smirnova@research.example.org"][0].message["Subject"] == ENGLISH_SUBJECT
    assert received["dmitry.sokolov@eec.example.org"][0].message["Subject"] == RUSSIAN_SUBJECT
    assert received["elena.ivanova@university.example.com"][0].message["Subject"] == ENGLISH_SUBJECT  # blank


def test_an_email_only_list_still_sends_the_default(campaign: Path, smtp: Server) -> None:
    (campaign / "recipients.csv").write_text("email\nreader@example.com\n", encoding="utf-8")
    write_env(campaign, smtp.env())
    result = invoke("--campaign", str(campaign), "send", "--yes")
    assert result.exit_code == 0, result.output
    assert [m.message["Subject"] for m in smtp.messages] == [ENGLISH_SUBJECT]


def test_one_journal_for_every_language(campaign: Path, smtp: Server) -> None:
    """The campaign id is the default's: switching a reader's language after a send sends nothing new."""
    write_env(campaign, smtp.env())
    assert invoke("--campaign", str(campaign), "send", "--yes").exit_code == 0
    assert len(smtp.messages) == 12
    _set_lang(campaign, "juergen.mueller@zoll.example.com", "ru")
    again = invoke("--campaign", str(campaign), "send", "--yes")
    assert again.exit_code == 0, again.output
    assert len(smtp.messages) == 12
    assert load_campaign(campaign).variants["ru"].id == load_campaign(campaign).id == "digital-customs-2021"


def test_language_column_and_inheritance(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "announcement.html").write_text(
        "<p>{{ campaign.lang }}|{{ campaign.greeting }}|{{ campaign.signature }}</p>{{ campaign.body }}",
        encoding="utf-8",
    )
    (tmp_path / "templates" / "announcement.fr.html").write_text("<p>FR {{ campaign.greeting }}</p>", encoding="utf-8")
    (tmp_path / "announcement.md").write_text(
        '+++\nsubject = "Hello"\nlanguage_column = "Sprache"\ngreeting = "Hi"\nsignature = "Ann"\n+++\nBody.\n',
        encoding="utf-8",
    )
    (tmp_path / "announcement.de.md").write_text('+++\ngreeting = "Hallo"\n+++\n', encoding="utf-8")
    (tmp_path / "announcement.fr.md").write_text('+++\nsubject = "Bonjour"\n+++\nCorps.\n', encoding="utf-8")
    campaign = load_campaign(tmp_path)
    assert sorted(campaign.variants) == ["de", "fr"] and campaign.language_column == "sprache"
    renderer = Renderer(campaign)

    def render(lang: str) -> tuple[str, str]:
        fields = {"email": "a@example.com", "sprache": lang}
        rendered = renderer.render(Recipient(line=2, email="a@example.com", fields=fields))
        return rendered.subject, rendered.html

    subject, html = render("de")
    assert subject == "Hello" and "de|Hallo|Ann" in html and "Body." in html  # subject, body, signature inherited
    subject, html = render("fr")
    assert subject == "Bonjour" and "FR Hi" in html  # its own template
    subject, html = render("")
    assert subject == "Hello" and "|Hi|Ann" in html


def test_a_variant_may_not_change_what_all_languages_share(tmp_path: Path) -> None:
    (tmp_path / "announcement.md").write_text('+++\nsubject = "Hello"\n+++\nBody.\n', encoding="utf-8")
    (tmp_path / "announcement.ru.md").write_text('+++\nsubject = "Привет"\nid = "other"\n+++\n', encoding="utf-8")
    from newsletter.errors import CampaignError

    with pytest.raises(CampaignError) as caught:
        load_campaign(tmp_path)
    assert "announcement.ru.md" in str(caught.value) and "'id'" in str(caught.value)


@pytest.fixture
def premailer_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    runs: list[int] = []
    transform: Callable[..., str] = Premailer.transform

    def counting(self: Premailer, *args: Any, **kwargs: Any) -> str:
        runs.append(1)
        return transform(self, *args, **kwargs)

    monkeypatch.setattr(Premailer, "transform", counting)
    return runs


def test_each_variant_is_inlined_once_per_shape(campaign: Path, premailer_runs: list[int]) -> None:
    renderer = Renderer(load_campaign(campaign))
    with (campaign / "recipients.csv").open(encoding="utf-8") as stream:
        rows = [Recipient(line=n, email=row["email"], fields=row) for n, row in enumerate(csv.DictReader(stream), 2)]
    people = rows * 20  # 240 renders
    for person in people:
        renderer.render(person)
    russian = renderer.for_fields({"lang": "ru"})
    english = renderer.for_fields({"lang": "en"})
    assert russian is not renderer and english is renderer
    # the four Russian readers all have a name and an organization: one shape, one premailer run
    assert russian.inliner.stats.shapes == 1 and russian.inliner.stats.from_skeleton == 80
    assert english.inliner.stats.from_scratch == 0 and russian.inliner.stats.from_scratch == 0
    assert len(premailer_runs) == english.inliner.stats.shapes + 1 < 12
    for person in rows:
        renderer.render(person)
    assert len(premailer_runs) == english.inliner.stats.shapes + 1


def test_where_sends_to_a_subset_and_the_journal_is_shared(campaign: Path, smtp: Server) -> None:
    write_env(campaign, smtp.env())
    first = invoke("--campaign", str(campaign), "send", "--yes", "--where", "lang=RU")
    assert first.exit_code == 0, first.output
    russian = {a for a, lang in _languages(campaign).items() if lang == "ru"}
    assert set(smtp.recorder.by_recipient()) == russian and len(smtp.messages) == 4
    assert all(m.message["Subject"] == RUSSIAN_SUBJECT for m in smtp.messages)
    # two conditions, one of them negated, and the global option after the command
    second = invoke("send", "--yes", "--campaign", str(campaign), "--where", "lang!=ru", "--where", "lang=en")
    assert second.exit_code == 0, second.output
    assert len(smtp.messages) == 4 + 4
    everyone = invoke("--campaign", str(campaign), "send", "--yes")
    assert everyone.exit_code == 0, everyone.output
    received = smtp.recorder.by_recipient()
    assert len(received) == 12 and all(len(copies) == 1 for copies in received.values())  # nobody twice


def test_where_for_check_and_preview_and_its_errors(campaign: Path) -> None:
    check = invoke("--campaign", str(campaign), "check", "--where", "lang=ru")
    assert check.exit_code == 0, check.output
    assert "4 valid" in check.output and "recipients per language: ru 4" in check.output
    out = campaign / "subset"
    preview = invoke("--campaign", str(campaign), "preview", "--out", str(out), "--where", "lang=ru")
    assert preview.exit_code == 0, preview.output
    [text] = out.glob("*.txt")
    assert text.name.startswith("olga.smirnova") and text.read_text(encoding="utf-8").startswith("Здравствуйте")
    unknown = invoke("--campaign", str(campaign), "check", "--where", "country=ru")
    assert unknown.exit_code == 2 and "no column 'country'" in unknown.output and "recipients.csv:1" in unknown.output
    blank = invoke("--campaign", str(campaign), "check", "--where", "organization=")
    assert blank.exit_code == 0 and "1 valid" in blank.output  # sofia.gonzalez alone has no organization
    malformed = invoke("--campaign", str(campaign), "check", "--where", "lang")
    assert malformed.exit_code == 2 and "--where" in malformed.output


def test_check_warns_about_a_misspelt_key_in_a_variant(campaign: Path) -> None:
    path = campaign / "announcement.ru.md"
    path.write_text(path.read_text(encoding="utf-8").replace("\ntitle = ", "\ntitel = ", 1), encoding="utf-8")
    result = invoke("--campaign", str(campaign), "check")
    assert "announcement.ru.md:5: front-matter key 'titel' is not used" in result.output, result.output
    assert "did you mean 'title'?" in result.output


def test_a_variant_linking_outside_the_folder_is_refused(campaign: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.md"
    outside.write_text('+++\nsubject = "x"\n+++\nprivate notes\n', encoding="utf-8")
    (campaign / "announcement.ru.md").unlink()
    (campaign / "announcement.ru.md").symlink_to(outside)
    result = invoke("--campaign", str(campaign), "check")
    assert result.exit_code == 2 and "announcement.ru.md" in result.output and "outside" in result.output
    (campaign / "announcement.ru.md").unlink()
    (campaign / "announcement.ru.md").mkdir()
    result = invoke("--campaign", str(campaign), "check")
    assert result.exit_code == 2 and "announcement.ru.md" in result.output and "cannot be read" in result.output
