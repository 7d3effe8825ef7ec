"""The content checks on real renders of the example campaign, each problem planted on purpose."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter import project as api
from newsletter.checks.message import GMAIL_CLIP_BYTES, Finding, check_campaign, scan_recipients
from tests.conftest import invoke, write_env

UNSUBSCRIBE = {
    "NEWSLETTER_UNSUBSCRIBE_URL": "https://example.org/unsubscribe?address={email}&token={token}",
    "NEWSLETTER_SECRET": "a-long-random-secret-for-tests",
}


def findings(campaign: Path) -> list[Finding]:
    return check_campaign(api.load_project(campaign, environ={}))


def codes(campaign: Path) -> list[str]:
    return [f.code for f in findings(campaign)]


def plant(campaign: Path, html: str) -> int:
    """Put `html` at the top of the content block; return its line in announcement.html."""
    template = campaign / "templates" / "announcement.html"
    lines = template.read_text(encoding="utf-8").splitlines()
    lines.insert(2, html)
    template.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 3


def test_a_configured_example_campaign_has_no_findings(campaign: Path) -> None:
    write_env(campaign, UNSUBSCRIBE)
    assert findings(campaign) == []


def test_missing_unsubscribe_header_and_link_are_warned_about(campaign: Path) -> None:
    found = {f.code: f for f in findings(campaign)}
    assert set(found) == {"unsubscribe-header", "unsubscribe-link"}
    assert "NEWSLETTER_UNSUBSCRIBE_URL" in found["unsubscribe-header"].message
    assert all(f.level == "warning" for f in found.values())


def test_unsubscribe_url_never_linked_from_the_templates(campaign: Path) -> None:
    write_env(campaign, UNSUBSCRIBE)
    base = campaign / "templates" / "base.html"
    text = base.read_text(encoding="utf-8")
    base.write_text(text.replace('<a href="{{ unsubscribe_url }}">Unsubscribe</a>', "Unsubscribe"), encoding="utf-8")
    [finding] = findings(campaign)
    assert finding.code == "unsubscribe-link"
    assert "no template links to {{ unsubscribe_url }}" in finding.message


def test_image_without_alt_points_at_its_template_line(campaign: Path) -> None:
    write_env(campaign, UNSUBSCRIBE)
    cover, decoration = '<img src="https://example.org/cover.png">', '<img src="https://example.org/x.png" alt="">'
    line = plant(campaign, cover + decoration)
    [finding] = findings(campaign)
    assert (finding.code, finding.path, finding.line) == ("image-alt", "templates/announcement.html", line)
    assert "cover.png" in finding.message  # alt="" (a decorative image) is fine


def test_http_link_and_empty_href(campaign: Path) -> None:
    write_env(campaign, UNSUBSCRIBE)
    line = plant(campaign, '<a href="http://example.org/old">old site</a> <a href="">nowhere</a>')
    found = {f.code: f for f in findings(campaign)}
    assert set(found) == {"http-link", "empty-href"}
    assert found["http-link"].location == f"templates/announcement.html:{line}"
    assert "http://example.org/old" in found["http-link"].message
    assert found["empty-href"].location == f"templates/announcement.html:{line}"
    assert '"nowhere"' in found["empty-href"].message


def test_http_link_from_the_front_matter_points_at_announcement_md(campaign: Path) -> None:
    write_env(campaign, UNSUBSCRIBE)
    announcement = campaign / "announcement.md"
    text = announcement.read_text(encoding="utf-8")
    announcement.write_text(text.replace("https://example.org/books/", "http://example.org/books/"), encoding="utf-8")
    [finding] = findings(campaign)
    assert finding.code == "http-link"
    assert finding.path == "announcement.md" and finding.line is not None
    assert "download_url" in announcement.read_text(encoding="utf-8").splitlines()[finding.line - 1]


def test_long_subject_points_at_the_subject_line(campaign: Path) -> None:
    write_env(campaign, UNSUBSCRIBE)
    announcement = campaign / "announcement.md"
    text = announcement.read_text(encoding="utf-8")
    long_subject = "New book: Development of the Institute of Digital Customs, International Legal Aspect"
    assert len(long_subject) > 78
    old = 'subject = "New book: Development of the Institute of Digital Customs"'
    assert old in text
    text = text.replace(old, f'subject = "{long_subject}"')
    announcement.write_text(text, encoding="utf-8")
    [finding] = findings(campaign)
    assert (finding.code, finding.path, finding.line) == ("subject-length", "announcement.md", 3)
    assert f"{len(long_subject)} characters" in finding.message


def test_html_over_gmail_clipping_limit(campaign: Path) -> None:
    write_env(campaign, UNSUBSCRIBE)
    plant(campaign, "<p>" + "padding text " * (GMAIL_CLIP_BYTES // 12) + "</p>")
    [finding] = findings(campaign)
    assert finding.code == "gmail-clipping"
    assert "102 KiB" in finding.message


def test_html_near_gmail_clipping_limit(campaign: Path) -> None:
    write_env(campaign, UNSUBSCRIBE)
    plant(campaign, "<p>" + "padding text " * (84 * 1024 // 13) + "</p>")
    assert codes(campaign) == ["gmail-clipping-near"]


def test_text_part_derived_from_html_is_a_note(campaign: Path) -> None:
    write_env(campaign, UNSUBSCRIBE)
    (campaign / "templates" / "announcement.txt").unlink()
    [finding] = findings(campaign)
    assert (finding.level, finding.code) == ("info", "text-derived")


def test_empty_text_part_is_a_warning(campaign: Path) -> None:
    write_env(campaign, UNSUBSCRIBE)
    (campaign / "templates" / "announcement.txt").write_text("   \n", encoding="utf-8")
    assert codes(campaign) == ["text-part"]


def test_missing_field_is_reported_once_with_template_line_and_first_recipient(campaign: Path) -> None:
    template = campaign / "templates" / "announcement.html"
    text = template.read_text(encoding="utf-8")
    template.write_text(text.replace("{{ recipient.organization }}", "{{ recipient.department }}"), encoding="utf-8")
    project = api.load_project(campaign, environ={})
    [finding] = scan_recipients(project)
    assert (finding.level, finding.code) == ("error", "missing-field")
    assert finding.path == "templates/announcement.html" and finding.line == 5
    assert "uses recipient.department, but recipients.csv has no 'department' column" in finding.message
    assert finding.recipient == "anna.petrova@academy.example.org, recipients line 2"
    # sofia.gonzalez has no organization (the if skips her); the four Russian readers use announcement.ru.html
    assert "7 recipients affected" in finding.message


def test_scan_stops_after_a_few_failures_on_a_large_list(campaign: Path) -> None:
    rows = "".join(f"user{i}@example.org,User {i},Org\n" for i in range(5000))
    (campaign / "recipients.csv").write_text("email,name,organization\n" + rows, encoding="utf-8")
    template = campaign / "templates" / "announcement.html"
    text = template.read_text(encoding="utf-8")
    template.write_text(text.replace('recipient.name or "colleague"', "recipient.title"), encoding="utf-8")
    [finding] = scan_recipients(api.load_project(campaign, environ={}), failures=20)
    assert "at least 20 recipients affected" in finding.message


@pytest.mark.parametrize("with_unsubscribe", [False, True])
def test_check_command_prints_the_warnings(campaign: Path, with_unsubscribe: bool) -> None:
    if with_unsubscribe:
        write_env(campaign, UNSUBSCRIBE)
    result = invoke("--campaign", str(campaign), "check")
    assert result.exit_code == 0, result.output
    if with_unsubscribe:
        assert "warning:" not in result.output
        assert "All checks passed." in result.output
    else:
        assert "warning: no List-Unsubscribe header" in result.output
        assert "warning: no unsubscribe link in the HTML" in result.output
        assert "All checks passed, with 2 warning(s) above." in result.output


def test_check_command_names_file_and_line_of_a_warning(campaign: Path) -> None:
    write_env(campaign, UNSUBSCRIBE)
    line = plant(campaign, '<img src="https://example.org/cover.png">')
    result = invoke("--campaign", str(campaign), "check")
    assert result.exit_code == 0, result.output
    assert f"warning: templates/announcement.html:{line}: image without alt text" in result.output
