"""Send exactly once: the journal, retries, reconnects, unknown outcomes, interruption, locking."""

from __future__ import annotations

import csv
import random
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from newsletter import project as api
from newsletter.delivery.journal import Journal
from newsletter.delivery.plan import SendOptions
from newsletter.inputs.folder import CampaignFolder
from newsletter.run import send
from tests.conftest import invoke, write_env
from tests.faults import run, start, write_list
from tests.smtpd import Server

FAST_RETRY = ("--retry-delay", "0.2")


def journal_rows(folder: Path) -> dict[str, tuple[str, int, int | None]]:
    """address -> (state, attempts, code) for the real list (destination smtp)."""
    with sqlite3.connect(CampaignFolder(folder).journal) as db:
        rows = db.execute("SELECT address, state, attempts, code FROM deliveries WHERE destination='smtp'").fetchall()
    return {address: (state, attempts, code) for address, state, attempts, code in rows}


def received_counts(server: Server) -> Counter[str]:
    return Counter(rcpt for m in server.messages for rcpt in m.rcpt_tos)


def test_451_is_retried_in_the_same_run(campaign: Path, smtp: Server) -> None:
    addresses = write_list(campaign, 5)
    smtp.behaviour.replies[addresses[2]] = ["451 4.3.0 try again later"]
    write_env(campaign, smtp.env())
    result = invoke("--campaign", str(campaign), "send", "--yes", *FAST_RETRY)
    assert result.exit_code == 0, result.output
    assert received_counts(smtp) == Counter(addresses)
    assert journal_rows(campaign)[addresses[2]] == ("sent", 2, 250)


def test_550_fails_permanently_and_is_never_retried(campaign: Path, smtp: Server) -> None:
    addresses = write_list(campaign, 4)
    smtp.behaviour.replies[addresses[1]] = ["550 5.1.1 no such user"] * 5
    write_env(campaign, smtp.env())
    result = invoke("--campaign", str(campaign), "send", "--yes", *FAST_RETRY)
    assert result.exit_code == 1
    assert f"{addresses[1]} (line 3): failed: 550 5.1.1 no such user" in result.output
    assert journal_rows(campaign)[addresses[1]] == ("failed", 1, 550)
    again = invoke("--campaign", str(campaign), "send", "--yes")
    # The campaign is not all delivered: every run says so, and exits 1.
    assert again.exit_code == 1 and "Nothing new to send; 1 failed" in again.output
    assert addresses[1] not in received_counts(smtp)
    status = invoke("--campaign", str(campaign), "status")
    assert "550 5.1.1 no such user" in status.output


def test_deferred_beyond_the_attempts_stays_deferred_for_the_next_run(campaign: Path, smtp: Server) -> None:
    addresses = write_list(campaign, 3)
    smtp.behaviour.replies[addresses[0]] = ["452 4.2.2 mailbox full"] * 2
    write_env(campaign, smtp.env())
    result = invoke("--campaign", str(campaign), "send", "--yes", "--max-attempts", "2", *FAST_RETRY)
    assert result.exit_code == 1
    assert journal_rows(campaign)[addresses[0]][0] == "deferred"
    result = invoke("--campaign", str(campaign), "send", "--yes", *FAST_RETRY)
    assert result.exit_code == 0, result.output
    assert received_counts(smtp) == Counter(addresses)


def test_dropped_connections_reconnect_and_continue(campaign: Path, smtp: Server) -> None:
    addresses = write_list(campaign, 25)
    smtp.behaviour.drop_after_messages = 4
    write_env(campaign, smtp.env())
    result = invoke("--campaign", str(campaign), "send", "--yes", "--connections", "2")
    assert result.exit_code == 0, result.output
    assert received_counts(smtp) == Counter(addresses)


def test_421_closes_and_the_message_is_retried(campaign: Path, smtp: Server) -> None:
    addresses = write_list(campaign, 6)
    smtp.behaviour.mail_reply = ["250", "250", "421 4.7.0 too busy, closing"]
    write_env(campaign, smtp.env())
    result = invoke("--campaign", str(campaign), "send", "--yes", "--connections", "1", *FAST_RETRY)
    assert result.exit_code == 0, result.output
    assert received_counts(smtp) == Counter(addresses)


def test_drop_after_data_is_unknown_and_not_resent_by_default(campaign: Path, smtp: Server) -> None:
    addresses = write_list(campaign, 5)
    smtp.behaviour.drop_after_data = {addresses[3]}
    write_env(campaign, smtp.env())
    result = invoke("--campaign", str(campaign), "send", "--yes", "--connections", "1")
    assert result.exit_code == 1
    assert journal_rows(campaign)[addresses[3]][0] == "unknown"
    assert received_counts(smtp) == Counter(addresses)  # it did arrive: hence "unknown", not "failed"
    smtp.behaviour.drop_after_data = set()
    again = invoke("--campaign", str(campaign), "send", "--yes")
    assert again.exit_code == 1 and "Nothing new to send; 1 unknown" in again.output  # said on every run
    assert received_counts(smtp)[addresses[3]] == 1
    status = invoke("--campaign", str(campaign), "status")
    assert "unknown" in status.output and addresses[3] in status.output
    resent = invoke("--campaign", str(campaign), "send", "--yes", "--resend-unknown")
    assert resent.exit_code == 0
    assert received_counts(smtp)[addresses[3]] == 2  # the user asked for it
    assert journal_rows(campaign)[addresses[3]][0] == "sent"


def test_stall_past_the_timeout_is_unknown(campaign: Path, smtp: Server) -> None:
    addresses = write_list(campaign, 2)
    smtp.behaviour.stall_data = 2.5
    write_env(campaign, smtp.env(SMTP_TIMEOUT="1"))
    result = invoke("--campaign", str(campaign), "send", "--yes", "--connections", "1")
    assert result.exit_code == 1
    states = {a: s[0] for a, s in journal_rows(campaign).items()}
    assert states[addresses[0]] == "unknown"


def test_stall_before_data_is_retried_not_unknown(campaign: Path, smtp: Server) -> None:
    addresses = write_list(campaign, 3)
    smtp.behaviour.stall_rcpt = {addresses[1]: 2.0}
    write_env(campaign, smtp.env(SMTP_TIMEOUT="1"))
    result = invoke("--campaign", str(campaign), "send", "--yes", "--connections", "1")
    assert journal_rows(campaign)[addresses[1]][0] == "deferred"
    smtp.behaviour.stall_rcpt = {}
    result = invoke("--campaign", str(campaign), "send", "--yes", *FAST_RETRY)
    assert result.exit_code == 0, result.output
    assert received_counts(smtp) == Counter(addresses)


def test_outbox_test_sends_and_dry_runs_do_not_count_for_the_list(campaign: Path, smtp: Server) -> None:
    addresses = write_list(campaign, 4)
    assert invoke("--campaign", str(campaign), "send").exit_code == 0  # no SMTP_HOST: outbox
    assert len(list((campaign / "outbox").glob("*.eml"))) == 4
    write_env(campaign, smtp.env())
    assert invoke("--campaign", str(campaign), "send", "--dry-run").exit_code == 0
    assert invoke("--campaign", str(campaign), "send", "--to", "me@example.com").exit_code == 0
    assert smtp.messages[0].rcpt_tos == ["me@example.com"]
    assert smtp.messages[0].message["Subject"].startswith("[TEST] ")
    assert invoke("--campaign", str(campaign), "send", "--yes").exit_code == 0
    assert received_counts(smtp) == Counter([*addresses, "me@example.com"])


def test_limit_sends_in_stages(campaign: Path, smtp: Server) -> None:
    addresses = write_list(campaign, 10)
    write_env(campaign, smtp.env())
    assert invoke("--campaign", str(campaign), "send", "--yes", "--limit", "4").exit_code == 0
    assert len(smtp.messages) == 4
    assert invoke("--campaign", str(campaign), "send", "--yes", "--limit", "4").exit_code == 0
    assert invoke("--campaign", str(campaign), "send", "--yes").exit_code == 0
    assert received_counts(smtp) == Counter(addresses)


def test_a_new_announcement_is_a_new_campaign_but_a_typo_fix_is_not(campaign: Path, smtp: Server) -> None:
    write_list(campaign, 3)
    write_env(campaign, smtp.env())
    assert invoke("--campaign", str(campaign), "send", "--yes").exit_code == 0
    announcement = campaign / "announcement.md"
    announcement.write_text(announcement.read_text(encoding="utf-8").replace("pleased", "delighted"), encoding="utf-8")
    assert "Nothing to send" in invoke("--campaign", str(campaign), "send", "--yes").output
    text = announcement.read_text(encoding="utf-8").replace('id = "digital-customs-2021"', 'id = "second-book"')
    announcement.write_text(text, encoding="utf-8")
    assert invoke("--campaign", str(campaign), "send", "--yes").exit_code == 0
    assert len(smtp.messages) == 6


def test_unsubscribed_and_permanently_failed_addresses_are_suppressed(campaign: Path, smtp: Server) -> None:
    addresses = write_list(campaign, 4)
    smtp.behaviour.replies[addresses[0]] = ["550 5.1.1 gone"]
    write_env(campaign, smtp.env())
    assert invoke("--campaign", str(campaign), "unsubscribe", addresses[1].upper()).exit_code == 0
    first = invoke("--campaign", str(campaign), "send", "--yes")
    assert "1 suppressed" in first.output
    announcement = campaign / "announcement.md"
    announcement.write_text(
        announcement.read_text(encoding="utf-8").replace('id = "digital-customs-2021"', 'id = "next"'), encoding="utf-8"
    )
    second = invoke("--campaign", str(campaign), "send", "--yes")
    assert second.exit_code == 0
    assert "2 suppressed" in second.output
    assert received_counts(smtp) == Counter([addresses[2], addresses[3]] * 2)


def test_status_csv_quotes_formula_cells(campaign: Path, smtp: Server, tmp_path: Path) -> None:
    addresses = write_list(campaign, 2)
    smtp.behaviour.replies[addresses[0]] = ['550 =HYPERLINK("http://evil.example")']
    write_env(campaign, smtp.env())
    invoke("--campaign", str(campaign), "send", "--yes")
    out = tmp_path / "problems.csv"
    assert invoke("--campaign", str(campaign), "status", "--csv", str(out)).exit_code == 0
    with out.open(encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert rows[0]["email"] == addresses[0]
    assert rows[0]["reply"].startswith("'=HYPERLINK")


def test_rate_limit_holds(campaign: Path, smtp: Server) -> None:
    write_list(campaign, 30)
    write_env(campaign, smtp.env())
    result = invoke("--campaign", str(campaign), "send", "--yes", "--rate", "20", "--connections", "4")
    assert result.exit_code == 0
    times = sorted(m.at for m in smtp.messages)
    assert len(times) == 30
    # 30 messages at 20/s take at least ~1.45 s, and no one-second window holds much more
    # than 20 (a loaded machine can bunch arrivals a little; the limiter spaces departures).
    assert times[-1] - times[0] >= 29 / 20 * 0.9
    assert max(sum(1 for t in times if start <= t < start + 1.0) for start in times) <= 25


def test_rate_accepts_per_minute(campaign: Path, smtp: Server) -> None:
    write_list(campaign, 3)
    write_env(campaign, smtp.env())
    assert invoke("--campaign", str(campaign), "send", "--yes", "--rate", "600/min").exit_code == 0
    bad = invoke("--campaign", str(campaign), "send", "--yes", "--rate", "fast")
    assert bad.exit_code == 2 and "--rate" in bad.output


# -- real processes: locks, Ctrl-C, SIGKILL -------------------------------------------


def test_second_sender_is_refused_while_one_runs(campaign: Path, smtp: Server) -> None:
    write_list(campaign, 40)
    env = smtp.env()
    first = start(campaign, env, "--rate", "10")
    try:
        deadline = time.monotonic() + 20
        while not smtp.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        first.send_signal(signal.SIGSTOP)  # alive and holding the lock, however slow the second starts
        second = run(campaign, env)
        assert second.returncode == 2
        assert "another `newsletter send`" in second.stderr
    finally:
        first.send_signal(signal.SIGCONT)
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)


def test_stale_lock_of_a_dead_process_is_taken_over(campaign: Path, smtp: Server) -> None:
    addresses = write_list(campaign, 30)
    env = smtp.env()
    victim = start(campaign, env, "--rate", "20")
    deadline = time.monotonic() + 20
    while len(smtp.messages) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.kill()
    victim.communicate(timeout=10)
    result = run(campaign, env)
    assert result.returncode in (0, 1), result.stderr
    counts = received_counts(smtp)
    assert all(counts[a] <= 1 for a in addresses)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_finishes_in_flight_then_resume_completes(
    campaign: Path, smtp: Server, sig: signal.Signals, code: int
) -> None:
    addresses = write_list(campaign, 40)
    env = smtp.env()
    process = start(campaign, env, "--rate", "25", "--connections", "2")
    deadline = time.monotonic() + 20
    while len(smtp.messages) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == code, stderr
    assert "Run the same command again" in stderr
    sent_before = len(smtp.messages)
    assert 5 <= sent_before < 40
    states = journal_rows(campaign)
    assert "unknown" not in {s for s, _, _ in states.values()} and "sending" not in {s for s, _, _ in states.values()}
    result = run(campaign, env)
    assert result.returncode == 0, result.stderr
    assert received_counts(smtp) == Counter(addresses)


def test_sigkill_at_random_moments_never_sends_twice(campaign: Path, smtp: Server) -> None:
    """Kill the sender mid-flight again and again; the server must see nobody twice, and
    nobody missing except those `status` reports as unknown."""
    addresses = write_list(campaign, 150)
    env = smtp.env()
    rng = random.Random(20261128)
    kills_mid_send = 0
    for _ in range(12):
        process = start(campaign, env, "--connections", "3", "--rate", "150")
        before = len(smtp.messages)
        deadline = time.monotonic() + 60
        # Wait for this run's first delivery, then kill at a random moment after it.
        while len(smtp.messages) == before and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            process.wait(timeout=rng.uniform(0.0, 0.4))
        except subprocess.TimeoutExpired:
            process.kill()
        process.communicate(timeout=10)
        if process.returncode == -signal.SIGKILL and len(smtp.messages) > before:
            kills_mid_send += 1
        if process.returncode == 0:
            break
    assert kills_mid_send >= 2  # the test means nothing unless it killed real sends
    final = run(campaign, env)
    assert final.returncode in (0, 1), final.stderr
    counts = received_counts(smtp)
    assert max(counts.values()) == 1, [a for a, n in counts.items() if n > 1]
    states = journal_rows(campaign)
    unknown = {a for a, (s, _, _) in states.items() if s == "unknown"}
    missing = set(addresses) - set(counts)
    assert missing <= unknown
    assert all(states[a][0] == "sent" for a in counts if a not in unknown)
    print(f"kills mid-send: {kills_mid_send}, unknown: {len(unknown)}, missing: {len(missing)}")
    status = run(campaign, env, command="status")
    for address in unknown:
        assert address in status.stdout


def test_ctrl_c_before_sending_exits_130_and_sends_nothing(campaign: Path, smtp: Server) -> None:
    """Interrupted while reading and rendering a long list: nothing sent, exit 130, no traceback."""
    write_list(campaign, 20000)
    process = start(campaign, smtp.env())
    time.sleep(1.5)  # importing and rendering; far from done with 20,000 recipients
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert smtp.messages == []


def _counting_journal(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every journal the send opens counts its committed write transactions."""
    commits = [0]

    class CountingJournal(Journal):
        @contextmanager
        def _write(self, **kwargs: bool) -> Iterator[sqlite3.Connection]:
            with super()._write(**kwargs) as db:
                yield db
            commits[0] += 1

    monkeypatch.setattr("newsletter.project.Journal", CountingJournal)
    return commits


@pytest.mark.parametrize(("rate", "most"), [(None, 1.0), (2000.0, 2.0)])
def test_a_sent_outcome_shares_the_next_sending_commit_unless_rate_limited(
    campaign: Path, smtp: Server, rate: float | None, most: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One commit a message when sending flat out; with a rate limit, outcomes are never held back."""
    addresses = write_list(campaign, 60)
    write_env(campaign, smtp.env())
    project = api.load_project(campaign, environ={})
    commits = _counting_journal(monkeypatch)
    summary = send(project, options=SendOptions(connections=2, rate=rate)).summary
    assert summary.sent == 60 and received_counts(smtp) == Counter(addresses)
    assert {state for state, _, _ in journal_rows(campaign).values()} == {"sent"}  # the held ones were flushed
    # the lock and the recovery, then a commit a message, a final flush per connection, the run's record
    assert commits[0] <= 2 + 60 * most + 2 + 1
    if rate is not None:
        assert commits[0] == 2 + 120 + 1
