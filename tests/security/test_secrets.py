"""Secrets: the SMTP password never shows up in any output, file, log or error text.

A sentinel password goes through a whole session in real subprocesses (help,
check, dry run, test send, send, status, preview, a refused login, a relay that
echoes the password back in its replies, bad settings); then every byte of
stdout, stderr and every file the tool wrote is searched for it, in clear and
in the base64 forms AUTH PLAIN and LOGIN put on the wire.
"""

from __future__ import annotations

import base64
import re
import ssl
import subprocess
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from itertools import chain
from pathlib import Path

import pytest
from dotenv import dotenv_values

from newsletter.delivery.transports.smtp import SMTPTransport
from newsletter.errors import SetupError
from newsletter.inputs.settings import Secret, load_settings
from tests.conftest import ROOT, write_env
from tests.security.conftest import make_campaign, run, serve

USER = "mozer"
SENTINEL = "Sentinel-Pa55-7c1d9e0b"
FORMS = [
    SENTINEL,
    base64.b64encode(SENTINEL.encode()).decode(),
    base64.b64encode(f"\0{USER}\0{SENTINEL}".encode()).decode(),
]


def _leaks(text: str | bytes) -> list[str]:
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    return [form for form in FORMS if form.encode() in data]


def _settings(port: int, ca_file: Path, password: str = SENTINEL) -> dict[str, str]:
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_SECURITY": "starttls",
        "SMTP_CA_FILE": str(ca_file),
        "SMTP_TIMEOUT": "5",
        "SMTP_USERNAME": USER,
        "SMTP_PASSWORD": password,
    }


def _files_written(folder: Path) -> dict[Path, bytes]:
    """Every file in the campaign folder except `.env`, where the password lives by design."""
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != ".env"}


def test_a_whole_session_never_shows_the_password(
    tmp_path: Path, server_tls: ssl.SSLContext, ca_file: Path
) -> None:
    sent = make_campaign(tmp_path / "sent")  # sent for real, then reported on
    other = make_campaign(tmp_path / "other")  # help, check, preview, then a bad setting
    refused = make_campaign(tmp_path / "refused")  # a relay that refuses the login
    echo = make_campaign(tmp_path / "echo")  # a relay that echoes the password in a refusal
    sessions: dict[Path, list[tuple[str, ...]]] = {
        sent: [
            ("send", "--dry-run", "--yes"),
            ("send", "--to", "me@example.org", "--yes"),
            ("send", "--yes"),
            ("status", "--csv", str(sent / "problems.csv")),
        ],
        other: [("--help",), ("check",), ("preview",)],
        refused: [("send", "--yes")],
        echo: [("send", "--yes"), ("status",)],
    }
    with ExitStack() as stack:
        good = stack.enter_context(serve(starttls=server_tls, auth={USER: SENTINEL}))
        bad = stack.enter_context(
            serve(starttls=server_tls, auth={USER: "other"}, auth_failure_message=f"535 5.7.8 bad: {SENTINEL}")
        )
        echoing = stack.enter_context(serve(starttls=server_tls, auth={USER: SENTINEL}))
        echoing.behaviour.replies["ann@example.org"] = [f"550 5.1.1 unknown user (you said {SENTINEL})"]
        for folder, server in ((sent, good), (other, good), (refused, bad), (echo, echoing)):
            write_env(folder, _settings(server.port, ca_file))

        def session(folder: Path) -> list[tuple[str, subprocess.CompletedProcess[str]]]:
            return [(f"{folder.name}: {' '.join(args)}", run(folder, *args)) for args in sessions[folder]]

        # Four independent sessions at once: each is a few process starts.
        with ThreadPoolExecutor(max_workers=4) as pool:
            outputs = dict(chain.from_iterable(pool.map(session, sessions)))
        # Bad settings next to the password: the error names the setting, not the secret.
        write_env(other, {**_settings(1, ca_file), "SMTP_PORT": "not-a-port"})
        outputs["other: check (bad port)"] = run(other, "check")

    assert outputs["sent: send --yes"].returncode == 0, outputs["sent: send --yes"].stderr
    assert len(good.messages) == 3  # the test message and the two recipients
    assert good.recorder.logins[0] == (USER, SENTINEL)  # the right password did go, over TLS
    assert outputs["refused: send --yes"].returncode == 2
    assert "authentication failed for mozer" in outputs["refused: send --yes"].stderr
    assert bad.messages == []
    assert outputs["echo: send --yes"].returncode == 1
    assert "550" in outputs["echo: status"].stdout and "********" in outputs["echo: status"].stdout
    assert outputs["other: check (bad port)"].returncode == 2
    assert "SMTP_PORT" in outputs["other: check (bad port)"].stderr

    for name, process in outputs.items():
        assert "Traceback" not in process.stderr, (name, process.stderr)
        assert _leaks(process.stdout) == [], name
        assert _leaks(process.stderr) == [], name
    written = {path: data for folder in sessions for path, data in _files_written(folder).items()}
    assert any(".newsletter" in p.parts for p in written)  # the journal
    assert any(p.suffix == ".eml" for p in written) and sent / "problems.csv" in written
    for path, data in written.items():
        assert _leaks(data) == [], path


def test_the_journal_files_hold_no_password(tmp_path: Path, server_tls: ssl.SSLContext, ca_file: Path) -> None:
    folder = make_campaign(tmp_path / "c")
    with serve(starttls=server_tls, auth={USER: SENTINEL}) as server:
        server.behaviour.replies["bob@example.org"] = [f"451 4.3.0 try later {SENTINEL}"] * 5
        write_env(folder, _settings(server.port, ca_file))
        result = run(folder, "send", "--yes", "--max-attempts", "1")
    assert result.returncode == 1
    journal = [p for p in folder.rglob("*") if p.is_file() and ".newsletter" in p.parts]
    assert journal, "the journal should be inside the campaign folder"
    for path in journal:
        assert _leaks(path.read_bytes()) == [], path


def test_reprs_and_errors_hide_the_password() -> None:
    settings = load_settings(environ={**_settings(2525, ROOT / "pyproject.toml"), "NEWSLETTER_SECRET": SENTINEL})
    assert settings.smtp is not None
    for text in (repr(settings), str(settings), repr(settings.smtp), str(settings.smtp), repr(Secret(SENTINEL))):
        assert _leaks(text) == []
    assert settings.smtp.password is not None and settings.smtp.password.reveal() == SENTINEL
    assert f"{settings.smtp.password}" == "Secret('********')"


def test_a_server_reply_echoing_the_password_is_scrubbed_from_the_error(
    server_tls: ssl.SSLContext, ca_file: Path
) -> None:
    with serve(starttls=server_tls, auth={USER: "other"}, auth_failure_message=f"535 no: {SENTINEL}") as server:
        settings = load_settings(environ=_settings(server.port, ca_file))
        assert settings.smtp is not None
        with pytest.raises(SetupError) as caught:
            SMTPTransport(settings.smtp).open()
    error = caught.value
    for text in (str(error), repr(error), error.reason, *map(str, error.args)):
        assert _leaks(text) == []
    assert "535" in str(error) and "********" in str(error)
    assert error.__cause__ is None and error.__suppress_context__  # no chained smtplib error to print


def test_a_non_ascii_password_is_refused_clearly_not_with_a_traceback(
    tmp_path: Path, server_tls: ssl.SSLContext, ca_file: Path
) -> None:
    folder = make_campaign(tmp_path / "c")
    password = "pässwörd-" + SENTINEL
    with serve(starttls=server_tls, auth={USER: password}) as server:
        write_env(folder, _settings(server.port, ca_file, password))
        result = run(folder, "send", "--yes")
    assert result.returncode == 2
    assert "must be ASCII" in result.stderr and "Traceback" not in result.stderr
    assert "ä" not in result.stderr and "ö" not in result.stderr and _leaks(result.stderr) == []


def test_smtplib_debug_output_is_never_switched_on() -> None:
    """Its trace prints the AUTH command, which carries the password in base64."""
    source = ROOT / "src" / "newsletter"
    offenders = [
        path
        for path in source.rglob("*.py")
        if re.search(r"\.set_debuglevel\(|\.debuglevel\s*=", path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_env_is_ignored_by_git_and_the_example_has_no_values() -> None:
    ignored = [line.strip() for line in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()]
    assert ".env" in ignored or "/.env" in ignored
    example = ROOT / ".env.example"
    values = dotenv_values(example)
    assert {k: v for k, v in values.items() if v} == {}, "every setting in .env.example must be commented out"
    assert "SMTP_PASSWORD" in example.read_text(encoding="utf-8")  # documented, not filled in


def test_init_writes_no_env_file_with_values(tmp_path: Path) -> None:
    target = tmp_path / "new"
    process = run(tmp_path, "init", str(target))
    assert process.returncode == 0, process.stderr
    assert not (target / ".env").exists()
    assert {k: v for k, v in dotenv_values(target / ".env.example").items() if v} == {}
