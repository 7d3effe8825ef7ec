"""A journal that cannot vanish or lie, outcomes said honestly, relays that refuse everything.

Each test reproduces one way the promise broke (exit 0 and nothing in `status`)
with the real CLI against aiosmtpd or the misbehaving relay on 127.0.0.1.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import newsletter
from newsletter.delivery.journal import Journal
from newsletter.delivery.states import SENDING, UNKNOWN
from newsletter.inputs.folder import CampaignFolder
from tests.conftest import invoke, write_env
from tests.faults import cli_env, run, start, write_list
from tests.rawrelay import misbehaving_relay
from tests.smtpd import Server, free_port


def received(server: Server) -> Counter[str]:
    return Counter(rcpt for m in server.messages for rcpt in m.rcpt_tos)


def states(folder: Path) -> dict[str, str]:
    with sqlite3.connect(CampaignFolder(folder).journal) as db:
        return dict(db.execute("SELECT address, state FROM deliveries WHERE destination='smtp'").fetchall())


def wait_for(condition: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)


# -- the journal -------------------------------------------------------------------------


def test_deleting_the_journal_mid_send_stops_it_and_refuses_a_second_sender(campaign: Path, smtp: Server) -> None:
    """`git clean -fdx` while a send runs once let a second send mail everyone again."""
    addresses = write_list(campaign, 60)
    env = smtp.env()
    first = start(campaign, env, "--rate", "20")
    try:
        wait_for(lambda: len(smtp.messages) >= 5)
        first.send_signal(signal.SIGSTOP)  # alive, mid-send, whatever the machine's speed
        shutil.rmtree(campaign / ".newsletter")
        second = run(campaign, env)  # while the first lives: refused, not a fresh start
        assert second.returncode == 2, second.stderr
        assert "another `newsletter send`" in second.stderr
        first.send_signal(signal.SIGCONT)  # it notices before its next commit and stops
        _, stderr = first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 1, stderr
    assert "was deleted while this send ran" in " ".join(stderr.split()) and "Traceback" not in stderr
    sent_so_far = len(smtp.messages)
    assert sent_so_far < len(addresses)  # it stopped at once
    # What the first run knew was written back: the next run sends only the rest.
    rest = run(campaign, env)
    assert rest.returncode == 0, rest.stderr
    counts = received(smtp)
    assert all(counts[a] == 1 for a in addresses), [a for a in addresses if counts[a] != 1]


def test_status_never_creates_a_journal(campaign: Path) -> None:
    result = invoke("--campaign", str(campaign), "status")
    assert result.exit_code == 0, result.output
    assert "No send has run from this folder yet" in result.output
    assert not (campaign / ".newsletter").exists()


def test_status_after_a_crash_calls_the_dead_senders_rows_unknown(campaign: Path, smtp: Server) -> None:
    write_list(campaign, 40)
    env = smtp.env()
    victim = start(campaign, env, "--rate", "20")
    wait_for(lambda: len(smtp.messages) >= 3)
    # Freeze one row in `sending`, as a kill between the mark and the reply leaves it.
    victim.kill()
    victim.communicate(timeout=10)
    with sqlite3.connect(CampaignFolder(campaign).journal) as db:
        db.execute("UPDATE deliveries SET state='sending' WHERE state='sent'")
        frozen = db.execute("SELECT count(*) FROM deliveries WHERE state='sending'").fetchone()[0]
    report = newsletter.status(newsletter.load(campaign, environ=env))
    assert SENDING not in report.counts and report.counts[UNKNOWN] == frozen > 0
    assert {entry.state for entry in report.problems} == {UNKNOWN}


def test_a_journal_that_cannot_be_opened_is_a_clear_error_exit_2(campaign: Path, smtp: Server) -> None:
    (campaign / ".newsletter" / "journal.sqlite3").mkdir(parents=True)  # a folder where the file should be
    write_env(campaign, smtp.env())
    result = run(campaign, {})
    assert result.returncode == 2, result.stderr
    assert "journal.sqlite3: cannot open the journal" in result.stderr and "Traceback" not in result.stderr
    assert smtp.messages == []


def test_a_journal_write_failing_mid_run_stops_with_the_summary_and_exit_1(
    campaign: Path, smtp: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full mid-run once ended in a raw sqlite3 traceback from Journal.close()."""
    addresses = write_list(campaign, 400)
    write_env(campaign, smtp.env())
    calls = [0]
    original = Journal.mark_sending

    def full_after_five(self: Journal, *args: object, **kwargs: object) -> None:
        calls[0] += 1
        if calls[0] == 6:  # the file may not grow from here: SQLite's own "database or disk is full"
            with self._lock:
                pages = self._db.execute("PRAGMA page_count").fetchone()[0]
                self._db.execute(f"PRAGMA max_page_count={pages}")
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Journal, "mark_sending", full_after_five)
    result = invoke("--campaign", str(campaign), "send", "--yes", "--connections", "1")
    assert result.exit_code == 1, result.output
    assert "cannot write the journal" in result.output and "free some disk space" in result.output
    assert "sent" in result.output  # the summary line is still printed
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert 0 < len(smtp.messages) < len(addresses)
    # Nobody was marked who did not get it: the journal's `sent` rows all arrived.
    counts = received(smtp)
    assert all(counts[a] == 1 for a, state in states(campaign).items() if state == "sent")


# -- honest outcomes ---------------------------------------------------------------------


def test_every_run_says_when_recipients_failed_and_exits_1(campaign: Path, smtp: Server) -> None:
    addresses = write_list(campaign, 4)
    for address in addresses[:2]:
        smtp.behaviour.replies[address] = ["550 5.1.1 no such user"] * 5
    write_env(campaign, smtp.env())
    first = invoke("--campaign", str(campaign), "send", "--yes")
    assert first.exit_code == 1 and "The campaign has 2 failed" in first.output
    again = invoke("--campaign", str(campaign), "send", "--yes")
    assert again.exit_code == 1
    assert "Nothing new to send; 2 failed: see `newsletter status`" in again.output


def test_retry_failed_sends_the_failed_rows_again_after_asking(campaign: Path, smtp: Server) -> None:
    addresses = write_list(campaign, 3)
    smtp.behaviour.replies[addresses[0]] = ["550 5.1.1 no such user"]
    write_env(campaign, smtp.env())
    invoke("--campaign", str(campaign), "send", "--yes")
    assert states(campaign)[addresses[0]] == "failed"
    refused = run(campaign, {}, "--retry-failed", command="send")  # --yes is added by run(); ask anyway
    assert refused.returncode == 0, refused.stderr
    assert states(campaign)[addresses[0]] == "sent" and received(smtp)[addresses[0]] == 1
    assert received(smtp)[addresses[1]] == 1


def test_retry_failed_asks_first(campaign: Path, smtp: Server) -> None:
    """On a terminal the question comes before anything is sent; "n" sends nothing."""
    addresses = write_list(campaign, 2)
    smtp.behaviour.replies[addresses[0]] = ["550 5.1.1 no such user"]
    write_env(campaign, smtp.env())
    invoke("--campaign", str(campaign), "send", "--yes")
    master, terminal = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--campaign", str(campaign), "send", "--retry-failed"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=cli_env({}),
    )
    os.close(terminal)
    shown = b""
    deadline = time.monotonic() + 60
    while b"Continue?" not in shown and time.monotonic() < deadline:
        if select.select([master], [], [], 0.5)[0]:
            shown += os.read(master, 4096)
    os.write(master, b"n\n")
    process.wait(timeout=30)
    os.close(master)
    assert b"--retry-failed sends again to 1 recipient(s) recorded failed. Continue?" in shown
    assert process.returncode == 2
    assert received(smtp)[addresses[0]] == 0


# -- relays that refuse everything -------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "refused_before_stop"),
    [
        ("554 5.7.1 <{}>: Recipient address rejected: Access denied", 2),  # Postfix without the login
        ("530 5.7.0 Authentication required", 2),
        ("550 5.0.0 Sending not allowed", 5),
    ],
)
def test_a_relay_refusing_everything_stops_the_run_and_leaves_the_list_to_send(
    campaign: Path, smtp: Server, reply: str, refused_before_stop: int
) -> None:
    addresses = write_list(campaign, 30)
    for address in addresses:
        smtp.behaviour.replies[address] = [reply.format(address)]
    write_env(campaign, smtp.env())
    result = invoke("--campaign", str(campaign), "send", "--yes", "--connections", "1")
    assert result.exit_code == 2, result.output
    assert "refused" in result.output and "SMTP_USERNAME" in result.output
    assert smtp.messages == []
    assert "failed" not in set(states(campaign).values())  # nobody burnt
    assert smtp.recorder.rcpt_commands == refused_before_stop  # it stopped at once
    smtp.behaviour.replies.clear()  # the login fixed
    fixed = invoke("--campaign", str(campaign), "send", "--yes")
    assert fixed.exit_code == 0, fixed.output
    assert received(smtp) == Counter(addresses)


def test_dead_addresses_in_a_row_do_not_stop_the_run(campaign: Path, smtp: Server) -> None:
    addresses = write_list(campaign, 10)
    for address in addresses[:7]:
        smtp.behaviour.replies[address] = [f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"]
    write_env(campaign, smtp.env())
    result = invoke("--campaign", str(campaign), "send", "--yes", "--connections", "1")
    assert result.exit_code == 1 and "The campaign has 7 failed" in result.output
    assert received(smtp) == Counter(addresses[7:])


def test_an_unreachable_relay_is_exit_2_naming_the_settings(campaign: Path) -> None:
    write_env(campaign, {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(free_port()), "SMTP_SECURITY": "none"})
    for args in (("send", "--yes"), ("send", "--to", "me@example.org")):
        result = invoke("--campaign", str(campaign), *args)
        assert result.exit_code == 2, result.output
        assert "SMTP_HOST" in result.output and "nothing was sent" in result.output


def test_a_wrong_password_is_tried_with_one_mechanism_only(campaign: Path, smtp_tls: Server) -> None:
    write_list(campaign, 2)
    write_env(campaign, smtp_tls.env(SMTP_USERNAME="mozer", SMTP_PASSWORD="wrong horse"))
    result = invoke("--campaign", str(campaign), "send", "--yes")
    assert result.exit_code == 2 and "authentication failed" in result.output
    assert len(smtp_tls.recorder.logins) == 1  # not PLAIN and then LOGIN


# -- deadlines ---------------------------------------------------------------------------


@contextmanager
def _running(folder: Path, env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[str]]:
    process = start(folder, env, *args)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)


def test_sigterm_stops_within_the_timeout_against_a_drip_feeding_relay(campaign: Path) -> None:
    """A relay that answers one byte a second once kept a send alive until SIGKILL."""
    write_list(campaign, 5)
    with misbehaving_relay(["drip"] * 50) as relay:
        relay.drip_pause = 1.0
        env = relay.env | {"SMTP_TIMEOUT": "3"}
        with _running(campaign, env, "--connections", "1") as process:
            wait_for(lambda: bool(relay.delivered), timeout=60)
            time.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            _, stderr = process.communicate(timeout=30)
            took = time.monotonic() - stopped
    assert process.returncode == 143, stderr
    assert took < 3 + 2, took  # SMTP_TIMEOUT plus a little
    assert "Traceback" not in stderr
