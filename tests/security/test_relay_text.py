"""Finding 8 of the stranger-folder review: relay text shown to the user is safe.

A relay's reply reaches the terminal, the journal and `status`. It must never carry
the password (whatever whitespace the relay put in it), our own messages must not
be garbled by scrubbing a short password, and escape sequences must not reach the
terminal.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from newsletter.delivery.transports.redact import Redactor, printable
from newsletter.delivery.transports.smtp import SMTPTransport
from newsletter.errors import SetupError
from newsletter.inputs.settings import load_settings
from tests.conftest import invoke, write_env
from tests.faults import write_list
from tests.security.conftest import serve
from tests.smtpd import Server

USER = "mozer"


def test_a_password_with_runs_of_spaces_is_scrubbed_however_the_relay_spaces_it(
    server_tls: ssl.SSLContext, ca_file: Path
) -> None:
    password = "correct   horse\tbattery  staple"
    echoed = "535 5.7.8 bad credentials for correct horse battery staple"  # whitespace collapsed
    with serve(starttls=server_tls, auth={USER: "other"}, auth_failure_message=echoed) as server:
        settings = load_settings(
            environ={
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(server.port),
                "SMTP_CA_FILE": str(ca_file),
                "SMTP_USERNAME": USER,
                "SMTP_PASSWORD": password,
            }
        )
        assert settings.smtp is not None
        try:
            SMTPTransport(settings.smtp).open()
        except SetupError as exc:
            text = str(exc)
        else:
            raise AssertionError("the login should have failed")
    assert "horse" not in text and "battery" not in text and "********" in text


def test_a_short_password_does_not_garble_our_messages(campaign: Path, smtp: Server) -> None:
    """With SMTP_PASSWORD=p the refusal once read "refusing to send the ********assword"."""
    write_env(campaign, smtp.env(SMTP_USERNAME=USER, SMTP_PASSWORD="p"))
    result = invoke("--campaign", str(campaign), "send", "--yes")
    assert result.exit_code == 2
    assert "refusing to send the password without TLS" in result.output


def test_a_short_password_echoed_as_a_word_is_still_scrubbed() -> None:
    redactor = Redactor("p4ss", USER)
    assert redactor.clean("535 login mozer p4ss refused") == "535 login mozer ******** refused"
    assert redactor.clean("535 p4ssword unknown") == "535 p4ssword unknown"  # not a word of its own


def test_escape_sequences_in_relay_replies_never_reach_the_terminal(campaign: Path, smtp: Server) -> None:
    addresses = write_list(campaign, 2)
    hostile = "550 5.1.1 \x1b[2J\x1b]0;owned\x07 no such user \x1b[31m"
    smtp.behaviour.replies[addresses[0]] = [hostile]
    write_env(campaign, smtp.env())
    sent = invoke("--campaign", str(campaign), "send", "--yes")
    status = invoke("--campaign", str(campaign), "status")
    for output in (sent.output, status.output):
        assert "\x1b" not in output and "\x07" not in output
        assert "no such" in output  # the words themselves still show


def test_printable_replaces_every_control_character() -> None:
    text = "".join(chr(c) for c in range(0, 0xA0)) + "\u202e\u2066"
    shown = printable(text)
    assert all(ch.isprintable() for ch in shown)
