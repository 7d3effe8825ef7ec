"""The first hour of a newcomer: each stumble they met, replayed with the real command line.

A fresh `init` or this repository's own folder, a list with nothing but an `email`
column, `newsletter` typed as the README types it: every step works, or says in
plain words what to do.
"""

from __future__ import annotations

import email
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
from email import policy
from pathlib import Path

import pytest

from tests.conftest import ROOT, invoke, write_env
from tests.smtpd import Server

EMAIL_ONLY = "email\nann@example.org\nbob@example.org\n"
BIN = Path(sys.executable).parent  # the virtualenv's bin: `newsletter` lives beside python
README_TEXT = (ROOT / "README.md").read_text(encoding="utf-8")


def _texts(outbox: Path) -> dict[str, str]:
    """Each outbox message's plain-text part, by file name."""
    texts = {}
    for path in sorted(outbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        part = message.get_body(("plain",))
        assert part is not None
        texts[path.name] = part.get_content().replace("\r\n", "\n")
    return texts


def _starter(tmp_path: Path, which: str) -> Path:
    """The campaign `newsletter init` writes, or a copy of this repository's own folder."""
    if which == "init":
        folder = tmp_path / "mine"
        assert invoke("init", str(folder)).exit_code == 0
        return folder
    folder = tmp_path / "root"
    folder.mkdir()
    for name in ("announcement.md", "templates", "recipients.example.csv", ".env.example"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, folder / name)
    return folder


# -- 1. the starter and an email-only list ---------------------------------------------


@pytest.mark.parametrize("which", ["init", "repository"])
def test_the_starter_checks_and_sends_an_email_only_list(tmp_path: Path, which: str) -> None:
    folder = _starter(tmp_path, which)
    (folder / "recipients.csv").write_text(EMAIL_ONLY, encoding="utf-8")
    checked = invoke("--campaign", str(folder), "check")
    assert checked.exit_code == 0, checked.output
    assert "All checks passed" in checked.output
    sent = invoke("--campaign", str(folder), "send")
    assert sent.exit_code == 0, sent.output
    texts = _texts(folder / "outbox")
    assert sorted(texts) == ["ann@example.org.eml", "bob@example.org.eml"]
    for text in texts.values():
        assert text.startswith("Dear colleague,\n")
        assert "colleagues at" not in text  # the organization sentence is skipped, not left half-empty


def test_a_missing_column_printed_without_fallback_is_our_error(campaign: Path) -> None:
    (campaign / "recipients.csv").write_text(EMAIL_ONLY, encoding="utf-8")
    template = campaign / "templates" / "announcement.html"
    template.write_text(
        template.read_text(encoding="utf-8").replace('{{ recipient.name or "colleague" }}', "{{ recipient.name }}"),
        encoding="utf-8",
    )
    for command in ("check", "send"):
        result = invoke("--campaign", str(campaign), command)
        assert result.exit_code == 2, result.output
        assert (
            "templates/announcement.html:3: uses recipient.name, but recipients.csv has no 'name' column "
            "(its columns: email); add the column, or write {{ recipient.name or \"colleague\" }}"
        ) in result.output
        assert "dict object" not in result.output
    assert not (campaign / "outbox").exists()


def test_a_named_list_is_named_in_the_error(campaign: Path, tmp_path: Path) -> None:
    other = tmp_path / "colleagues.csv"
    other.write_text("email,dept\nann@example.org,Law\n", encoding="utf-8")
    template = campaign / "templates" / "announcement.txt"
    template.write_text(template.read_text(encoding="utf-8") + "{{ recipient.team }}\n", encoding="utf-8")
    result = invoke("--campaign", str(campaign), "--recipients", str(other), "check")
    assert result.exit_code == 2
    assert "uses recipient.team, but colleagues.csv has no 'team' column (its columns: email, dept)" in result.output


def test_fallbacks_catch_a_missing_column_but_a_misspelt_variable_is_still_an_error(campaign: Path) -> None:
    (campaign / "recipients.csv").write_text(EMAIL_ONLY, encoding="utf-8")
    template = campaign / "templates" / "announcement.txt"
    good = template.read_text(encoding="utf-8")
    template.write_text(
        good + '{{ recipient.title | default("Dr") }} {{ recipient.city or "-" }}'
        "{% if recipient.vip is defined %}VIP{% endif %}\n",
        encoding="utf-8",
    )
    assert invoke("--campaign", str(campaign), "send").exit_code == 0
    assert all(text.rstrip().endswith("Dr -") for text in _texts(campaign / "outbox").values())
    template.write_text(good.replace("recipient.name or", "recipeint.name or"), encoding="utf-8")
    result = invoke("--campaign", str(campaign), "check")
    assert result.exit_code == 2
    assert "templates/announcement.txt:5: undefined value: no name 'recipeint'" in result.output


def test_a_missing_front_matter_key_names_announcement_md(campaign: Path) -> None:
    template = campaign / "templates" / "base.html"
    template.write_text(
        template.read_text(encoding="utf-8").replace("{{ campaign.publisher }}", "{{ campaign.publsher }}"),
        encoding="utf-8",
    )
    result = invoke("--campaign", str(campaign), "check")
    assert result.exit_code == 2
    assert "templates/base.html:" in result.output
    assert "uses campaign.publsher, but the front matter of announcement.md has no 'publsher' key" in result.output
    assert "largest HTML" not in result.output  # nothing rendered: no "0.0 KB"


# -- 2. the repository root after the quickstart --------------------------------------


@pytest.mark.parametrize("which", ["init", "repository"])
def test_check_and_preview_use_the_example_list_and_say_so(tmp_path: Path, which: str) -> None:
    folder = _starter(tmp_path, which)
    for command in (["check"], ["preview"]):
        result = invoke("--campaign", str(folder), *command)
        assert result.exit_code == 0, result.output
        assert "using recipients.example.csv, the example list" in result.output
        assert "--recipients FILE" in result.output
    assert (folder / "preview" / "anna.petrova@academy.example.org.eml").is_file()


def test_send_to_a_relay_refuses_the_example_list_unless_it_is_named(campaign: Path, smtp: Server) -> None:
    (campaign / "recipients.csv").unlink()
    write_env(campaign, smtp.env())
    refused = invoke("--campaign", str(campaign), "send", "--yes")
    assert refused.exit_code == 2
    assert "recipients.csv: file not found; recipients.example.csv beside it holds example addresses" in refused.output
    assert "--recipients FILE" in refused.output
    assert smtp.messages == []
    named = invoke(
        "--campaign", str(campaign), "--recipients", str(campaign / "recipients.example.csv"), "send", "--yes"
    )
    assert named.exit_code == 0, named.output
    assert len(smtp.messages) == 12


def test_without_any_list_the_error_says_what_to_do(campaign: Path) -> None:
    (campaign / "recipients.csv").unlink()
    (campaign / "recipients.example.csv").unlink()
    for command in ("check", "preview", "send"):
        result = invoke("--campaign", str(campaign), command)
        assert result.exit_code == 2
        assert "recipients.csv: file not found" in result.output
        assert "header row with an `email` column" in result.output and "--recipients FILE" in result.output


def test_readme_tells_how_check_finds_the_list() -> None:
    section = README_TEXT.split("## Checking and previewing", 1)[1].split("\n## ", 1)[0]
    assert "recipients.example.csv" in section and "--recipients" in section


# -- 3. "Your own campaign", as written, with an email-only list ----------------------


def test_your_own_campaign_puts_newsletter_on_path_first() -> None:
    section = README_TEXT.split("## Your own campaign", 1)[1].split("\n## ", 1)[0]
    steps = re.findall(r"```sh\n(.*?)\n```", section, re.S)[0]
    first = steps.splitlines()[0]
    assert first.startswith(". .venv/bin/activate") and "pipx install ." in first


def test_the_your_own_campaign_steps_run_with_an_email_only_list(tmp_path: Path) -> None:
    """Every step of the README's block, in a shell, in an empty folder: none fails."""
    section = README_TEXT.split("## Your own campaign", 1)[1].split("\n## ", 1)[0]
    steps = [line.split("  #")[0].strip() for line in re.findall(r"```sh\n(.*?)\n```", section, re.S)[0].splitlines()]
    script = []
    for step in steps:
        if step.startswith(". .venv/bin/activate"):
            continue  # the PATH below is what activating does
        if "--serve" in step:
            continue  # a server runs until stopped; tests/test_preview_server.py covers it
        script.append(step)
        if step.startswith("cp recipients.example.csv recipients.csv"):
            script.append(f"printf {shlex.quote(EMAIL_ONLY)} > recipients.csv  # the newcomer's own list")
    env = {"PATH": f"{BIN}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": str(tmp_path), "LC_ALL": "C.UTF-8"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    outbox = tmp_path / "my-announcement" / "outbox"
    texts = _texts(outbox)
    assert {"ann@example.org.eml", "bob@example.org.eml"} <= set(texts)
    assert "sent" in done.stdout and "2 sent" in done.stdout


# -- 5. init's .gitignore and next steps ----------------------------------------------


def _ignored(folder: Path, names: list[str]) -> set[str]:
    done = subprocess.run(
        ["git", "-C", str(folder), "check-ignore", "--no-index", *names],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return set(done.stdout.split())


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_init_writes_a_gitignore_that_keeps_secrets_and_the_list_out(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    result = invoke("init", str(folder))
    assert result.exit_code == 0
    assert f"wrote {folder / '.gitignore'}" in result.output
    subprocess.run(["git", "init", "-q", str(folder)], check=True, timeout=30)
    private = [".env", "recipients.csv", "outbox/ann@example.org.eml", "preview/x.html", ".newsletter/journal.sqlite3"]
    kept = ["unsubscribed.csv", "announcement.md", "templates/base.html", ".env.example", "recipients.example.csv"]
    assert _ignored(folder, private + kept) == set(private)


def test_init_extends_an_existing_gitignore_and_refuses_only_an_existing_campaign(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / ".gitignore").write_text("node_modules/\n/.env", encoding="utf-8")
    (folder / "notes.txt").write_text("mine\n", encoding="utf-8")
    assert invoke("init", str(folder)).exit_code == 0
    lines = (folder / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert lines[:2] == ["node_modules/", "/.env"]
    assert ".env" not in lines[2:] and {"recipients.csv", "outbox/", "preview/", ".newsletter/"} <= set(lines)
    assert (folder / "notes.txt").read_text(encoding="utf-8") == "mine\n"
    again = invoke("init", str(folder))
    assert again.exit_code == 2 and "already exists" in again.output


def test_init_next_steps_name_a_newsletter_that_runs(tmp_path: Path) -> None:
    """Not activated: the next steps must not say a bare `newsletter` the shell cannot find."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [str(BIN / "newsletter"), "init", "mine"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    [next_line] = [line for line in done.stdout.splitlines() if line.startswith("Next:")]
    command = shlex.split(next_line.rsplit(";", 1)[1])
    assert command[-1] == "check" and Path(command[0]).is_absolute()
    ran = subprocess.run(command, cwd=tmp_path / "mine", env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr


# -- 6. one rate, one size style, whole help lines ------------------------------------


def test_the_bar_the_summary_and_status_give_one_rate(campaign: Path, smtp: Server) -> None:
    rows = "".join(f"u{i}@example.org\n" for i in range(60))
    (campaign / "recipients.csv").write_text("email\n" + rows, encoding="utf-8")
    write_env(campaign, smtp.env())
    sent = invoke("--campaign", str(campaign), "send", "--yes", "--rate", "40")
    assert sent.exit_code == 0, sent.output
    [bar] = [line for line in sent.output.splitlines() if line.startswith("sending")]
    [summary] = [line for line in sent.output.splitlines() if line.startswith("60 sent")]
    status = invoke("--campaign", str(campaign), "status")
    [last] = [line for line in status.output.splitlines() if line.startswith("Last run")]
    assert "60 sent in" in last
    rates = [float(re.findall(r"([\d,.]+)/s", line)[-1].replace(",", "")) for line in (bar, summary, last)]
    assert max(rates) <= 44  # --rate 40: the sending phase, not a burst or a half-second window
    assert max(rates) - min(rates) <= 0.1 * max(rates), (bar, summary, last)


def test_sizes_are_said_one_way(campaign: Path) -> None:
    (campaign / "book.pdf").write_bytes(b"%PDF-1.4\n" + bytes(10_240_000 - 9))
    path = campaign / "announcement.md"
    path.write_text(path.read_text(encoding="utf-8").replace("+++\n\n", 'attachments = ["book.pdf"]\n+++\n\n', 1))
    result = invoke("--campaign", str(campaign), "check")
    assert "9.8 MiB × 12 recipients" in result.output  # 10,240,000 bytes, not "10000.0 KB"
    assert not re.search(r"\d (?:KB|MB|GB)\b", result.output.replace("20-25 MB", "")), result.output  # providers own it
    [table] = re.findall(r"largest message\s+(\d[\d,]*\.\d MiB)", result.output)
    assert f"the largest message is {table}:" in result.output  # the table and the warning agree


def test_help_says_each_command_in_a_whole_sentence() -> None:
    result = invoke("--help")
    commands = result.output.split("Commands:", 1)[1]
    assert "..." not in commands
    for name in ("check", "completion", "dkim", "init", "login", "logout", "preview", "send", "status", "unsubscribe"):
        assert re.search(rf"^  {re.escape(name)}\s+\S", commands, re.M), name


# -- 7. a preview server in the background stops when asked ----------------------------


def _first_line(process: subprocess.Popen[str], seconds: float) -> str:
    """The process's first line of output, or "" after `seconds`: never a wait without end."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=seconds):
            return ""
    return process.stdout.readline()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a shell does to a job started with `&`


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_background_preview_server_stops_on_sigint_and_sigterm(campaign: Path, sig: signal.Signals) -> None:
    command = [str(BIN / "newsletter"), "--campaign", str(campaign), "preview", "--serve", "--port", "0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, preexec_fn=_ignore_sigint
    ) as process:
        try:
            first = _first_line(process, 60)
            assert "http://127.0.0.1:" in first, first
            process.send_signal(sig)
            output, _ = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate(timeout=15)
            pytest.fail(f"the server did not stop on {sig.name}:\n{output}")
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=15)
    assert process.returncode == 0, output
    assert "Stopped." in output and "Traceback" not in output
