"""SMTP_AUTH=xoauth2 against a real XOAUTH2 relay (aiosmtpd, STARTTLS with the test CA), and the
OAuth exchanges (refresh, device code) against a real HTTPS endpoint on 127.0.0.1."""

from __future__ import annotations

import os
import ssl
import stat
from dataclasses import replace
from pathlib import Path

import pytest

import newsletter
from newsletter import run as library
from newsletter.errors import ConfigError, ConnectionLost, SetupError, TokenError
from newsletter.inputs.settings import load_settings
from newsletter.oauth import client
from newsletter.oauth.providers import DeviceProvider, device_login
from newsletter.oauth.store import FileStore, Login
from newsletter.oauth.tokens import token_source
from tests.oauthd import command_runs, token_command, token_endpoint, xoauth2_server
from tests.security.conftest import cli, make_campaign, serve
from tests.smtpd import Server

USER = "editor@example.org"


def _csv(count: int) -> str:
    return "email,name\n" + "".join(f"r{i}@example.org,R{i}\n" for i in range(count))


def _env(server_port: int, ca_file: Path, **extra: str) -> dict[str, str]:
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(server_port),
        "SMTP_SECURITY": "starttls",
        "SMTP_CA_FILE": str(ca_file),
        "SMTP_TIMEOUT": "5",
        "SMTP_USERNAME": USER,
        "SMTP_AUTH": "xoauth2",
        **extra,
    }


def _journal_counts(folder: Path) -> dict[str, int]:
    """The journal's counts for the SMTP channel the test's environment names."""
    project = newsletter.load(folder, environ=dict(os.environ))
    assert project.channel == "smtp"
    return library.status(project).counts


@pytest.fixture
def client_tls(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def test_a_send_with_a_token_from_the_command(
    tmp_path: Path, server_tls: ssl.SSLContext, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_campaign(tmp_path / "c", csv=_csv(3))
    with xoauth2_server(server_tls, ca_file, user=USER, tokens={"tok-good": None}) as server:
        command = token_command(tmp_path / "cmd", ["tok-good"])
        for key, value in _env(server.port, ca_file, SMTP_OAUTH_TOKEN_COMMAND=command).items():
            monkeypatch.setenv(key, value)
        result = cli(folder, "send", "--yes")
    assert result.exit_code == 0, result.output
    assert sorted(m.rcpt_tos[0] for m in server.messages) == [f"r{i}@example.org" for i in range(3)]
    assert server.recorder.attempts == ["tok-good", "tok-good"]  # two connections, one token
    assert command_runs(tmp_path / "cmd") == 1


def test_a_wrong_token_is_refused_in_our_words_and_nothing_is_marked(
    tmp_path: Path, server_tls: ssl.SSLContext, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_campaign(tmp_path / "c", csv=_csv(3))
    with xoauth2_server(server_tls, ca_file, user=USER, tokens={"tok-good": None}) as server:
        env = _env(server.port, ca_file, SMTP_OAUTH_TOKEN_COMMAND=token_command(tmp_path / "cmd", ["tok-bad"]))
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        result = cli(folder, "send", "--yes")
    assert result.exit_code == 2, result.output
    assert f"XOAUTH2 login refused for {USER} (status 401, scope https://mail.google.com/)" in result.output
    assert "535" in result.output and "SMTP_OAUTH_TOKEN_COMMAND" in result.output
    assert server.recorder.continuations == [b""]  # the empty line the 334 refusal asks for
    assert server.recorder.attempts == ["tok-bad"]  # a fresh token refused is not tried again
    assert server.messages == []
    assert not any(_journal_counts(folder).values())


@pytest.mark.parametrize("connections", [1, 2])
def test_a_token_that_expires_mid_run_is_renewed_once_and_everyone_gets_one_message(
    tmp_path: Path, server_tls: ssl.SSLContext, ca_file: Path, monkeypatch: pytest.MonkeyPatch, connections: int
) -> None:
    folder = make_campaign(tmp_path / "c", csv=_csv(6))
    tokens: dict[str, int | None] = {"tok-1": 2, "tok-2": None}
    with xoauth2_server(server_tls, ca_file, user=USER, tokens=tokens) as server:
        command = token_command(tmp_path / "cmd", ["tok-1", "tok-2"])
        for key, value in _env(server.port, ca_file, SMTP_OAUTH_TOKEN_COMMAND=command).items():
            monkeypatch.setenv(key, value)
        result = cli(folder, "send", "--yes", "--connections", str(connections))
    assert result.exit_code == 0, result.output
    delivered = sorted(m.rcpt_tos[0] for m in server.messages)
    assert delivered == [f"r{i}@example.org" for i in range(6)]  # each once
    assert command_runs(tmp_path / "cmd") == 2  # one renewal, however many connections saw it
    assert "tok-2" in server.recorder.attempts
    assert _journal_counts(folder).get("sent") == 6


@pytest.mark.parametrize(
    ("extra", "timeout", "expected"),
    [
        ("sys.stderr.write('vault is locked\\n'); sys.exit(3)", "5", "failed with exit code 3: vault is locked"),
        ("import time; time.sleep(10)", "1", "printed no token within 1 s"),
        ("print(''); sys.exit(0)", "5", "printed nothing"),
    ],
    ids=["fails", "times-out", "prints-nothing"],
)
def test_a_token_command_that_gives_no_token_stops_before_anything_is_sent(
    tmp_path: Path,
    server_tls: ssl.SSLContext,
    ca_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    extra: str,
    timeout: str,
    expected: str,
) -> None:
    folder = make_campaign(tmp_path / "c", csv=_csv(2))
    script_dir = tmp_path / "cmd"
    command = token_command(script_dir, ["tok-good"], extra=extra)
    if "print('')" in extra:  # print nothing at all: replace the script's last line
        script = script_dir / "token.py"
        script.write_text(script.read_text().replace("print(tokens[min(n, len(tokens) - 1)])\n", ""))
    with xoauth2_server(server_tls, ca_file, user=USER, tokens={"tok-good": None}) as server:
        env = _env(server.port, ca_file, SMTP_OAUTH_TOKEN_COMMAND=command, SMTP_TIMEOUT=timeout)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        result = cli(folder, "send", "--yes")
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output
    assert server.recorder.attempts == [] and server.messages == []
    assert not any(_journal_counts(folder).values())


def test_a_token_never_goes_without_tls() -> None:
    settings = load_settings(
        environ={
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": "2",
            "SMTP_SECURITY": "none",
            "SMTP_USERNAME": USER,
            "SMTP_AUTH": "xoauth2",
            "SMTP_OAUTH_TOKEN_COMMAND": "true",
        }
    )
    assert settings.smtp is not None
    from newsletter.delivery.transports.smtp import SMTPTransport

    with pytest.raises(SetupError, match="refusing to send an OAuth access token without TLS"):
        SMTPTransport(settings.smtp).open()
    remote = replace(settings.smtp, host="192.0.2.1", allow_plaintext_auth=True, plaintext_auth_any_host=True)
    with pytest.raises(SetupError, match="refusing to send an OAuth access token without TLS"):
        SMTPTransport(remote).open()  # `any` covers passwords on a trusted network, never tokens
    local = replace(settings.smtp, allow_plaintext_auth=True)
    with pytest.raises(ConnectionLost):  # allowed: it gets as far as connecting (nobody listens on port 2)
        SMTPTransport(local).open()


def test_check_smtp_says_how_it_logged_in_and_as_whom(
    tmp_path: Path, server_tls: ssl.SSLContext, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_campaign(tmp_path / "c")
    with xoauth2_server(server_tls, ca_file, user=USER, tokens={"tok-good": None}) as server:
        command = token_command(tmp_path / "cmd", ["tok-good"])
        for key, value in _env(server.port, ca_file, SMTP_OAUTH_TOKEN_COMMAND=command).items():
            monkeypatch.setenv(key, value)
        result = cli(folder, "check", "--smtp")
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())  # the table may wrap the cell
    assert f"relay login XOAUTH2 as {USER} (token from SMTP_OAUTH_TOKEN_COMMAND)" in shown


def test_xoauth2_settings_are_checked_when_loaded() -> None:
    base = {"SMTP_HOST": "smtp.example.org", "SMTP_AUTH": "xoauth2"}
    with pytest.raises(ConfigError, match="needs SMTP_USERNAME"):
        load_settings(environ=base)
    with pytest.raises(ConfigError, match="SMTP_OAUTH_TOKEN_COMMAND"):
        load_settings(environ={**base, "SMTP_USERNAME": USER})
    with pytest.raises(ConfigError, match="SMTP_AUTH"):
        load_settings(environ={**base, "SMTP_AUTH": "cram-md5"})
    office = load_settings(environ={**base, "SMTP_HOST": "smtp.office365.com", "SMTP_USERNAME": USER})
    assert office.smtp is not None and office.smtp.oauth_provider == "microsoft"


# -- the OAuth exchanges, against a local HTTPS endpoint ----------------------------------


def test_the_refresh_sends_the_rfc_6749_fields_and_returns_the_new_tokens(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    answer = {"access_token": "at-new", "expires_in": 3599, "refresh_token": "rt-rotated", "token_type": "Bearer"}
    with token_endpoint(server_tls, {"/token": [(200, answer)]}) as endpoint:
        grant = client.refresh(
            endpoint.url("/token"), client_id="cid", refresh_token="rt-old", scope="s1 s2", context=client_tls
        )
    assert grant == client.Grant("at-new", 3599.0, "rt-rotated")
    assert endpoint.requests == [
        ("/token", {"grant_type": "refresh_token", "refresh_token": "rt-old", "client_id": "cid", "scope": "s1 s2"})
    ]


def test_a_refused_refresh_says_why_without_the_refresh_token(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    refusal = {"error": "invalid_grant", "error_description": "token rt-secret-123456 was revoked"}
    with token_endpoint(server_tls, {"/token": [(400, refusal)]}) as endpoint, pytest.raises(TokenError) as caught:
        client.refresh(endpoint.url("/token"), client_id="cid", refresh_token="rt-secret-123456", context=client_tls)
    assert "invalid_grant" in str(caught.value) and "revoked" in str(caught.value)
    assert "rt-secret-123456" not in str(caught.value)


def test_an_endpoint_with_an_untrusted_certificate_is_refused(server_tls: ssl.SSLContext) -> None:
    untrusted = ssl.create_default_context()  # the system's CAs, not the test CA
    with token_endpoint(server_tls, {"/token": [(200, {"access_token": "x"})]}) as endpoint:
        with pytest.raises(TokenError, match=r"cannot reach 127\.0\.0\.1"):
            client.refresh(endpoint.url("/token"), client_id="c", refresh_token="r", context=untrusted)
        assert endpoint.requests == []


def test_only_https_endpoints_get_secrets() -> None:
    with pytest.raises(TokenError, match="only https"):
        client.refresh("http://127.0.0.1:1/token", client_id="c", refresh_token="r")


def _provider(endpoint_url: str) -> DeviceProvider:
    return DeviceProvider("microsoft", f"{endpoint_url}/devicecode", f"{endpoint_url}/token", "scope offline_access")


DEVICE = {"device_code": "dc-1", "user_code": "ABCD-EFGH", "verification_uri": "https://example.org/device",
          "expires_in": 900, "interval": 5}


def test_the_device_code_flow_polls_until_the_user_has_signed_in(
    tmp_path: Path, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    answers = {
        "/devicecode": [(200, DEVICE)],
        "/token": [
            (400, {"error": "authorization_pending"}),
            (400, {"error": "slow_down"}),
            (400, {"error": "authorization_pending"}),
            (200, {"access_token": "at-1", "expires_in": 3600, "refresh_token": "rt-1"}),
        ],
    }
    slept: list[float] = []
    shown: list[str] = []
    store = FileStore(tmp_path / "config" / "logins")
    with token_endpoint(server_tls, answers) as endpoint:
        login = device_login(
            _provider(f"https://127.0.0.1:{endpoint.port}"),
            USER,
            client_id="cid",
            store=store,
            show=shown.append,
            context=client_tls,
            sleep=slept.append,
        )
    assert shown == ["To sign in, open https://example.org/device and enter the code ABCD-EFGH"]
    assert slept == [5, 5, 10, 10]  # slow_down adds five seconds (RFC 8628 3.5)
    polls = [fields for path, fields in endpoint.requests if path == "/token"]
    assert len(polls) == 4
    assert polls[0] == {"grant_type": client.DEVICE_GRANT, "device_code": "dc-1", "client_id": "cid"}
    assert login.refresh_token == "rt-1"
    assert store.load("microsoft", USER) == login
    path = store.path("microsoft", USER)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    ("error", "expected"),
    [("expired_token", "code expired"), ("authorization_declined", "declined"), ("access_denied", "declined")],
)
def test_the_device_code_flow_stops_on_an_expired_or_declined_sign_in(
    tmp_path: Path, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, error: str, expected: str
) -> None:
    answers = {
        "/devicecode": [(200, DEVICE)],
        "/token": [(400, {"error": "authorization_pending"}), (400, {"error": error})],
    }
    store = FileStore(tmp_path / "logins")
    with token_endpoint(server_tls, answers) as endpoint, pytest.raises(TokenError, match=expected):
        device_login(
            _provider(f"https://127.0.0.1:{endpoint.port}"),
            USER,
            client_id="cid",
            store=store,
            show=lambda text: None,
            context=client_tls,
            sleep=lambda seconds: None,
        )
    assert store.load("microsoft", USER) is None


def test_a_stored_sign_in_is_renewed_and_used_to_send(
    tmp_path: Path, server_tls: ssl.SSLContext, ca_file: Path, client_tls: ssl.SSLContext
) -> None:
    store = FileStore(tmp_path / "logins")
    answers = {"/token": [(200, {"access_token": "at-fresh", "expires_in": 3600, "refresh_token": "rt-2"})]}
    with token_endpoint(server_tls, answers) as endpoint, xoauth2_server(
        server_tls, ca_file, user=USER, tokens={"at-fresh": None}
    ) as server:
        store.save(Login("microsoft", USER, endpoint.url("/token"), "cid", "rt-1", scope="s offline_access"))
        settings = load_settings(environ=_env(server.port, ca_file, SMTP_OAUTH_PROVIDER="microsoft"))
        assert settings.smtp is not None
        from newsletter.delivery.transports.smtp import SMTPTransport

        transport = SMTPTransport(settings.smtp, tokens=token_source(settings.smtp, store=store, context=client_tls))
        transport.open()
        transport.close()
    assert transport.login == f"XOAUTH2 as {USER} (microsoft sign-in from {store.name})"
    assert endpoint.requests[0][1]["refresh_token"] == "rt-1"
    saved = store.load("microsoft", USER)
    assert saved is not None and saved.refresh_token == "rt-2"  # the rotated one is kept


def test_no_stored_sign_in_says_to_log_in(tmp_path: Path) -> None:
    settings = load_settings(
        environ={"SMTP_HOST": "smtp.office365.com", "SMTP_USERNAME": USER, "SMTP_AUTH": "xoauth2"}
    )
    assert settings.smtp is not None
    source = token_source(settings.smtp, store=FileStore(tmp_path / "none"))
    with pytest.raises(TokenError, match="run `newsletter login microsoft` once"):
        source.get()


def test_a_sign_in_file_others_can_read_is_refused(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "logins")
    store.save(Login("google", USER, "https://127.0.0.1/token", "cid", "rt-1"))
    path = store.path("google", USER)
    path.chmod(0o644)
    with pytest.raises(TokenError, match="others may read this file"):
        store.load("google", USER)
    path.chmod(0o600)
    assert store.load("google", USER) is not None
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "elsewhere.json").write_text("{}")
    with pytest.raises(TokenError):
        store.load("google", USER)


def test_check_smtp_names_the_password_mechanism_too(
    tmp_path: Path, smtp_tls: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_campaign(tmp_path / "c")
    for key, value in smtp_tls.env(SMTP_USERNAME="mozer", SMTP_PASSWORD="correct horse").items():
        monkeypatch.setenv(key, value)
    result = cli(folder, "check", "--smtp")
    assert result.exit_code == 0, result.output
    assert "relay login PLAIN as mozer" in " ".join(result.output.split())


# -- newsletter login / logout -------------------------------------------------------------


def test_login_microsoft_signs_in_with_the_device_code_and_logout_forgets_it(
    tmp_path: Path, server_tls: ssl.SSLContext, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsletter.oauth import providers

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # the default context trusts the local endpoint
    folder = make_campaign(tmp_path / "c")
    answers = {
        "/devicecode": [(200, {**DEVICE, "interval": 1})],
        "/token": [(400, {"error": "authorization_pending"}), (200, {"access_token": "a", "refresh_token": "r"})],
    }
    with token_endpoint(server_tls, answers) as endpoint:
        local = _provider(f"https://127.0.0.1:{endpoint.port}")
        monkeypatch.setattr(providers, "microsoft", lambda tenant=None: local)  # the endpoints, nothing else
        result = cli(folder, "login", "microsoft", "--user", USER, "--client-id", "my-app")
    assert result.exit_code == 0, result.output
    assert "enter the code ABCD-EFGH" in result.output and f"Signed in as {USER} with microsoft" in result.output
    assert {fields["client_id"] for _, fields in endpoint.requests} == {"my-app"}
    store = FileStore(tmp_path / "config" / "newsletter" / "logins")
    saved = store.load("microsoft", USER)
    assert saved is not None and saved.refresh_token == "r"
    assert not list(folder.rglob("*.json"))  # nothing of the sign-in in the campaign folder
    forgot = cli(folder, "logout", "microsoft", "--user", USER)
    assert forgot.exit_code == 0 and "Forgot the microsoft sign-in" in forgot.output
    assert store.load("microsoft", USER) is None
    again = cli(folder, "logout", "microsoft", "--user", USER)
    assert "No microsoft sign-in was stored" in again.output


def test_login_says_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    folder = make_campaign(tmp_path / "c")
    no_user = cli(folder, "login", "microsoft")
    assert no_user.exit_code == 2 and "--user ADDRESS, or set SMTP_USERNAME" in no_user.output
    no_app = cli(folder, "login", "microsoft", "--user", USER)
    assert no_app.exit_code == 2 and "SMTP_OAUTH_CLIENT_ID is not set" in no_app.output
    bad_tenant = cli(folder, "login", "microsoft", "--user", USER, "--client-id", "x", "--tenant", "a/../b")
    assert bad_tenant.exit_code == 2 and "--tenant" in bad_tenant.output
    no_secrets = cli(folder, "login", "google", "--user", USER)
    assert no_secrets.exit_code == 2 and "--client-secrets FILE" in no_secrets.output
    junk = tmp_path / "client.json"
    junk.write_text("{}", encoding="utf-8")
    bad_secrets = cli(folder, "login", "google", "--user", USER, "--client-secrets", str(junk))
    assert bad_secrets.exit_code == 2
    assert "not a client-secret JSON" in bad_secrets.output or "newsletter[oauth]" in bad_secrets.output


def _loaded(imports: str, names: set[str]) -> list[str]:
    """Which of `names` a fresh interpreter has really loaded (not just registered lazily) after `imports`."""
    import subprocess
    import sys

    code = (
        f"import sys, {imports}; "
        f"print(sorted({names!r} & {{m for m, v in sys.modules.items() if type(v).__name__ != '_LazyModule'}}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return list(eval(done.stdout))  # noqa: S307 (our own child's printed list)


def test_help_and_the_password_path_load_no_oauth_code() -> None:
    oauth = {"keyring", "google_auth_oauthlib", "newsletter.oauth.tokens", "newsletter.oauth.client"}
    assert _loaded("newsletter.cli", {*oauth, "urllib.request", "http.client"}) == []  # what --help loads
    assert _loaded("newsletter.cli, newsletter.delivery.transports.smtp, newsletter.project", oauth) == []


def test_a_relay_that_stopped_taking_passwords_points_to_xoauth2(
    server_tls: ssl.SSLContext, ca_file: Path
) -> None:
    from newsletter.delivery.transports.smtp import SMTPTransport

    refusal = "535 5.7.139 Authentication unsuccessful, basic authentication is disabled."
    with serve(starttls=server_tls, ca_file=ca_file, auth={"mozer": "other"}, auth_failure_message=refusal) as server:
        environ = {**server.env(), "SMTP_USERNAME": "mozer", "SMTP_PASSWORD": "correct horse"}
        settings = load_settings(environ=environ)
        assert settings.smtp is not None
        with pytest.raises(SetupError) as caught:
            SMTPTransport(settings.smtp).open()
    assert "basic authentication is disabled" in str(caught.value)
    assert "sign in with OAuth instead (SMTP_AUTH=xoauth2" in str(caught.value)
    assert caught.value.exit_code == 2


def test_the_redactor_removes_every_form_of_a_token() -> None:
    import base64

    from newsletter.delivery.transports.redact import Redactor, xoauth2_string

    token = "ya29.a0AfH6SMBx-token-value"
    redactor = Redactor("pw-123456", USER)
    redactor.add(token, "1//0refresh-token-value")
    text = (
        f"echo {xoauth2_string(USER, token).decode()} and {token} and "
        f"{base64.b64encode(token.encode()).decode()} and 1//0refresh-token-value and pw-123456"
    )
    assert redactor.clean(text) == "echo ******** and ******** and ******** and ******** and ********"


def test_one_token_serves_all_connections_until_it_expires_and_is_renewed_once() -> None:
    from newsletter.oauth.tokens import EARLY, TokenSource

    now = [1000.0]
    fetched: list[str] = []

    def fetch() -> client.Grant:
        fetched.append(f"t{len(fetched) + 1}")
        return client.Grant(fetched[-1], expires_in=3600)

    source = TokenSource(fetch, label="test", clock=lambda: now[0])
    first = source.get()
    assert source.get() is first and fetched == ["t1"]
    now[0] += 3600 - EARLY + 1  # close to its stated expiry: renewed before a relay refuses it
    second = source.get()
    assert second.value == "t2"
    assert source.renew(first) is second and fetched == ["t1", "t2"]  # already renewed by another connection
    assert source.renew(second).value == "t3"


def test_a_token_that_would_break_the_smtp_command_line_is_refused() -> None:
    from newsletter.oauth.tokens import TokenSource

    source = TokenSource(lambda: client.Grant("abc\r\nRSET"), label="token from a test")
    with pytest.raises(TokenError, match="characters a token cannot have"):
        source.get()
