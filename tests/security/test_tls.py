"""TLS: verified certificates, no silent fall back to clear text, no password in clear.

The servers are real aiosmtpd instances on 127.0.0.1 with certificates from a
throwaway CA (trustme): "self-signed" from the client's point of view unless
SMTP_CA_FILE names that CA.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
import trustme

from newsletter.delivery.transports.smtp import SMTPTransport
from newsletter.errors import ConfigError, SetupError
from newsletter.inputs.settings import SMTPSettings, load_settings
from tests.conftest import write_env
from tests.security.conftest import cli, make_campaign, serve

USER, PASSWORD = "mozer", "correct horse battery"

# Some servers here take AUTH without TLS on purpose: the client must be the one that refuses.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


def _server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


def _env(port: int, security: str, **extra: str) -> dict[str, str]:
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_SECURITY": security,
        "SMTP_TIMEOUT": "5",
        "SMTP_USERNAME": USER,
        "SMTP_PASSWORD": PASSWORD,
        **extra,
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_campaign(tmp_path / "c")


# -- STARTTLS ------------------------------------------------------------------------


# (how the test server offers TLS, what SMTP_SECURITY says): STARTTLS on 587, implicit TLS on 465.
MODES = pytest.mark.parametrize(("server_kind", "security"), [("starttls", "starttls"), ("implicit_tls", "tls")])


@MODES
def test_an_untrusted_certificate_is_refused(
    folder: Path, server_tls: ssl.SSLContext, server_kind: str, security: str
) -> None:
    with serve(**{server_kind: server_tls}, auth={USER: PASSWORD}) as server:
        write_env(folder, _env(server.port, security))

        result = cli(folder, "send", "--yes")

        assert result.exit_code == 2
        assert "certificate verify failed" in result.output
        assert server.recorder.logins == [] and server.recorder.mail_commands == 0


@MODES
def test_the_ca_file_is_accepted(
    folder: Path, server_tls: ssl.SSLContext, ca_file: Path, server_kind: str, security: str
) -> None:
    with serve(**{server_kind: server_tls}, auth={USER: PASSWORD}) as server:
        write_env(folder, _env(server.port, security, SMTP_CA_FILE=str(ca_file)))

        result = cli(folder, "send", "--yes")

        assert result.exit_code == 0, result.output
        assert sorted(m.rcpt_tos[0] for m in server.messages) == ["ann@example.org", "bob@example.org"]
        assert server.recorder.logins[0] == (USER, PASSWORD)


def test_a_certificate_for_another_host_is_refused(folder: Path, ca: trustme.CA, ca_file: Path) -> None:
    with serve(starttls=_server_context(ca, "mail.example.org"), auth={USER: PASSWORD}) as server:
        write_env(folder, _env(server.port, "starttls", SMTP_CA_FILE=str(ca_file)))

        result = cli(folder, "send", "--yes")

        assert result.exit_code == 2
        assert "certificate verify failed: ip address mismatch, certificate is not valid for '127.0.0.1'" in (
            result.output.lower()
        )
        assert server.recorder.logins == [] and server.messages == []


def test_a_server_without_starttls_is_refused_and_never_hears_the_password(folder: Path, ca_file: Path) -> None:
    # The server would happily take AUTH in clear: the client must not offer it.
    with serve(auth={USER: PASSWORD}) as server:
        write_env(folder, _env(server.port, "starttls", SMTP_CA_FILE=str(ca_file)))

        result = cli(folder, "send", "--yes")

        assert result.exit_code == 2
        assert "does not offer STARTTLS" in result.output
        assert server.recorder.logins == [] and server.recorder.mail_commands == 0


# -- implicit TLS (port 465) ---------------------------------------------------------------


def test_implicit_tls_checks_the_host_name(folder: Path, ca: trustme.CA, ca_file: Path) -> None:
    with serve(implicit_tls=_server_context(ca, "mail.example.org")) as server:
        write_env(folder, {**_env(server.port, "tls", SMTP_CA_FILE=str(ca_file)), "SMTP_USERNAME": ""})

        result = cli(folder, "send", "--yes")

        assert result.exit_code == 2
        assert server.recorder.mail_commands == 0


def test_implicit_tls_to_a_plain_server_fails_without_sending(folder: Path, ca_file: Path) -> None:
    with serve(auth={USER: PASSWORD}) as server:
        write_env(folder, _env(server.port, "tls", SMTP_CA_FILE=str(ca_file)))

        result = cli(folder, "send", "--yes")

        assert result.exit_code != 0
        assert "Traceback" not in result.output
        assert server.recorder.logins == [] and server.recorder.mail_commands == 0


# -- no TLS at all -------------------------------------------------------------------------


def test_plain_connection_refuses_to_send_the_password_by_default(folder: Path) -> None:
    with serve(auth={USER: PASSWORD}) as server:
        write_env(folder, _env(server.port, "none"))

        result = cli(folder, "send", "--yes")

        assert result.exit_code == 2
        assert "refusing to send the password without TLS" in result.output
        assert server.recorder.logins == [] and server.recorder.mail_commands == 0


def test_plaintext_auth_to_loopback_needs_the_flag(folder: Path) -> None:
    with serve(auth={USER: PASSWORD}) as server:
        # Named on purpose: from the folder's own .env this flag is refused (test_env_security.py).
        env = write_env(folder, _env(server.port, "none", SMTP_ALLOW_PLAINTEXT_AUTH="1"))

        result = cli(folder, "--env-file", str(env), "send", "--yes")

        assert result.exit_code == 0, result.output
        assert server.recorder.logins[0] == (USER, PASSWORD)
        assert len(server.messages) == 2


@pytest.mark.parametrize("host", ["relay.example.org", "192.0.2.25", "localhost.example.org"])
def test_plaintext_auth_flag_covers_loopback_only(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`1` does not send a password in clear to another host; no connection is even tried."""
    attempts: list[object] = []

    def no_connection(*args: object, **kwargs: object) -> socket.socket:
        attempts.append(args)
        raise AssertionError("the transport tried to connect")

    monkeypatch.setattr(socket, "create_connection", no_connection)
    settings = load_settings(
        environ={**_env(25, "none", SMTP_ALLOW_PLAINTEXT_AUTH="1"), "SMTP_HOST": host}
    )
    assert settings.smtp is not None

    with pytest.raises(SetupError, match="not this machine") as caught:
        SMTPTransport(settings.smtp).open()

    assert "SMTP_ALLOW_PLAINTEXT_AUTH" in str(caught.value) and "any" in str(caught.value)
    assert attempts == []


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("LOCALHOST.", True), ("mail.localhost", True), ("10.0.0.1", False), ("relay.example.org", False)],
)
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert SMTPSettings(host=host, port=25).on_loopback is loopback


def test_plaintext_auth_any_host_is_an_explicit_value() -> None:
    settings = load_settings(environ={**_env(25, "none", SMTP_ALLOW_PLAINTEXT_AUTH="any"), "SMTP_HOST": "relay.lan"})
    assert settings.smtp is not None
    assert settings.smtp.allow_plaintext_auth and settings.smtp.plaintext_auth_any_host
    with pytest.raises(ConfigError, match=r"SMTP_ALLOW_PLAINTEXT_AUTH.*\(or any\)"):
        load_settings(environ={**_env(25, "none", SMTP_ALLOW_PLAINTEXT_AUTH="sure")})


def test_no_username_means_no_auth_even_in_clear(folder: Path) -> None:
    with serve() as server:
        write_env(folder, {**_env(server.port, "none"), "SMTP_USERNAME": "", "SMTP_PASSWORD": ""})

        result = cli(folder, "send", "--yes")

        assert result.exit_code == 0, result.output
        assert server.recorder.logins == [] and len(server.messages) == 2
