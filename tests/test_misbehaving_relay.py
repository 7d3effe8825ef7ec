"""Exactly once against a relay that breaks the protocol: every reply matched to its command.

Each fault class of the scripted relay (tests/rawrelay.py) gets a test of its own,
then hypothesis plays random sequences of them over one to three connections.
The invariant is held against what the relay really kept, not against what it said:
nobody gets the message twice, every `sent` row was delivered, every delivered
message the relay did not confirm properly is `unknown` (never retried on its own),
and every undelivered recipient is pending, deferred, failed or unknown.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import newsletter
from newsletter.delivery.plan import SendOptions
from newsletter.delivery.states import DEFERRED, FAILED, SENT, UNKNOWN
from newsletter.errors import NewsletterError
from tests.faults import write_list
from tests.rawrelay import END_FAULTS, FAULTS, Relay, misbehaving_relay

FAST = SendOptions(connections=1, retry_delay=0.05, reconnect_delay=0.05, max_attempts=3)


def _send(folder: Path, relay: Relay, options: SendOptions = FAST) -> newsletter.SendResult | NewsletterError:
    try:
        project = newsletter.load(folder, environ=relay.env)
        return newsletter.send(project, options=options, confirm=lambda asked: True)
    except NewsletterError as exc:  # a run may stop; the journal must still be right
        return exc


def _states(folder: Path, relay: Relay, addresses: list[str]) -> dict[str, str]:
    project = newsletter.load(folder, environ=relay.env)
    with project.journal() as journal:
        return journal.states(addresses)


def _hold(delivered: list[str], states: dict[str, str], addresses: list[str]) -> None:
    """The invariant, against what the relay kept."""
    for address in addresses:
        copies = delivered.count(address)
        state = states.get(address)
        assert copies <= 1, f"{address} delivered {copies} times"
        if state == SENT:
            assert copies == 1, f"{address} recorded sent but never delivered"
        if copies == 1:
            assert state in (SENT, UNKNOWN), f"{address} delivered but recorded {state}"
        else:
            assert state in (None, DEFERRED, FAILED, UNKNOWN), f"{address} not delivered but recorded {state}"


@pytest.fixture
def folder(campaign: Path) -> Path:
    return campaign


@pytest.mark.parametrize(
    ("fault", "first_state"),
    [
        ("good", SENT),
        ("delay", SENT),
        ("nocode", UNKNOWN),
        ("extra", UNKNOWN),
        ("silent", UNKNOWN),
        ("drip", UNKNOWN),
        ("close_after", UNKNOWN),
        ("close_before", UNKNOWN),
        ("refuse5", FAILED),
        ("refuse4", SENT),  # retried in the same run
        ("data250", SENT),  # never went out; sent again on a fresh connection
        ("mail_nocode", SENT),
        ("rcpt_extra", SENT),
    ],
)
def test_each_fault_leaves_the_journal_true(folder: Path, fault: str, first_state: str) -> None:
    addresses = write_list(folder, 3)
    with misbehaving_relay([fault]) as relay:
        started = time.monotonic()
        _send(folder, relay)
        elapsed = time.monotonic() - started
        states = _states(folder, relay, addresses)
        assert states[addresses[0]] == first_state, states
        assert [states[a] for a in addresses[1:]] == [SENT, SENT]
        _hold(relay.delivered, states, addresses)
        _send(folder, relay)  # a rerun sends nobody twice and resends no unknown
        _hold(relay.delivered, _states(folder, relay, addresses), addresses)
        assert sorted(set(relay.delivered)) == sorted(
            a for a in addresses if a != addresses[0] or END_FAULTS.get(fault, True) or first_state == SENT
        )
    assert elapsed < 15, "a relay's silence or drip-feed must cost at most the deadline"


def test_data_answered_250_sends_no_message_as_sent(folder: Path) -> None:
    """The relay never entered data mode: nothing went out for those, so none may read `sent`
    before its own 250 to the final dot."""
    addresses = write_list(folder, 6)
    with misbehaving_relay(["data250", "good", "data250", "data250", "good", "good"]) as relay:
        _send(folder, relay)
        states = _states(folder, relay, addresses)
    assert sorted(relay.delivered) == sorted(addresses)
    assert all(states[a] == SENT for a in addresses)


@pytest.mark.parametrize("greeting", ["ehlo_bad", "greeting_bad"])
def test_a_garbled_greeting_or_ehlo_is_never_used(folder: Path, greeting: str) -> None:
    """A malformed EHLO line once shifted every later reply by one: 30 of 30 `sent`, 0 received."""
    addresses = write_list(folder, 5)
    with misbehaving_relay(greetings=[greeting] * 20) as relay:
        result = _send(folder, relay)
        states = _states(folder, relay, addresses)
    assert isinstance(result, NewsletterError), "a relay that garbles every greeting cannot be used"
    assert relay.delivered == [] and states == {}


def test_a_drip_fed_reply_is_bounded_by_the_deadline(folder: Path) -> None:
    """SMTP_TIMEOUT bounds a whole reply, not each byte of it."""
    addresses = write_list(folder, 1)
    with misbehaving_relay(["drip"]) as relay:
        relay.drip_pause = 0.5  # 18 bytes: 9 s, far past the 1 s deadline
        started = time.monotonic()
        _send(folder, relay)
        elapsed = time.monotonic() - started
        states = _states(folder, relay, addresses)
    assert states[addresses[0]] == UNKNOWN and relay.delivered == addresses
    assert elapsed < 6, elapsed


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    faults=st.lists(st.sampled_from(FAULTS), max_size=14),
    greetings=st.lists(st.sampled_from(["good", "good", "ehlo_bad", "greeting_bad"]), max_size=4),
    connections=st.integers(1, 3),
)
def test_exactly_once_against_random_relay_behaviour(
    tmp_path_factory: pytest.TempPathFactory, campaign: Path, faults: list[str], greetings: list[str], connections: int
) -> None:
    folder = tmp_path_factory.mktemp("random")
    for item in campaign.iterdir():
        if item.is_dir():
            shutil.copytree(item, folder / item.name)
        else:
            shutil.copyfile(item, folder / item.name)
    addresses = write_list(folder, 8)
    options = SendOptions(connections=connections, retry_delay=0.02, reconnect_delay=0.02, max_attempts=2)
    with misbehaving_relay(faults, greetings) as relay:
        relay.drip_pause = 0.15
        for _ in range(12):  # runs stop and start again, as a user would, until the script is played
            _send(folder, relay, options)
            _hold(relay.delivered, _states(folder, relay, addresses), addresses)
            if not relay.faults and not relay.greetings:
                break
        _send(folder, relay, options)  # the relay behaves from now on
        states = _states(folder, relay, addresses)
        _hold(relay.delivered, states, addresses)
    # Whoever was still undecided got it from the well-behaved relay by now.
    for address in addresses:
        assert states.get(address) in (SENT, FAILED, UNKNOWN, DEFERRED)
