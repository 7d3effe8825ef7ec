"""`check --dns` against a real authoritative DNS server (NSD) on 127.0.0.1, with zone files
for good and broken example domains, written by these tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.checks.dns import Resolver, Signing, domain_findings, parse_server
from newsletter.message.dkim import DKIMKey, generate_key, txt_strings
from tests.conftest import invoke, write_env
from tests.smtpd import free_port

NSD = shutil.which("nsd") or "/usr/sbin/nsd"
SELECTOR = "nl2026"

# Skipped where NSD is missing, except in CI (`CI` set), which installs it: there it must run.
pytestmark = pytest.mark.skipif(
    not Path(NSD).exists() and not os.environ.get("CI"), reason="needs NSD (apt-get install nsd)"
)


def _zone(domain: str, records: list[str]) -> str:
    head = [
        f"$ORIGIN {domain}.",
        "$TTL 300",
        f"@ IN SOA ns.{domain}. hostmaster.{domain}. 1 3600 600 86400 300",
        f"@ IN NS ns.{domain}.",
        "ns IN A 127.0.0.1",
    ]
    return "\n".join(head + records) + "\n"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[DKIMKey, Path]]:
    folder = tmp_path_factory.mktemp("dns-keys")
    made = {}
    for name in ("ours", "other"):
        key, pem = generate_key(selector=SELECTOR, domain="good.test")
        (folder / f"{name}.pem").write_bytes(pem)
        made[name] = (key, folder / f"{name}.pem")
    return made


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, tuple[DKIMKey, Path]]) -> Iterator[str]:
    """NSD answering for good.test and five broken domains; yields "127.0.0.1:PORT"."""
    folder = tmp_path_factory.mktemp("nsd")
    ours = txt_strings(keys["ours"][0].dns_record())
    other = txt_strings(keys["other"][0].dns_record())
    dkim = f"{SELECTOR}._domainkey IN TXT {ours}"
    mx = "@ IN MX 10 mx\nmx IN A 127.0.0.1"
    includes = " ".join(f"include:i{n}.lookups.test" for n in range(11))
    zones = {
        "good.test": [
            '@ IN TXT "v=spf1 ip4:192.0.2.1 include:_spf.good.test -all"',
            '_spf IN TXT "v=spf1 ip4:192.0.2.2 -all"',
            dkim,
            '_dmarc IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@good.test"',
            mx,
        ],
        "nospf.test": [dkim, '_dmarc IN TXT "v=DMARC1; p=none; rua=mailto:d@nospf.test"', mx],
        "lookups.test": [
            f"@ IN TXT {txt_strings(f'v=spf1 {includes} -all')}",  # over 255 characters: two strings
            *(f'i{n} IN TXT "v=spf1 ip4:192.0.2.{n} -all"' for n in range(11)),
            dkim,
            '_dmarc IN TXT "v=DMARC1; p=none; rua=mailto:d@lookups.test"',
            mx,
        ],
        "badkey.test": [
            '@ IN TXT "v=spf1 ip4:192.0.2.1 -all"',
            f"{SELECTOR}._domainkey IN TXT {other}",
            '_dmarc IN TXT "v=DMARC1; p=quarantine; rua=mailto:d@badkey.test"',
            mx,
        ],
        "nodmarc.test": ['@ IN TXT "v=spf1 ip4:192.0.2.1 -all"', dkim, mx],
        "reject.test": ['_dmarc IN TXT "v=DMARC1; p=reject"', mx],
    }
    # For the command, whose From address must be one email-validator accepts.
    zones["example.org"] = zones["good.test"]
    zones["example.net"] = zones["reject.test"]
    port = free_port()
    config = [
        "server:",
        f"  ip-address: 127.0.0.1@{port}",
        f"  port: {port}",
        '  username: ""',
        '  chroot: ""',
        f'  zonesdir: "{folder}"',
        f'  pidfile: "{folder}/nsd.pid"',
        f'  xfrdfile: "{folder}/xfrd.state"',
        f'  zonelistfile: "{folder}/zone.list"',
        '  database: ""',
        f'  logfile: "{folder}/nsd.log"',
        "  do-ip6: no",
        "  server-count: 1",
        "remote-control:",
        "  control-enable: no",
    ]
    for domain, records in zones.items():
        (folder / f"{domain}.zone").write_text(_zone(domain, records))
        config += ["zone:", f"  name: {domain}", f"  zonefile: {domain}.zone"]
    (folder / "nsd.conf").write_text("\n".join(config) + "\n")
    process = subprocess.Popen([NSD, "-d", "-c", str(folder / "nsd.conf")], stdin=subprocess.DEVNULL)
    server = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if Resolver(server, timeout=0.5, lifetime=1).txt("good.test"):
                    break
            except Exception:  # noqa: S110  (not up yet)
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log = (folder / "nsd.log").read_text() if (folder / "nsd.log").exists() else ""
                pytest.fail(f"NSD did not start: {log}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=10)


def findings(server: str, domain: str, signing: Signing | None) -> dict[str, str]:
    """code -> level for the findings about `domain`."""
    found = domain_findings(from_domain=domain, envelope_domain=domain, signing=signing, resolver=Resolver(server))
    return {f.code: f.level for f in found} | {f"{f.code}:text": f.message for f in found}


def signing(keys: dict[str, tuple[DKIMKey, Path]], domain: str, which: str = "ours") -> Signing:
    return Signing(domain, ((SELECTOR, "rsa", keys[which][0].public_bytes()),))


def test_all_good(dns_server: str, keys: dict[str, tuple[DKIMKey, Path]]) -> None:
    found = findings(dns_server, "good.test", signing(keys, "good.test"))
    assert found["spf-ok"] == "info" and "1 DNS lookup(s)" in found["spf-ok:text"]
    assert found["dkim-ok"] == "info"
    assert found["dmarc-ok"] == "info" and "p=reject" in found["dmarc-ok:text"]
    assert not [code for code, level in found.items() if level in ("error", "warning")]


def test_missing_spf(dns_server: str, keys: dict[str, tuple[DKIMKey, Path]]) -> None:
    found = findings(dns_server, "nospf.test", signing(keys, "nospf.test"))
    assert found["spf-missing"] == "warning"
    assert "v=spf1" in found["spf-missing:text"]
    assert found["dkim-ok"] == "info"  # DKIM aligns, so DMARC can still pass
    assert found["dmarc-ok"] == "info"


def test_spf_with_too_many_lookups(dns_server: str, keys: dict[str, tuple[DKIMKey, Path]]) -> None:
    found = findings(dns_server, "lookups.test", signing(keys, "lookups.test"))
    assert found.get("spf-lookups") == "error", found
    assert "11 DNS lookups" in found["spf-lookups:text"]


def test_dkim_record_that_does_not_match_the_key(dns_server: str, keys: dict[str, tuple[DKIMKey, Path]]) -> None:
    found = findings(dns_server, "badkey.test", signing(keys, "badkey.test"))
    assert found["dkim-mismatch"] == "error"
    assert "does not match NEWSLETTER_DKIM_KEY" in found["dkim-mismatch:text"]
    # The key whose record is published passes.
    assert findings(dns_server, "badkey.test", signing(keys, "badkey.test", "other"))["dkim-ok"] == "info"


def test_no_dmarc(dns_server: str, keys: dict[str, tuple[DKIMKey, Path]]) -> None:
    found = findings(dns_server, "nodmarc.test", signing(keys, "nodmarc.test"))
    assert found["dmarc-missing"] == "warning"
    assert "Outlook.com rejects it with 550 5.7.515" in found["dmarc-missing:text"]
    assert '"v=DMARC1; p=none; rua=mailto:dmarc@nodmarc.test"' in found["dmarc-missing:text"]


def test_reject_without_alignment(dns_server: str, keys: dict[str, tuple[DKIMKey, Path]]) -> None:
    # Signed with d=good.test for mail From @reject.test, and reject.test has no SPF.
    found = findings(dns_server, "reject.test", signing(keys, "good.test"))
    assert found["dkim-unaligned"] == "error"
    assert found["dmarc-unaligned"] == "error"
    assert "rejects the mail" in found["dmarc-unaligned:text"]
    assert found["dmarc-no-rua"] == "info"
    assert found["spf-missing"] == "warning"


def test_without_our_key_the_check_says_what_dmarc_relies_on(dns_server: str) -> None:
    found = findings(dns_server, "good.test", None)
    assert found["dkim-not-signing"] == "info"
    assert found["dmarc-ok"] == "info" and "SPF" in found["dmarc-ok:text"]
    found = findings(dns_server, "reject.test", None)
    assert found["dmarc-unaligned"] == "error"


def test_a_domain_the_server_does_not_know_is_findings_not_a_crash(dns_server: str) -> None:
    found = findings(dns_server, "unknown.example", None)
    assert all(level in ("warning", "info", "error") for code, level in found.items() if ":" not in code)
    assert "dns-no-answer" in found or "spf-missing" in found


# -- the command --------------------------------------------------------------------------


def test_check_dns_on_the_example_campaign(
    campaign: Path, dns_server: str, keys: dict[str, tuple[DKIMKey, Path]]
) -> None:
    write_env(
        campaign,
        {
            "NEWSLETTER_FROM": "Sergei Mozer <sergei.mozer@example.org>",
            "NEWSLETTER_DKIM_KEY": str(keys["ours"][1]),
            "NEWSLETTER_DKIM_SELECTOR": SELECTOR,
        },
    )
    result = invoke("--campaign", str(campaign), "check", "--dns", "--dns-server", dns_server)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"DKIM record at {SELECTOR}._domainkey.example.org matches our rsa key" in text
    assert "DMARC p=reject at _dmarc.example.org; From aligns through DKIM" in text

    write_env(campaign, {"NEWSLETTER_FROM": "Sergei Mozer <sergei.mozer@example.net>"})
    result = invoke("--campaign", str(campaign), "check", "--dns-server", dns_server)
    assert result.exit_code == 2
    assert "every provider that checks DMARC rejects the mail" in " ".join(result.output.split())


def test_no_dns_answer_is_a_warning_never_a_crash(campaign: Path) -> None:
    silent = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    result = invoke("--campaign", str(campaign), "check", "--dns", "--dns-server", silent)
    assert result.exit_code == 0, result.output
    assert "warning: no answer for" in " ".join(result.output.split())
    assert time.monotonic() - started < 60  # every question has its timeout


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1", ("127.0.0.1", 53)), ("127.0.0.1:5353", ("127.0.0.1", 5353)), ("[::1]:53", ("::1", 53))],
)
def test_parse_server(text: str, expected: tuple[str, int]) -> None:
    assert parse_server(text) == expected


def test_a_bad_dns_server_is_a_usage_error(campaign: Path) -> None:
    result = invoke("--campaign", str(campaign), "check", "--dns-server", "dns.example:99999")
    assert result.exit_code == 2
    assert "--dns-server" in result.output
