"""DKIM signing, checked with dkimpy's own `verify` on what a real SMTP server received.

The public keys are served to `verify` from the keys these tests generate, so every
signature is checked the way a receiver checks it: the bytes off the wire, relaxed
canonicalisation, the key looked up by selector and domain.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

dkim = pytest.importorskip("dkim")
pytest.importorskip("nacl")  # dkimpy verifies Ed25519 with PyNaCl

from newsletter.message.dkim import DKIMKey, generate_key, relaxed_body, relaxed_headers  # noqa: E402
from tests.conftest import invoke, write_env  # noqa: E402
from tests.smtpd import Server  # noqa: E402
from tests.test_attachments import COVER, plant, png, set_front_matter  # noqa: E402

DOMAIN = "example.org"
ANNA = "anna.petrova@academy.example.org"
UNSUBSCRIBE = "https://example.org/u?e={email}"


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[DKIMKey, Path]]:
    """An RSA-2048 and an Ed25519 key, in a folder outside every campaign folder."""
    folder = tmp_path_factory.mktemp("keys")
    made = {}
    for name, selector, ed in (("rsa", "nl2026r", False), ("ed25519", "nl2026e", True)):
        key, pem = generate_key(selector=selector, domain=DOMAIN, ed25519=ed)
        path = folder / f"{selector}.pem"
        path.write_bytes(pem)
        made[name] = (key, path)
    return made


def dns_for(*published: DKIMKey) -> object:
    """A `dnsfunc` for dkimpy that answers with the public halves of `published`."""
    records = {f"{key.record_name}.".encode(): key.dns_record().encode() for key in published}

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return lookup


def dkim_env(keys: dict[str, tuple[DKIMKey, Path]], which: str) -> dict[str, str]:
    chosen = [keys[name] for name in (("rsa", "ed25519") if which == "dual" else (which,))]
    return {
        "NEWSLETTER_DKIM_KEY": ", ".join(str(path) for _, path in chosen),
        "NEWSLETTER_DKIM_SELECTOR": ", ".join(key.selector for key, _ in chosen),
        "NEWSLETTER_UNSUBSCRIBE_URL": UNSUBSCRIBE,
    }


def signatures(data: bytes) -> list[dict[bytes, bytes]]:
    """The tags of each DKIM-Signature, unfolded."""
    head = data.split(b"\r\n\r\n", 1)[0]
    fields = re.findall(rb"^DKIM-Signature:(.*?)(?=\r\n\S)", head + b"\r\nX", re.M | re.S)
    return [dict(tag.strip().split(b"=", 1) for tag in re.sub(rb"\s+", b"", f).split(b";") if tag) for f in fields]


def verify_all(data: bytes, keys: dict[str, tuple[DKIMKey, Path]]) -> list[bool]:
    lookup = dns_for(*(key for key, _ in keys.values()))
    count = len(signatures(data))
    message = dkim.DKIM(data)
    results = []
    for index in range(count):
        try:
            results.append(bool(message.verify(idx=index, dnsfunc=lookup)))
        except dkim.ValidationError:  # e.g. "body hash mismatch": dkimpy raises rather than answers False
            results.append(False)
    return results


@pytest.mark.parametrize("which", ["rsa", "ed25519", "dual"])
def test_every_message_of_the_example_campaign_verifies(
    campaign: Path, smtp: Server, keys: dict[str, tuple[DKIMKey, Path]], which: str
) -> None:
    write_env(campaign, smtp.env(**dkim_env(keys, which)))
    result = invoke("--campaign", str(campaign), "send", "--yes")
    assert result.exit_code == 0, result.output
    assert len(smtp.messages) == 12
    algorithms = {"rsa": [b"rsa-sha256"], "ed25519": [b"ed25519-sha256"], "dual": [b"ed25519-sha256", b"rsa-sha256"]}
    for received in smtp.messages:
        tags = signatures(received.data)
        assert [t[b"a"] for t in tags] == algorithms[which]
        assert all(t[b"d"] == DOMAIN.encode() and t[b"c"] == b"relaxed/relaxed" for t in tags)
        assert verify_all(received.data, keys) == [True] * len(tags)


def test_the_signature_covers_the_headers_gmail_wants(
    campaign: Path, smtp: Server, keys: dict[str, tuple[DKIMKey, Path]]
) -> None:
    write_env(campaign, smtp.env(**dkim_env(keys, "rsa")))
    assert invoke("--campaign", str(campaign), "send", "--yes").exit_code == 0
    data = smtp.recorder.by_recipient()[ANNA][0].data
    (tags,) = signatures(data)
    signed = tags[b"h"].split(b":")
    for name in (
        b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type",
        b"list-id", b"list-unsubscribe", b"list-unsubscribe-post", b"reply-to",
    ):
        assert name in signed
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in data


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (rb"^Subject: .*$", b"Subject: Win a prize"),
        (rb"^List-Unsubscribe: <https://example\.org/u\?e=", b"List-Unsubscribe: <https://evil.example/u?e="),
        (rb"^List-Unsubscribe-Post: .*$", b"List-Unsubscribe-Post: List-Unsubscribe=Nothing"),
        (rb"^Reply-To: .*$", b"Reply-To: thief@evil.example"),
        (rb"Dear ", b"Deer "),  # the body
    ],
)
def test_a_change_after_signing_fails_verification(
    campaign: Path, smtp: Server, keys: dict[str, tuple[DKIMKey, Path]], old: bytes, new: bytes
) -> None:
    write_env(campaign, smtp.env(**dkim_env(keys, "dual")))
    assert invoke("--campaign", str(campaign), "send", "--yes").exit_code == 0
    data = smtp.recorder.by_recipient()[ANNA][0].data
    assert verify_all(data, keys) == [True, True]
    changed, count = re.subn(old, new, data, count=1, flags=re.M)
    assert count == 1 and changed != data
    assert verify_all(changed, keys) == [False, False]


def test_names_long_headers_attachments_and_images_verify(
    campaign: Path, smtp: Server, keys: dict[str, tuple[DKIMKey, Path]]
) -> None:
    (campaign / "images").mkdir()
    (campaign / "images" / "cover.png").write_bytes(png())
    (campaign / "book.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 200 + b"\n%%EOF\n")
    set_front_matter(campaign, 'attachments = ["book.pdf"]')
    long_subject = "Новая книга: " + "развитие института цифровой таможни и международное право " * 4
    text = (campaign / "announcement.md").read_text(encoding="utf-8")
    text = re.sub(r'^subject = ".*"$', f'subject = "{long_subject}"', text, count=1, flags=re.M)
    (campaign / "announcement.md").write_text(text, encoding="utf-8")
    plant(campaign, COVER)
    long_name = "Анна-Мария Петрова-Водкина " * 4
    rows = (campaign / "recipients.csv").read_text(encoding="utf-8").replace("Анна Петрова", long_name.strip())
    (campaign / "recipients.csv").write_text(rows, encoding="utf-8")
    write_env(campaign, smtp.env(**dkim_env(keys, "dual")))
    result = invoke("--campaign", str(campaign), "send", "--yes")
    assert result.exit_code == 0, result.output
    data = smtp.recorder.by_recipient()[ANNA][0].data
    head = data.split(b"\r\n\r\n", 1)[0]
    assert re.search(rb"^Subject: .*\r\n ", head, re.M)  # folded
    assert re.search(rb"^To: .*\r\n ", head, re.M)  # folded
    assert b"multipart/mixed" in head and b"image/png" in data and b"application/pdf" in data
    for received in smtp.messages:
        assert verify_all(received.data, keys) == [True, True]


def test_a_test_send_and_the_outbox_are_signed_too(
    campaign: Path, smtp: Server, keys: dict[str, tuple[DKIMKey, Path]]
) -> None:
    write_env(campaign, smtp.env(**dkim_env(keys, "ed25519")))
    result = invoke("--campaign", str(campaign), "send", "--to", "me@example.net", "--yes")
    assert result.exit_code == 0, result.output
    (received,) = smtp.messages
    assert received.rcpt_tos == ["me@example.net"]
    assert verify_all(received.data, keys) == [True]

    write_env(campaign, dkim_env(keys, "rsa"))  # no SMTP_HOST: the outbox
    assert invoke("--campaign", str(campaign), "send", "--yes").exit_code == 0
    files = sorted((campaign / "outbox").glob("*.eml"))
    assert len(files) == 12
    for path in files:
        assert verify_all(path.read_bytes(), keys) == [True]


def test_a_key_that_does_not_match_the_published_record_fails(
    campaign: Path, smtp: Server, keys: dict[str, tuple[DKIMKey, Path]], tmp_path: Path
) -> None:
    other, pem = generate_key(selector="nl2026r", domain=DOMAIN)
    (tmp_path / "other.pem").write_bytes(pem)
    env = dkim_env(keys, "rsa") | {"NEWSLETTER_DKIM_KEY": str(tmp_path / "other.pem")}
    write_env(campaign, smtp.env(**env))
    assert invoke("--campaign", str(campaign), "send", "--yes").exit_code == 0
    data = smtp.messages[0].data
    assert verify_all(data, keys) == [False]  # the published one is keys["rsa"]
    assert dkim.DKIM(data).verify(dnsfunc=dns_for(other))


def test_dkim_domain_setting_is_the_d_tag(campaign: Path, smtp: Server, keys: dict[str, tuple[DKIMKey, Path]]) -> None:
    write_env(campaign, smtp.env(**dkim_env(keys, "ed25519"), NEWSLETTER_DKIM_DOMAIN="Mail.Example.org"))
    assert invoke("--campaign", str(campaign), "send", "--yes").exit_code == 0
    (tags,) = signatures(smtp.messages[0].data)
    assert tags[b"d"] == b"mail.example.org"
    key = keys["ed25519"][0]
    moved = DKIMKey(key.selector, "mail.example.org", key.algorithm, key.private)
    assert dkim.DKIM(smtp.messages[0].data).verify(dnsfunc=dns_for(moved))


# -- settings -----------------------------------------------------------------------------


def test_a_key_inside_the_campaign_folder_is_refused(
    campaign: Path, smtp: Server, keys: dict[str, tuple[DKIMKey, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    inside = campaign / "dkim.pem"
    inside.write_bytes(keys["rsa"][1].read_bytes())
    env = smtp.env(NEWSLETTER_DKIM_KEY=str(inside), NEWSLETTER_DKIM_SELECTOR="nl2026r")
    write_env(campaign, env)
    result = invoke("--campaign", str(campaign), "send", "--yes")
    assert result.exit_code == 2
    assert "inside the campaign folder" in result.output and "NEWSLETTER_DKIM_KEY_IN_FOLDER" in result.output
    assert smtp.messages == []

    # The folder's own .env cannot insist on it: it may have come with the folder.
    write_env(campaign, env | {"NEWSLETTER_DKIM_KEY_IN_FOLDER": "1"})
    result = invoke("--campaign", str(campaign), "send", "--yes")
    assert result.exit_code == 2 and "inside the campaign folder" in result.output

    # The user can, from the environment; the key still never becomes an attachment.
    monkeypatch.setenv("NEWSLETTER_DKIM_KEY_IN_FOLDER", "1")
    set_front_matter(campaign, 'attachments = ["dkim.pem"]')
    result = invoke("--campaign", str(campaign), "send", "--yes")
    assert result.exit_code == 2
    assert "the DKIM key" in result.output
    text = (campaign / "announcement.md").read_text(encoding="utf-8").replace('attachments = ["dkim.pem"]\n', "")
    (campaign / "announcement.md").write_text(text, encoding="utf-8")
    result = invoke("--campaign", str(campaign), "send", "--yes")
    assert result.exit_code == 0, result.output
    assert verify_all(smtp.messages[0].data, keys) == [True]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NEWSLETTER_DKIM_SELECTOR": "s1"}, "NEWSLETTER_DKIM_SELECTOR (from .env): is set but NEWSLETTER_DKIM_KEY"),
        ({"NEWSLETTER_DKIM_KEY": "{rsa}"}, "expected 1 selector(s)"),
        ({"NEWSLETTER_DKIM_KEY": "{rsa}, {ed}", "NEWSLETTER_DKIM_SELECTOR": "a"}, "expected 2 selector(s)"),
        ({"NEWSLETTER_DKIM_KEY": "{rsa}", "NEWSLETTER_DKIM_SELECTOR": "bad selector"}, "not a DNS label"),
        ({"NEWSLETTER_DKIM_KEY": "/nonexistent/k.pem", "NEWSLETTER_DKIM_SELECTOR": "a"}, "no such file"),
        ({"NEWSLETTER_DKIM_KEY": "{junk}", "NEWSLETTER_DKIM_SELECTOR": "a"}, "not a PEM private key"),
    ],
)
def test_bad_dkim_settings_stop_before_anything_is_sent(
    campaign: Path,
    smtp: Server,
    keys: dict[str, tuple[DKIMKey, Path]],
    tmp_path: Path,
    env: dict[str, str],
    message: str,
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN PRIVATE KEY-----\nSECRETSECRETSECRET\n-----END PRIVATE KEY-----\n")
    paths = {"rsa": str(keys["rsa"][1]), "ed": str(keys["ed25519"][1]), "junk": str(junk)}
    write_env(campaign, smtp.env(**{k: v.format(**paths) for k, v in env.items()}))
    result = invoke("--campaign", str(campaign), "send", "--yes")
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "SECRETSECRET" not in result.output
    assert smtp.messages == []


def test_check_builds_signed_messages(campaign: Path, keys: dict[str, tuple[DKIMKey, Path]]) -> None:
    write_env(campaign, dkim_env(keys, "dual"))
    result = invoke("--campaign", str(campaign), "check")
    assert result.exit_code == 0, result.output


# -- keygen -------------------------------------------------------------------------------


@pytest.mark.parametrize("ed25519", [False, True])
def test_keygen_writes_a_private_key_and_the_record_that_verifies_it(
    campaign: Path, smtp: Server, tmp_path: Path, ed25519: bool
) -> None:
    key_path = tmp_path / "keys" / "sel1.pem"
    key_path.parent.mkdir()
    args = ["--campaign", str(campaign), "dkim", "keygen", "--selector", "sel1", "--out", str(key_path)]
    result = invoke(*args, *(["--ed25519"] if ed25519 else []))
    assert result.exit_code == 0, result.output
    assert key_path.stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" in key_path.read_bytes()
    assert "PRIVATE" not in result.output and key_path.read_text().splitlines()[1] not in result.output
    # The record is printed for the From domain of the campaign, as zone-file strings.
    match = re.search(r"^sel1\._domainkey\.example\.org\. IN TXT ((?:\"[^\"]*\" ?)+)$", result.output, re.M)
    assert match, result.output
    record = "".join(re.findall(r'"([^"]*)"', match.group(1)))
    assert record.startswith("v=DKIM1; k=" + ("ed25519" if ed25519 else "rsa"))
    assert all(len(s) <= 255 for s in re.findall(r'"([^"]*)"', match.group(1)))

    write_env(campaign, smtp.env(NEWSLETTER_DKIM_KEY=str(key_path), NEWSLETTER_DKIM_SELECTOR="sel1"))
    assert invoke("--campaign", str(campaign), "send", "--yes").exit_code == 0

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return record.encode() if name == b"sel1._domainkey.example.org." else None

    assert all(dkim.DKIM(m.data).verify(dnsfunc=lookup) for m in smtp.messages)


def test_keygen_never_overwrites_a_file(campaign: Path, tmp_path: Path) -> None:
    existing = tmp_path / "key.pem"
    existing.write_text("my old key\n")
    result = invoke("--campaign", str(campaign), "dkim", "keygen", "--selector", "s", "--out", str(existing))
    assert result.exit_code == 2
    assert "already exists" in result.output
    assert existing.read_text() == "my old key\n"
    link = tmp_path / "link.pem"
    link.symlink_to(tmp_path / "elsewhere.pem")
    result = invoke("--campaign", str(campaign), "dkim", "keygen", "--selector", "s", "--out", str(link))
    assert result.exit_code == 2
    assert not (tmp_path / "elsewhere.pem").exists()


def test_keygen_needs_a_domain_when_the_campaign_has_none(tmp_path: Path) -> None:
    result = invoke("--campaign", str(tmp_path), "dkim", "keygen", "--selector", "s", "--out", str(tmp_path / "k"))
    assert result.exit_code == 2
    assert "--domain" in result.output
    assert not (tmp_path / "k").exists()


# -- the fast body canonicalisation ---------------------------------------------------------

_LINE = st.lists(st.sampled_from([b"a", b"=20", b" ", b"\t", b"  ", b".", b"\xd0\x90"]), max_size=8).map(b"".join)


@given(st.lists(_LINE, max_size=12), st.sampled_from([b"", b"\r\n", b"\r\n\r\n", b" \r\n \r\n", b"x"]))
def test_relaxed_body_is_dkimpys(lines: list[bytes], end: bytes) -> None:
    from dkim.canonicalization import Relaxed

    body = b"\r\n".join(lines) + end
    assert relaxed_body(body) == Relaxed.canonicalize_body(body)


@pytest.mark.parametrize("body", [b"a\nb\r\n", b"a\rb\r\n", b"a\r\n\n"])
def test_a_body_with_bare_line_breaks_takes_dkimpys_way(body: bytes) -> None:
    assert relaxed_body(body) is None


_VALUE = st.lists(st.sampled_from([b"a", b" ", b"\t", b"=?utf-8?q?x?=", b"<b@c>", b"\r\n ", b"\r\n\t"]), max_size=8)


@given(st.lists(st.tuples(st.sampled_from([b"Subject", b"To", b"X-Other", b"FROM"]), _VALUE), min_size=1))
def test_relaxed_headers_are_dkimpys(fields: list[tuple[bytes, list[bytes]]]) -> None:
    from dkim import rfc822_parse
    from dkim.canonicalization import Relaxed

    lines = [name + b":" + b"".join(value) for name, value in fields]
    head = b"\r\n".join(line for line in lines if not line.endswith((b"\r\n ", b"\r\n\t")))
    if not head:
        return
    wanted = frozenset({b"subject", b"to", b"from"})
    headers, _ = rfc822_parse(head + b"\r\n\r\n")
    expected = [(n, v) for n, v in Relaxed.canonicalize_headers(headers) if n in wanted]
    assert relaxed_headers(head, wanted) == expected


def test_without_the_dkim_extra_a_configured_key_is_a_clear_error(
    campaign: Path, keys: dict[str, tuple[DKIMKey, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "dkim", None)  # as if dkimpy were not installed
    write_env(campaign, dkim_env(keys, "rsa"))
    result = invoke("--campaign", str(campaign), "check")
    assert result.exit_code == 2
    assert "pip install 'newsletter[dkim]'" in result.output
