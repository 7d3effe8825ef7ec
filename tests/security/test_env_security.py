"""Issue 13, finding 5: a campaign folder's own `.env` may not lower the transport security.

With the user's relay and password in the environment, a shipped `.env` holding
`SMTP_SECURITY=none` and `SMTP_ALLOW_PLAINTEXT_AUTH=any` sent the password in clear
text. Such settings (and a CA file that came with the folder) are honoured only from
the environment or an env file the user names with `--env-file`.
"""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path

import pytest

from tests.conftest import write_env
from tests.security.conftest import cli, make_campaign, serve

USER, PASSWORD = "mozer", "correct horse battery"

# The servers here take AUTH without TLS on purpose: the client must be the one that refuses.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_campaign(tmp_path / "c")


def _user_relay(monkeypatch: pytest.MonkeyPatch, port: int, **extra: str) -> None:
    """The user's own settings, in the process environment."""
    for name, value in {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_TIMEOUT": "5",
        "SMTP_USERNAME": USER,
        "SMTP_PASSWORD": PASSWORD,
        **extra,
    }.items():
        monkeypatch.setenv(name, value)


def test_a_shipped_env_cannot_send_the_password_in_clear(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(auth={USER: PASSWORD}) as server:
        _user_relay(monkeypatch, server.port)
        env = write_env(folder, {"SMTP_SECURITY": "none", "SMTP_ALLOW_PLAINTEXT_AUTH": "any"})

        result = cli(folder, "send", "--yes")

        assert result.exit_code == 2, result.output
        output = result.output.replace("\n", "")
        assert f"SMTP_ALLOW_PLAINTEXT_AUTH=any (from {env})" in output
        assert f"set SMTP_ALLOW_PLAINTEXT_AUTH in the environment or pass --env-file {env}" in output
        assert PASSWORD not in result.output
        assert server.recorder.logins == [] and server.recorder.mail_commands == 0


def test_a_shipped_env_cannot_switch_tls_off_for_a_remote_relay(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_HOST", "mail.example.org")
    env = write_env(folder, {"SMTP_SECURITY": "none"})

    result = cli(folder, "check")

    assert result.exit_code == 2, result.output
    output = result.output.replace("\n", "")
    assert f"SMTP_SECURITY=none (from {env}) would send to mail.example.org without TLS" in output
    assert f"pass --env-file {env}" in output


def test_a_shipped_ca_file_is_not_trusted(
    folder: Path, monkeypatch: pytest.MonkeyPatch, server_tls: ssl.SSLContext, ca_file: Path
) -> None:
    """The folder brings its own CA (the one that signed the relay's certificate here): refused."""
    with serve(starttls=server_tls, auth={USER: PASSWORD}) as server:
        _user_relay(monkeypatch, server.port)
        shipped = folder / "relay-ca.pem"
        shutil.copyfile(ca_file, shipped)
        env = write_env(folder, {"SMTP_CA_FILE": str(shipped)})

        result = cli(folder, "send", "--yes")

        assert result.exit_code == 2, result.output
        assert f"SMTP_CA_FILE={shipped} (from {env})" in result.output.replace("\n", "")
        assert server.recorder.logins == [] and server.recorder.mail_commands == 0


def test_the_user_can_still_allow_it_explicitly(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same `.env` named with --env-file, or the same settings in the environment, are honoured."""
    with serve(auth={USER: PASSWORD}) as server:
        _user_relay(monkeypatch, server.port)
        env = write_env(folder, {"SMTP_SECURITY": "none", "SMTP_ALLOW_PLAINTEXT_AUTH": "any"})

        named = cli(folder, "--env-file", str(env), "send", "--yes")

        assert named.exit_code == 0, named.output
        assert server.recorder.logins and set(server.recorder.logins) == {(USER, PASSWORD)}

    with serve(auth={USER: PASSWORD}) as server:
        _user_relay(monkeypatch, server.port, SMTP_SECURITY="none", SMTP_ALLOW_PLAINTEXT_AUTH="1")
        env.write_text("NEWSLETTER_FROM=Research Institute <research@example.org>\n", encoding="utf-8")
        (folder / ".newsletter").rename(folder / "earlier-journal")  # a fresh send, not "already done"

        from_environment = cli(folder, "send", "--yes")

        assert from_environment.exit_code == 0, from_environment.output
        assert server.recorder.logins and set(server.recorder.logins) == {(USER, PASSWORD)}


def test_clear_text_to_a_relay_on_this_machine_stays_allowed(folder: Path) -> None:
    """No password and no network: `SMTP_SECURITY=none` for a local relay may live in the folder's .env."""
    with serve() as server:
        write_env(folder, {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(server.port), "SMTP_SECURITY": "none"})

        result = cli(folder, "send", "--yes")

        assert result.exit_code == 0, result.output
        assert len(server.messages) == 2
