"""Unsubscribing every address the list accepts (issue 13, finding 6, and `unsubscribed.csv` of finding 2).

An address may hold `#`, `&`, `/`, `?`, `%`, `+`, `=` or quotes, or letters that
case-folding merges (`ß` and `ss`). Its link must reach the server intact, its row
in `unsubscribed.csv` must read back as that address and no other, the row must not
be a comment or a spreadsheet formula, and the file must not be a planted link.
"""

from __future__ import annotations

import csv
import os
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.delivery.plan import Plan, SendOptions
from newsletter.delivery.suppression import add_unsubscribed, read_address_file, read_unsubscribed
from newsletter.errors import InputError
from newsletter.inputs.addresses import address_key, check_address
from newsletter.inputs.folder import UNSUBSCRIBED
from newsletter.inputs.recipients import Recipient
from newsletter.inputs.settings import Secret
from newsletter.message.unsubscribe import make_token, verify_token
from newsletter.web.unsubscribe import UnsubscribeApp
from tests.conftest import write_env
from tests.security.conftest import cli, make_campaign, serve
from tests.security.one_click import (
    LIST_ID,
    PATH_URL,
    QUERY_URL,
    SECRET,
    header_link,
    post_one_click,
    signed_links,
    unsubscribe_server,
)

# Every character RFC 5322 allows unquoted in a local part, and letters that change
# under case-folding or lower-casing (ß, ς, Cyrillic, a fullwidth letter).
_ATEXT = "abcXYZ019!#$%&'*+-/=?^_`{|}~ßẞςΣяЯユÄä"
_LOCAL = st.lists(st.text(_ATEXT, min_size=1, max_size=6), min_size=1, max_size=3).map(".".join)
_DOMAIN = st.sampled_from(["example.org", "News.Example.ORG", "xn--r8jz45g.jp", "例え.jp", "bücher.example"])


def _accepted(local: str, domain: str) -> str | None:
    """The address as the list keeps it, or None when the list refuses it."""
    try:
        return check_address(f"{local}@{domain}")[0]
    except ValueError:
        return None


def _suppressed(path: Path, *addresses: str) -> list[str]:
    """Which of `addresses` a send would skip because of `path`, decided by the send's own Plan."""
    plan = Plan(None, SendOptions(), unsubscribed=read_unsubscribed(path))
    recipients = [Recipient(line=n, email=a, fields={"email": a}) for n, a in enumerate(addresses, start=2)]
    sent = {r.email for r in plan.select(recipients)}
    return [a for a in addresses if a not in sent]


@pytest.mark.parametrize("url", [QUERY_URL, PATH_URL])
def test_every_address_the_list_accepts_round_trips_link_server_and_file(tmp_path: Path, url: str) -> None:
    target = tmp_path / UNSUBSCRIBED
    posted: list[str] = []
    with unsubscribe_server(target, url=url) as port:

        @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(local=_LOCAL, domain=_DOMAIN)
        def round_trip(local: str, domain: str) -> None:
            address = _accepted(local, domain)
            if address is None or address_key(address) in {address_key(a) for a in posted}:
                return
            link = header_link(address, url)
            assert post_one_click(port, link) == 200, (address, link)
            posted.append(address)
            assert read_address_file(target)[-1] == address  # the row reads back as exactly this address
            assert read_unsubscribed(target) == {address_key(a) for a in posted}  # and nothing else
            assert _suppressed(target, address) == [address]
            folded = _accepted(*address.casefold().rsplit("@", 1))
            if folded is not None and address_key(folded) not in {address_key(a) for a in posted}:
                assert _suppressed(target, folded) == []  # `STRASSE`'s row does not silence `straße`

        round_trip()
    assert len(posted) > 30  # the property ran on many accepted addresses, not on refusals


@pytest.mark.parametrize("local", ["a#b", "#news", "a&b", "a/b", "a?b", "a%b", "a%2Fb", "a+b", "o'brien", "a=b"])
def test_links_with_url_syntax_in_the_address_are_answered(tmp_path: Path, local: str) -> None:
    address = f"{local}@example.org"
    target = tmp_path / UNSUBSCRIBED
    for url in (QUERY_URL, PATH_URL):
        with unsubscribe_server(target, url=url) as port:
            assert post_one_click(port, header_link(address, url)) == 200, url
    assert read_address_file(target) == [address]  # once: the second server saw the first one's row


def test_a_token_for_strasse_does_not_unsubscribe_strasse_with_eszett(tmp_path: Path) -> None:
    secret = Secret(SECRET)
    strasse, eszett = "strasse@example.org", "straße@example.org"
    assert not verify_token(secret, LIST_ID, eszett, make_token(secret, LIST_ID, strasse))
    assert not verify_token(secret, LIST_ID, strasse, make_token(secret, LIST_ID, eszett))
    assert verify_token(secret, LIST_ID, "Strasse@Example.org", make_token(secret, LIST_ID, strasse))  # case only
    # strasse's link with the address edited to straße: refused by the server, nothing recorded.
    target = tmp_path / UNSUBSCRIBED
    forged = header_link(strasse).replace("email=strasse@", "email=stra%C3%9Fe@")
    assert forged != header_link(strasse)
    with unsubscribe_server(target) as port:
        assert post_one_click(port, forged) == 403
        assert not target.exists()
        assert post_one_click(port, header_link(strasse)) == 200
    assert _suppressed(target, eszett, strasse, "STRASSE@example.org") == [strasse, "STRASSE@example.org"]


def test_a_row_starting_with_hash_is_an_address_not_a_comment(tmp_path: Path) -> None:
    target = tmp_path / UNSUBSCRIBED
    assert add_unsubscribed(target, ["#news@example.org", "plain@example.org"]) == [
        "#news@example.org",
        "plain@example.org",
    ]
    assert target.read_text(encoding="utf-8").splitlines()[1].startswith('"#news@example.org",')  # quoted
    assert _suppressed(target, "#news@example.org", "news@example.org") == ["#news@example.org"]
    assert add_unsubscribed(target, ["#NEWS@example.org"]) == []  # listed already
    # A file that earlier versions wrote (unquoted) or a person edited: real comments stay comments.
    with target.open("a", encoding="utf-8", newline="") as stream:
        stream.write("# removed on request, see ticket 12\n#old@example.org,2024-01-01T00:00:00Z,one-click\n")
    assert read_unsubscribed(target) == {"#news@example.org", "plain@example.org", "#old@example.org"}


@pytest.mark.parametrize(
    "address",
    [
        "=1+2@example.org",
        "+1@example.org",
        "-2@example.org",
        "=cmd|'x'!A0@example.org",
        "'=x@example.org",  # an apostrophe of its own: kept, and one more is written in front
        "''-y@example.org",
    ],
)
def test_formula_like_addresses_are_written_inert_and_read_back_exactly(tmp_path: Path, address: str) -> None:
    target = tmp_path / UNSUBSCRIBED
    assert add_unsubscribed(target, [address]) == [address]
    raw = target.read_text(encoding="utf-8").splitlines()[1]
    assert raw.startswith('"')  # quoted: no delimiter or quote in it can shift the columns
    cell = next(csv.reader([raw]))[0]
    assert cell[0] not in "=+-@\t\r"  # a spreadsheet shows it as text
    assert read_address_file(target) == [address]
    assert read_unsubscribed(target) == {address_key(address)}
    assert _suppressed(target, address) == [address]


def test_files_written_by_earlier_versions_are_still_read(tmp_path: Path) -> None:
    target = tmp_path / UNSUBSCRIBED
    target.write_bytes(
        "\ufeffemail,added,source\r\n"
        "Anna.Petrova@Academy.example.org,2024-01-01T00:00:00Z,cli\r\n"
        "bob@example.org,2024-01-02T00:00:00Z,one-click\r\n"
        "# a note someone added\r\n"
        "\r\n"
        "email,added,source\r\n"
        "=1+2@example.org,2024-01-03T00:00:00Z,one-click\r\n"
        "carol@example.org,2024-01-04T00:00:00Z,cli".encode()  # no line break at the end: edited by hand
    )
    expected = {"anna.petrova@academy.example.org", "bob@example.org", "=1+2@example.org", "carol@example.org"}
    assert read_unsubscribed(target) == expected
    assert add_unsubscribed(target, ["dave@example.org", "Carol@example.org"]) == ["dave@example.org"]
    assert read_unsubscribed(target) == {*expected, "dave@example.org"}
    lines = target.read_text(encoding="utf-8").splitlines()
    assert lines[-2] == "carol@example.org,2024-01-04T00:00:00Z,cli"  # the unfinished line kept whole
    assert lines[-1].startswith('"dave@example.org",')


def test_links_in_sent_messages_unsubscribe_unusual_addresses_and_the_next_campaign_skips_them(
    tmp_path: Path,
) -> None:
    leaving = ["a#b&c/d?e%f+g=h@example.org", "#news@example.org", "=1+2@example.org", "straße@example.org"]
    # Not strasse@ beside straße@: the list itself still takes them for one address (case-folded).
    staying = ["o'brien@example.org", "plain@example.org"]
    rows = "".join(f"{address},Reader\n" for address in leaving + staying)
    campaign = make_campaign(tmp_path / "campaign", csv=f"email,name\n{rows}")
    with serve(smtputf8=True) as smtp:
        write_env(campaign, smtp.env(NEWSLETTER_UNSUBSCRIBE_URL=QUERY_URL, NEWSLETTER_SECRET=SECRET))
        first = cli(campaign, "send", "--yes")
        assert first.exit_code == 0, first.output
        received = smtp.recorder.by_recipient()
        assert sorted(received) == sorted(leaving + staying)
        with unsubscribe_server(campaign / UNSUBSCRIBED) as port:
            for address in leaving:
                message = received[address][0].message
                assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
                link = str(message["List-Unsubscribe"]).strip("<> ")
                assert post_one_click(port, link) == 200, (address, link)
        announcement = campaign / "announcement.md"
        announcement.write_text(
            announcement.read_text(encoding="utf-8").replace('id = "security-test"', 'id = "second"'), encoding="utf-8"
        )
        smtp.recorder.messages.clear()
        second = cli(campaign, "send", "--yes")
        assert second.exit_code == 0, second.output
        assert sorted(smtp.recorder.by_recipient()) == sorted(staying)
    assert "4 suppressed (4 unsubscribed" in second.output


# -- finding 2: unsubscribed.csv is never opened through a link ---------------------------------


def test_a_planted_link_at_unsubscribed_csv_is_refused_by_every_writer_and_reader(tmp_path: Path) -> None:
    campaign = make_campaign(tmp_path / "campaign")
    victim = tmp_path / "bashrc"
    victim.write_text("export PATH=/usr/bin\n", encoding="utf-8")
    (campaign / UNSUBSCRIBED).symlink_to(victim)

    with pytest.raises(InputError, match=r"unsubscribed\.csv: is a symbolic link") as caught:
        add_unsubscribed(campaign / UNSUBSCRIBED, ["ann@example.org"])
    assert caught.value.path == campaign / UNSUBSCRIBED
    with pytest.raises(InputError, match="symbolic link"):
        read_unsubscribed(campaign / UNSUBSCRIBED)
    with pytest.raises(InputError, match="symbolic link"):
        UnsubscribeApp(signed_links(), campaign / UNSUBSCRIBED)

    result = cli(campaign, "unsubscribe", "ann@example.org")
    assert result.exit_code == 2
    assert "unsubscribed.csv: is a symbolic link" in result.output
    assert cli(campaign, "send", "--yes").exit_code == 2  # the send reads it: refused before sending
    assert not (campaign / "outbox").exists()
    assert victim.read_text(encoding="utf-8") == "export PATH=/usr/bin\n"


def test_a_dangling_link_creates_nothing_where_it_points(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "created.csv"
    elsewhere.parent.mkdir()
    target = tmp_path / UNSUBSCRIBED
    target.symlink_to(elsewhere)
    with pytest.raises(InputError, match="symbolic link"):
        add_unsubscribed(target, ["ann@example.org"])
    assert not elsewhere.exists()


def test_a_link_planted_while_the_server_runs_records_nothing_through_it(tmp_path: Path) -> None:
    target = tmp_path / UNSUBSCRIBED
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched\n", encoding="utf-8")
    with unsubscribe_server(target) as port:
        assert post_one_click(port, header_link("ann@example.org")) == 200
        target.unlink()
        target.symlink_to(victim)
        assert post_one_click(port, header_link("bob@example.org")) == 503
    assert victim.read_text(encoding="utf-8") == "untouched\n"


def test_a_fifo_at_unsubscribed_csv_is_refused_without_hanging(tmp_path: Path) -> None:
    target = tmp_path / UNSUBSCRIBED
    os.mkfifo(target)
    outcome: list[BaseException | set[str]] = []

    def read() -> None:
        try:
            outcome.append(read_unsubscribed(target))
        except BaseException as exc:  # the outcome is asserted below
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # blocked in open(): let it go before failing
        with open(target, "wb"):
            pass
        reader.join(5)
        pytest.fail("reading a FIFO at unsubscribed.csv blocked")
    assert isinstance(outcome[0], InputError)
    assert "not a regular file" in str(outcome[0])
