"""The command line as a user meets it: help, init, preview, check, send to the outbox, errors."""

from __future__ import annotations

import email
import subprocess
import sys
from email import policy
from pathlib import Path

from tests.conftest import break_template, invoke, write_env


def test_help_lists_every_command() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("preview", "check", "send", "status", "init", "unsubscribe"):
        assert command in result.output


def test_python_dash_m_runs_the_same_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", "--version"], capture_output=True, text=True, check=True, timeout=60
    )
    assert "version" in done.stdout


def test_global_options_work_before_or_after_the_command(campaign: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text("email,name,organization\nsolo@example.org,Solo,\n", encoding="utf-8")
    before = invoke("--campaign", str(campaign), "--recipients", str(other), "send", "--dry-run")
    after = invoke("send", "--dry-run", "--campaign", str(campaign), "--recipients", str(other))
    assert before.exit_code == after.exit_code == 0
    assert "1 message(s) would be sent" in before.output
    assert "1 message(s) would be sent" in after.output


def test_outbox_gets_one_multipart_message_per_unique_valid_recipient(
    campaign: Path, example_addresses: list[str]
) -> None:
    result = invoke("--campaign", str(campaign), "send")
    assert result.exit_code == 0, result.output
    assert "outbox" in result.output
    files = sorted((campaign / "outbox").glob("*.eml"))
    assert len(files) == len(set(a.lower() for a in example_addresses))
    for path in files:
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        assert message.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
        assert message["To"].addresses[0].addr_spec.lower() + ".eml" == path.name.lower()


def test_unusual_addresses_get_outbox_files_of_their_own(campaign: Path) -> None:
    """`a#b@`, `a&b@` and `a_b@` once shared one file name: two of three messages were lost."""
    addresses = ["a#b@example.org", "a&b@example.org", "a_b@example.org", "a%23b@example.org", "иван@пример.рф"]
    rows = "".join(f"{a},Reader,\n" for a in addresses)
    (campaign / "recipients.csv").write_text("email,name,organization\n" + rows, encoding="utf-8")
    result = invoke("--campaign", str(campaign), "send")
    assert result.exit_code == 0, result.output
    files = sorted((campaign / "outbox").glob("*.eml"))
    assert len(files) == len(addresses)
    delivered = {
        email.message_from_bytes(path.read_bytes(), policy=policy.default)["To"].addresses[0].addr_spec
        for path in files
    }
    assert len(delivered) == len(addresses)


def test_duplicates_are_sent_once_and_reported(campaign: Path) -> None:
    (campaign / "recipients.csv").write_text(
        "Email,Name,Organization\nann@example.org,Ann,\nbob@example.org,Bob,\nANN@example.org,Ann again,\n",
        encoding="utf-8",
    )
    result = invoke("--campaign", str(campaign), "send")
    assert result.exit_code == 0
    assert "recipients.csv:4: duplicate of line 2 (ANN@example.org); sent once" in result.output
    assert len(list((campaign / "outbox").glob("*.eml"))) == 2


def test_invalid_rows_stop_the_run_unless_skipped(campaign: Path) -> None:
    (campaign / "recipients.csv").write_text(
        "email,name,organization\nann@example.org,Ann,\nbob@,Bob,\n", encoding="utf-8"
    )
    result = invoke("--campaign", str(campaign), "send")
    assert result.exit_code == 2
    assert "recipients.csv:3: field 'email': invalid address 'bob@'" in result.output
    assert not (campaign / "outbox").exists()
    skipped = invoke("--campaign", str(campaign), "send", "--skip-invalid")
    assert skipped.exit_code == 0
    assert len(list((campaign / "outbox").glob("*.eml"))) == 1


def test_missing_field_stops_preflight_with_template_file_and_line(campaign: Path) -> None:
    (campaign / "recipients.csv").write_text("email\nann@example.org\n", encoding="utf-8")
    template = campaign / "templates" / "announcement.html"
    text = template.read_text(encoding="utf-8")
    template.write_text(text.replace('recipient.name or "colleague"', "recipient.name"), encoding="utf-8")
    result = invoke("--campaign", str(campaign), "send")
    assert result.exit_code == 2
    assert "templates/announcement.html:3:" in result.output
    assert "recipients line 2" in result.output
    assert not (campaign / "outbox").exists()


def test_template_syntax_error_names_file_and_line(campaign: Path) -> None:
    break_template(campaign, 5)
    result = invoke("--campaign", str(campaign), "check")
    assert result.exit_code == 2
    assert "announcement.html:5: template syntax error" in result.output


def test_check_summarises_a_good_campaign(campaign: Path) -> None:
    result = invoke("--campaign", str(campaign), "check")
    assert result.exit_code == 0, result.output
    assert "12 valid, 0 invalid, 0 duplicate" in result.output
    assert "outbox" in result.output


def test_preview_writes_html_text_and_eml_for_the_chosen_recipient(campaign: Path, tmp_path: Path) -> None:
    out = tmp_path / "preview"
    result = invoke(
        "--campaign", str(campaign), "preview", "--recipient", "ANNA.PETROVA@academy.example.org", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    html = (out / "anna.petrova@academy.example.org.html").read_text(encoding="utf-8")
    assert "Анна Петрова" in html and 'style="' in html and "<style>" in html  # inlined; media query kept
    text = (out / "anna.petrova@academy.example.org.txt").read_text(encoding="utf-8")
    assert text.startswith("Dear Анна Петрова,")
    message = email.message_from_bytes(
        (out / "anna.petrova@academy.example.org.eml").read_bytes(), policy=policy.default
    )
    assert message["To"].addresses[0].display_name == "Анна Петрова"


def test_preview_of_an_unknown_recipient_is_a_clear_error(campaign: Path) -> None:
    result = invoke("--campaign", str(campaign), "preview", "--recipient", "nobody@example.org")
    assert result.exit_code == 2
    assert "no recipient 'nobody@example.org' in the list" in result.output


def test_smtp_send_needs_confirmation_without_a_terminal(campaign: Path) -> None:
    write_env(campaign, {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": "9", "SMTP_SECURITY": "none"})
    result = invoke("--campaign", str(campaign), "send")
    assert result.exit_code == 2
    assert "add --yes" in result.output


def test_bad_setting_names_the_setting_and_its_source(campaign: Path) -> None:
    write_env(campaign, {"SMTP_HOST": "mail.example.org", "SMTP_PORT": "twenty-five"})
    result = invoke("--campaign", str(campaign), "check")
    assert result.exit_code == 2
    assert "SMTP_PORT (from .env): expected a whole number, got 'twenty-five'" in result.output
    write_env(campaign, {"SMTP_HOST": "mail.example.org", "SMTP_SECURITY": "ssl"})
    result = invoke("--campaign", str(campaign), "check")
    assert "SMTP_SECURITY (from .env): expected starttls | tls | none, got 'ssl'" in result.output


def test_flags_beat_environment_beat_env_file(campaign: Path, monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    write_env(campaign, {"NEWSLETTER_CONNECTIONS": "3", "NEWSLETTER_FROM": "File <file@example.org>"})
    monkeypatch.setenv("NEWSLETTER_FROM", "Env <env@example.org>")
    result = invoke("--campaign", str(campaign), "check")
    assert "env@example.org" in result.output
    from newsletter.project import load_project

    project = load_project(campaign, environ={"NEWSLETTER_CONNECTIONS": "5"}, overrides={"NEWSLETTER_CONNECTIONS": "7"})
    assert project.settings.connections == 7
    project = load_project(campaign, environ={"NEWSLETTER_CONNECTIONS": "5"})
    assert project.settings.connections == 5
    project = load_project(campaign, environ={})
    assert project.settings.connections == 3


def test_explicit_env_file_must_exist(campaign: Path) -> None:
    result = invoke("--campaign", str(campaign), "--env-file", str(campaign / "missing.env"), "check")
    assert result.exit_code == 2
    assert "env file not found" in result.output


def test_init_writes_a_working_campaign_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "mine"
    result = invoke("init", str(target))
    assert result.exit_code == 0, result.output
    assert (target / "announcement.md").is_file() and (target / "templates" / "base.html").is_file()
    assert (target / ".env.example").is_file()
    dry = invoke("--campaign", str(target), "--recipients", str(target / "recipients.example.csv"), "send", "--dry-run")
    assert dry.exit_code == 0 and "12 message(s) would be sent" in dry.output
    again = invoke("init", str(target))
    assert again.exit_code == 2 and "already exists" in again.output


def test_missing_announcement_suggests_init(tmp_path: Path) -> None:
    result = invoke("--campaign", str(tmp_path), "check")
    assert result.exit_code == 2
    assert "newsletter init" in result.output


def test_status_before_any_send(campaign: Path) -> None:
    result = invoke("--campaign", str(campaign), "status")
    assert result.exit_code == 0
    assert "pending" in result.output


def test_cli_defaults_match_the_unsubscribe_server() -> None:
    from newsletter.cli import main
    from newsletter.web import unsubscribe as unsubscribe_server

    defaults = {param.name: param.default for param in main.commands["unsubscribe-server"].params}
    assert (defaults["host"], defaults["port"]) == (
        unsubscribe_server.DEFAULT_HOST,
        unsubscribe_server.DEFAULT_PORT,
    )


def test_help_does_not_load_the_rendering_stack() -> None:
    """`newsletter --help` answers fast because Jinja, premailer and lxml load on first use."""
    heavy = "{'premailer', 'jinja2', 'lxml', 'email_validator'}"
    code = f"import sys, newsletter.cli; print(sorted({heavy} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"


def test_a_list_with_no_valid_recipient_is_an_error_not_a_success(campaign: Path) -> None:
    (campaign / "recipients.csv").write_text("email,name,organization\n", encoding="utf-8")
    for command in ("check", "send"):
        result = invoke("--campaign", str(campaign), command)
        assert result.exit_code == 2, command
        assert "recipients.csv: no valid recipient in the list" in result.output
    assert not (campaign / "outbox").exists()
