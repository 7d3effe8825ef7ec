"""`check --dns`: what the From domain's DNS records will make of our mail, before the first send.

Gmail and Yahoo (since 2024) and Outlook.com (since May 2025) want bulk senders to
pass SPF and DKIM, publish DMARC and align the From domain with one of them; every
sender needs SPF or DKIM. Each finding says what a provider will do and what to
publish. The records are read with dnspython; every query has a timeout, and a
question the DNS does not answer is a warning, never a crash: the check must not
stop a send because a resolver is down.

Organizational domains are approximated by the last two labels (no public suffix
list): `mail.example.org` and `example.org` align, `a.co.uk` and `b.co.uk` would too.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from newsletter.checks.findings import Finding
from newsletter.message.dkim import ED25519

if TYPE_CHECKING:
    from newsletter.message.dkim import DKIMKey
    from newsletter.project import Project

TIMEOUT = 2.0  # seconds per try of one server
LIFETIME = 5.0  # seconds for one question in all
SPF_LOOKUP_LIMIT = 10  # RFC 7208 4.6.4
_LOOKUP_TERMS = ("include", "a", "mx", "ptr", "exists")
_PROVIDERS = "Gmail, Yahoo and Outlook.com"


class NoAnswer(Exception):
    """The DNS did not answer (timeout, refused, server failure): nothing is known."""


@dataclass(frozen=True)
class Signing:
    """What we will sign with: the `d=` domain, and per selector the public key and its algorithm."""

    domain: str
    keys: tuple[tuple[str, str, bytes], ...]  # (selector, "rsa" | "ed25519", public key bytes)


class Resolver:
    """TXT and MX questions with timeouts always set; `server` is HOST or HOST:PORT (default: the system's)."""

    def __init__(self, server: str | None = None, *, timeout: float = TIMEOUT, lifetime: float = LIFETIME) -> None:
        import dns.resolver

        if server is None:
            try:
                self._resolver = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                self._resolver = dns.resolver.Resolver(configure=False)
        else:
            host, port = parse_server(server)
            self._resolver = dns.resolver.Resolver(configure=False)
            self._resolver.nameservers = [host]
            self._resolver.port = port
        self._resolver.timeout = timeout
        self._resolver.lifetime = lifetime

    def _ask(self, name: str, kind: str) -> list[object]:
        import dns.exception
        import dns.resolver

        try:
            return list(self._resolver.resolve(name, kind, raise_on_no_answer=False) or [])
        except dns.resolver.NXDOMAIN:
            return []
        except (dns.exception.DNSException, OSError) as exc:
            raise NoAnswer(f"no answer for {name} {kind} ({type(exc).__name__})") from None

    def txt(self, name: str) -> list[str]:
        """The TXT records at `name`, each one string (its parts joined); [] when there is none."""
        records = []
        for answer in self._ask(name, "TXT"):
            strings = getattr(answer, "strings", ())
            records.append(b"".join(strings).decode("utf-8", "replace"))
        return records

    def mx(self, name: str) -> list[str]:
        return [str(getattr(answer, "exchange", "")).rstrip(".") for answer in self._ask(name, "MX")]


def parse_server(text: str) -> tuple[str, int]:
    """`HOST`, `HOST:PORT`, `[v6]:PORT` → (host, port); ValueError says what was wrong."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^:\s]+)(?::(\d+))?|([0-9A-Fa-f:]+)", text.strip())
    if not match:
        raise ValueError(f"expected HOST or HOST:PORT, got {text!r}")
    host = match.group(1) or match.group(3) or match.group(5)
    port = int(match.group(2) or match.group(4) or 53)
    if not 0 < port < 65536:
        raise ValueError(f"no such port: {port}")
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"give the DNS server as an IP address, not {host!r}") from None
    return host, port


def organization(domain: str) -> str:
    return ".".join(domain.lower().rstrip(".").split(".")[-2:])


def aligned(one: str, other: str, *, strict: bool = False) -> bool:
    one, other = one.lower().rstrip("."), other.lower().rstrip(".")
    return one == other if strict else organization(one) == organization(other)


def _spf_record(resolver: Resolver, domain: str) -> list[str]:
    return [r for r in resolver.txt(domain) if r.lower().split(" ", 1)[0] == "v=spf1"]


def spf_lookups(resolver: Resolver, domain: str, *, seen: frozenset[str] = frozenset()) -> int:
    """DNS lookups an SPF evaluation of `domain` takes (RFC 7208 4.6.4), includes followed.

    ValueError for a record that does not parse or a loop; NoAnswer passes through.
    """
    records = _spf_record(resolver, domain)
    if len(records) != 1:
        raise ValueError(f"{domain} has {len(records)} SPF records where one is needed")
    count = 0
    for term in records[0].split()[1:]:
        name, _, value = term.lstrip("+-~?").partition(":")
        name = name.lower()
        if "=" in name:
            modifier, _, target = term.partition("=")
            if modifier.lower() == "redirect":
                count += 1 + _follow(resolver, target, seen | {domain})
            continue
        name = name.split("/", 1)[0]
        if name in ("all", "ip4", "ip6"):
            continue
        if name not in _LOOKUP_TERMS:
            raise ValueError(f"unknown mechanism {term!r} in the SPF record of {domain}")
        count += 1
        if name == "include":
            if not value:
                raise ValueError(f"'include' without a domain in the SPF record of {domain}")
            count += _follow(resolver, value, seen | {domain})
    return count


def _follow(resolver: Resolver, target: str, seen: frozenset[str]) -> int:
    target = target.lower().rstrip(".")
    if target in seen:
        raise ValueError(f"the SPF record includes itself through {target}")
    if len(seen) > SPF_LOOKUP_LIMIT + 2:
        return 0  # already past the limit: no need to walk further
    return spf_lookups(resolver, target, seen=seen)


def _dmarc(resolver: Resolver, domain: str) -> tuple[str, dict[str, str]] | None:
    """The DMARC record that applies to `domain` (its own, else its organizational domain's)."""
    for name in dict.fromkeys((domain, organization(domain))):
        records = [r for r in resolver.txt(f"_dmarc.{name}") if r.replace(" ", "").lower().startswith("v=dmarc1")]
        if records:
            tags = {}
            for part in records[0].split(";"):
                key, _, value = part.strip().partition("=")
                if key:
                    tags[key.strip().lower()] = value.strip()
            return name, tags
    return None


def _dkim_record(record: str) -> dict[str, str]:
    tags = {}
    for part in record.split(";"):
        key, _, value = part.strip().partition("=")
        if key:
            tags[key.strip().lower()] = re.sub(r"\s+", "", value)
    return tags


def domain_findings(
    *, from_domain: str, envelope_domain: str, signing: Signing | None, resolver: Resolver
) -> list[Finding]:
    """Every finding for the From domain, the envelope (bounce) domain and our DKIM keys."""
    findings: list[Finding] = []
    checks: tuple[Callable[[], Iterator[Finding]], ...] = (
        lambda: _spf_findings(resolver, envelope_domain),
        lambda: _dkim_findings(resolver, from_domain, signing),
        lambda: _dmarc_findings(resolver, from_domain, envelope_domain, signing),
        lambda: _mx_findings(resolver, envelope_domain),
    )
    for check in checks:
        try:
            findings.extend(check())
        except NoAnswer as exc:
            findings.append(
                Finding("warning", "dns-no-answer", f"{exc}: this part of the domain check was skipped; run it again")
            )
    return findings


def _spf_findings(resolver: Resolver, domain: str) -> Iterator[Finding]:
    records = _spf_record(resolver, domain)
    if not records:
        yield Finding(
            "warning",
            "spf-missing",
            f"{domain} publishes no SPF record: {_PROVIDERS} want SPF and DKIM from bulk senders and "
            "junk or reject mail that has neither; publish a TXT record at "
            f"{domain} such as \"v=spf1 include:<your relay's SPF domain> -all\" (your relay names it)",
        )
        return
    try:
        count = spf_lookups(resolver, domain)
    except ValueError as exc:
        yield Finding(
            "error",
            "spf-invalid",
            f"{exc}: receivers treat this SPF as a permanent error (no pass), so DMARC can rely on "
            "DKIM alone; publish one record that parses",
        )
        return
    if count > SPF_LOOKUP_LIMIT:
        yield Finding(
            "error",
            "spf-lookups",
            f"the SPF record of {domain} takes {count} DNS lookups, over the limit of {SPF_LOOKUP_LIMIT}: "
            "receivers stop with a permanent error and SPF never passes; replace includes you do not "
            "use, or ip4:/ip6: ranges for them",
        )
    else:
        yield Finding("info", "spf-ok", f"SPF of {domain} parses, {count} DNS lookup(s) of {SPF_LOOKUP_LIMIT}")


def _dkim_findings(resolver: Resolver, from_domain: str, signing: Signing | None) -> Iterator[Finding]:
    if signing is None:
        yield Finding(
            "info",
            "dkim-not-signing",
            f"newsletter does not sign (no NEWSLETTER_DKIM_KEY): unless your relay signs with d={from_domain}, "
            f"DMARC relies on SPF alone; `newsletter dkim keygen --selector NAME` makes a key",
        )
        return
    for selector, kind, public in signing.keys:
        name = f"{selector}._domainkey.{signing.domain}"
        records = [r for r in resolver.txt(name) if "p=" in r]
        if not records:
            yield Finding(
                "error",
                "dkim-missing",
                f"no DKIM record at {name}: receivers cannot check our {kind} signature and treat it as "
                "failing; publish the TXT record `newsletter dkim keygen` printed for this key",
            )
            continue
        tags = _dkim_record(records[0])
        published_kind = tags.get("k", "rsa").lower()
        try:
            published = base64.b64decode(tags.get("p", ""), validate=True)
        except ValueError:
            published = b""
        if published_kind != kind or published != public:
            yield Finding(
                "error",
                "dkim-mismatch",
                f"the DKIM record at {name} does not match NEWSLETTER_DKIM_KEY ({kind}): every signature "
                "fails, and with DMARC the mail is junked or rejected; publish the record of this key "
                "(or set the key whose record is published)",
            )
        else:
            yield Finding("info", "dkim-ok", f"DKIM record at {name} matches our {kind} key")


def _dmarc_findings(
    resolver: Resolver, from_domain: str, envelope_domain: str, signing: Signing | None
) -> Iterator[Finding]:
    found = _dmarc(resolver, from_domain)
    if found is None:
        yield Finding(
            "warning",
            "dmarc-missing",
            f"{from_domain} publishes no DMARC record: Gmail and Yahoo reject bulk mail from such "
            "domains, and Outlook.com rejects it with 550 5.7.515; publish a TXT record at "
            f"_dmarc.{organization(from_domain)}: \"v=DMARC1; p=none; rua=mailto:dmarc@{organization(from_domain)}\"",
        )
        return
    where, tags = found
    policy = tags.get("p", "").lower()
    if policy not in ("none", "quarantine", "reject"):
        yield Finding(
            "warning",
            "dmarc-invalid",
            f"the DMARC record at _dmarc.{where} has no valid p= tag (none, quarantine or reject): "
            "receivers may ignore it; add p=none to start",
        )
        policy = "none"
    if "rua" not in tags:
        yield Finding(
            "info",
            "dmarc-no-rua",
            f"the DMARC record at _dmarc.{where} has no rua=: nobody receives the reports that show "
            f"which mail fails; add rua=mailto:dmarc@{where}",
        )
    dkim_aligned = signing is not None and aligned(signing.domain, from_domain, strict=tags.get("adkim") == "s")
    spf_aligned = aligned(envelope_domain, from_domain, strict=tags.get("aspf") == "s")
    has_spf = bool(_spf_record(resolver, envelope_domain))
    if signing is not None and not dkim_aligned:
        yield Finding(
            "warning" if policy == "none" else "error",
            "dkim-unaligned",
            f"we sign with d={signing.domain}, which does not align with From @{from_domain}: the signature "
            "does not count for DMARC; set NEWSLETTER_DKIM_DOMAIN to the From domain (or leave it unset)",
        )
    if not dkim_aligned and not (spf_aligned and has_spf):
        effect = {
            "reject": "every provider that checks DMARC rejects the mail",
            "quarantine": "providers put the mail in spam",
            "none": f"{_PROVIDERS} count it as unauthenticated and junk or reject bulk mail",
        }[policy]
        yield Finding(
            "warning" if policy == "none" else "error",
            "dmarc-unaligned",
            f"DMARC p={policy} at _dmarc.{where}, and neither an aligned DKIM signature nor an aligned "
            f"SPF record: {effect}; sign with a key for {from_domain} (NEWSLETTER_DKIM_KEY) or publish SPF",
        )
    else:
        how = "DKIM" if dkim_aligned else "SPF (when the relay's address is in the record)"
        yield Finding("info", "dmarc-ok", f"DMARC p={policy} at _dmarc.{where}; From aligns through {how}")


def _mx_findings(resolver: Resolver, domain: str) -> Iterator[Finding]:
    if not resolver.mx(domain):
        yield Finding(
            "warning",
            "bounce-no-mx",
            f"the envelope sender's domain {domain} has no MX record: bounces cannot come back, and some "
            "receivers refuse mail from a domain that cannot receive; publish an MX record for it",
        )


def signing_of(keys: Sequence[DKIMKey]) -> Signing | None:
    """What the project's DKIM keys sign with, as the check compares it with the DNS."""
    if not keys:
        return None
    entries = tuple((k.selector, "ed25519" if k.algorithm == ED25519 else "rsa", k.public_bytes()) for k in keys)
    return Signing(keys[0].domain, entries)


def project_findings(project: Project, *, server: str | None = None) -> list[Finding]:
    """The domain check for a loaded campaign: its From domain, envelope sender and DKIM keys."""
    from newsletter.message.headers import ascii_domain

    sender = project.builder.sender
    signer = project.builder.signer
    domain = ascii_domain(sender.domain)
    return domain_findings(
        from_domain=domain,
        envelope_domain=domain,  # the envelope sender is the From address (`Envelope`)
        signing=signing_of(signer.keys) if signer is not None else None,
        resolver=Resolver(server),
    )
