"""OAuth secrets: no access token, refresh token or XOAUTH2 string in any output or file.

Sentinel tokens go through whole sessions in real subprocesses: a token command
(sent, checked, reported on, refused by the relay, failing while it echoes the
token, printing junk around it) and a stored sign-in renewed against a local HTTPS
token endpoint (renewed and rotated; refused by an endpoint that echoes the
refresh token). Every byte of stdout, stderr and every file in the campaign
folders is then searched for each token in clear, in base64, and inside the
base64 XOAUTH2 string that went over the wire.
"""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import pytest

from newsletter.delivery.transports.redact import xoauth2_string
from newsletter.oauth.store import FileStore, Login, config_dir
from tests.conftest import write_env
from tests.oauthd import token_command, token_endpoint, xoauth2_server
from tests.security.conftest import cli, make_campaign, run

USER = "editor@example.org"
ACCESS = "Sentinel-Access-Token-5d0c93aa71"
REFRESH = "Sentinel-Refresh-Token-0be1f4c2"
ROTATED = "Sentinel-Rotated-Refresh-9e77ab"


def _forms(*secrets: str) -> list[str]:
    forms: list[str] = []
    for secret in secrets:
        forms += [secret, base64.b64encode(secret.encode()).decode(), xoauth2_string(USER, secret).decode()]
    return forms


FORMS = _forms(ACCESS, REFRESH, ROTATED)


def _leaks(data: str | bytes) -> list[str]:
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    return [form for form in FORMS if form.encode() in raw]


def _settings_file(path: Path, port: int, ca_file: Path, **extra: str) -> Path:
    """The settings, named with --env-file (a folder's own .env may not name a command)."""
    values = {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_SECURITY": "starttls",
        "SMTP_CA_FILE": str(ca_file),
        "SMTP_TIMEOUT": "5",
        "SMTP_USERNAME": USER,
        "SMTP_AUTH": "xoauth2",
        **extra,
    }
    path.write_text("".join(f"{key}='{value}'\n" for key, value in values.items()), encoding="utf-8")
    return path


def _campaign_files(*folders: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for folder in folders for p in folder.rglob("*") if p.is_file()}


def test_a_token_from_the_command_never_shows(tmp_path: Path, server_tls: ssl.SSLContext, ca_file: Path) -> None:
    sent, refused, failing, junk = (make_campaign(tmp_path / name) for name in ("sent", "refused", "fail", "junk"))
    good_command = token_command(tmp_path / "cmd-good", [ACCESS])
    # Fails after printing the token to both streams: the error shown must not carry it.
    failing_command = token_command(
        tmp_path / "cmd-fail",
        [ACCESS],
        extra=f"print({ACCESS!r}); sys.stderr.write('cannot renew ' + {ACCESS!r} + '\\n'); sys.exit(1)",
    )
    junk_command = token_command(tmp_path / "cmd-junk", [f"token: {ACCESS} (valid 1h)"])
    outputs = {}
    with xoauth2_server(server_tls, ca_file, user=USER, tokens={ACCESS: None}) as good, xoauth2_server(
        server_tls, ca_file, user=USER, tokens={"another": None}
    ) as bad:
        env = {
            sent: _settings_file(tmp_path / "sent.env", good.port, ca_file, SMTP_OAUTH_TOKEN_COMMAND=good_command),
            refused: _settings_file(tmp_path / "ref.env", bad.port, ca_file, SMTP_OAUTH_TOKEN_COMMAND=good_command),
            failing: _settings_file(
                tmp_path / "fail.env", good.port, ca_file, SMTP_OAUTH_TOKEN_COMMAND=failing_command
            ),
            junk: _settings_file(tmp_path / "junk.env", good.port, ca_file, SMTP_OAUTH_TOKEN_COMMAND=junk_command),
        }
        sessions = {
            sent: [("check", "--smtp"), ("send", "--to", "me@example.org", "--yes"), ("send", "--yes"), ("status",)],
            refused: [("send", "--yes"), ("check", "--smtp")],
            failing: [("send", "--yes")],
            junk: [("send", "--yes")],
        }
        for folder, commands in sessions.items():
            for args in commands:
                outputs[f"{folder.name}: {' '.join(args)}"] = run(folder, "--env-file", str(env[folder]), *args)
    assert outputs["sent: send --yes"].returncode == 0, outputs["sent: send --yes"].stderr
    assert len(good.messages) == 3 and ACCESS in good.recorder.attempts  # the token did go, over TLS
    assert "XOAUTH2 as editor@example.org" in " ".join(outputs["sent: check --smtp"].stdout.split())
    assert outputs["refused: send --yes"].returncode == 2 and bad.messages == []
    assert "XOAUTH2 login refused" in outputs["refused: send --yes"].stderr
    assert outputs["fail: send --yes"].returncode == 2
    assert "failed with exit code 1: cannot renew ********" in outputs["fail: send --yes"].stderr
    assert outputs["junk: send --yes"].returncode == 2
    assert "more than one word" in outputs["junk: send --yes"].stderr
    for name, process in outputs.items():
        assert "Traceback" not in process.stderr, (name, process.stderr)
        assert _leaks(process.stdout) == [], name
        assert _leaks(process.stderr) == [], name
    files = _campaign_files(*sessions)
    assert any(".newsletter" in path.parts for path in files)  # the journal was searched too
    for path, data in files.items():
        assert _leaks(data) == [], path


def test_a_stored_sign_in_never_shows_and_stays_out_of_the_campaign_folder(
    tmp_path: Path, server_tls: ssl.SSLContext, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # the child trusts the local token endpoint
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")  # the file store
    store = FileStore(config_dir() / "logins")
    sent, revoked = make_campaign(tmp_path / "sent"), make_campaign(tmp_path / "revoked")
    answers = {
        "/ok/token": [(200, {"access_token": ACCESS, "expires_in": 3600, "refresh_token": ROTATED})],
        "/revoked/token": [(400, {"error": "invalid_grant", "error_description": f"{REFRESH} was revoked"})],
    }
    outputs = {}
    with token_endpoint(server_tls, answers) as endpoint, xoauth2_server(
        server_tls, ca_file, user=USER, tokens={ACCESS: None}
    ) as server:
        for folder, path in ((sent, "/ok/token"), (revoked, "/revoked/token")):
            env = _settings_file(tmp_path / f"{folder.name}.env", server.port, ca_file, SMTP_OAUTH_PROVIDER="google")
            store.save(Login("google", USER, endpoint.url(path), "client-id", REFRESH, client_secret="cs"))
            for args in (("send", "--yes"), ("status",), ("check", "--smtp")):
                outputs[f"{folder.name}: {' '.join(args)}"] = run(folder, "--env-file", str(env), *args)
            if folder is sent:
                saved = store.load("google", USER)
                assert saved is not None and saved.refresh_token == ROTATED  # rotated, and kept
    assert outputs["sent: send --yes"].returncode == 0, outputs["sent: send --yes"].stderr
    assert len(server.messages) == 2
    assert endpoint.requests[0][1]["refresh_token"] == REFRESH
    revoked_send = outputs["revoked: send --yes"]
    assert revoked_send.returncode == 2 and "invalid_grant" in revoked_send.stderr
    assert "run `newsletter login google` again" in revoked_send.stderr
    for name, process in outputs.items():
        assert "Traceback" not in process.stderr, (name, process.stderr)
        assert _leaks(process.stdout) == [], name
        assert _leaks(process.stderr) == [], name
    for path, data in _campaign_files(sent, revoked).items():
        assert _leaks(data) == [], path
    stored = store.path("google", USER)
    assert (stored.stat().st_mode & 0o077) == 0 and REFRESH.encode() in stored.read_bytes()


def test_a_campaign_folders_own_env_cannot_name_a_token_command(tmp_path: Path) -> None:
    """A folder from someone else would otherwise run their program on `check`."""
    folder = make_campaign(tmp_path / "c")
    marker = tmp_path / "ran"
    command = token_command(tmp_path / "cmd", ["x"], extra=f"pathlib.Path({str(marker)!r}).write_text('ran')")
    write_env(
        folder,
        {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_USERNAME": USER,
            "SMTP_AUTH": "xoauth2",
            "SMTP_OAUTH_TOKEN_COMMAND": f"'{command}'",
        },
    )
    result = cli(folder, "check", "--smtp")
    assert result.exit_code == 2, result.output
    assert "SMTP_OAUTH_TOKEN_COMMAND" in result.output and "would run a command" in result.output
    assert not marker.exists()


def test_a_campaign_folders_own_env_cannot_send_your_sign_in_to_its_relay(
    tmp_path: Path, server_tls: ssl.SSLContext, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Your stored sign-in is yours: a folder's .env may not pick the relay its access token goes to."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    folder = make_campaign(tmp_path / "c")
    answers = {"/token": [(200, {"access_token": ACCESS, "expires_in": 3600})]}
    with token_endpoint(server_tls, answers) as endpoint, xoauth2_server(
        server_tls, ca_file, user=USER, tokens={ACCESS: None}
    ) as server:
        FileStore(config_dir() / "logins").save(Login("google", USER, endpoint.url("/token"), "cid", REFRESH))
        write_env(
            folder,
            {
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(server.port),
                "SMTP_USERNAME": USER,
                "SMTP_AUTH": "xoauth2",
                "SMTP_OAUTH_PROVIDER": "google",
            },
        )
        result = cli(folder, "send", "--yes")
    assert result.exit_code == 2, result.output
    assert "SMTP_HOST=127.0.0.1" in result.output and "would hand your OAuth access token" in result.output
    assert endpoint.requests == [] and server.recorder.attempts == [] and server.messages == []
