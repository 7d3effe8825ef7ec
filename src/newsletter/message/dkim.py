"""DKIM signatures (RFC 6376) on the exact bytes a message goes out with.

Receivers (Gmail, Yahoo, Outlook.com) want bulk mail signed by the From domain; a relay
that signs with its own domain does not align. So the builder can sign each message
itself, after every header is folded and before the transport dot-stuffs it, with an
RSA key (`rsa-sha256`), an Ed25519 key (`ed25519-sha256`, RFC 8463), or both at once
(dual signing, for receivers that do not know Ed25519 yet).

The signature is made with `cryptography` on the hash, because dkimpy's own RSA is
pure Python and parses the PEM again for every message; the key is parsed once, in
the process that loads the campaign, and the rendering processes inherit it when they
fork. Relaxed canonicalisation of our builder's bytes (CRLF throughout) is done here
with byte operations, several times faster than dkimpy's regular expressions and
checked against them by property tests; anything else takes dkimpy's code. dkimpy's
`verify` is the tests' oracle. Both packages are the optional extra `dkim`, imported
only when a key is configured.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newsletter.errors import ConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

# What the signature covers, in this order; Gmail's one-click unsubscribe needs the last two.
# Reply-To is covered too: a changed Reply-To is the usual way to divert the answers.
SIGNED_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)
RSA = "rsa-sha256"
ED25519 = "ed25519-sha256"
MIN_RSA_BITS = 1024  # RFC 8301; keygen makes 2048
_CANON = b"relaxed/relaxed"
_WIDTH = 76
INSTALL_HINT = "DKIM signing needs the optional packages: pip install 'newsletter[dkim]'"


def _require() -> None:
    try:
        import cryptography  # noqa: F401
        import dkim  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        raise ConfigError(f"NEWSLETTER_DKIM_KEY is set, but {INSTALL_HINT}") from None


@dataclass(frozen=True)
class DKIMKey:
    """One private key with the selector and domain it signs for."""

    selector: str
    domain: str
    algorithm: str  # RSA or ED25519
    private: Any = field(repr=False)  # RSAPrivateKey | Ed25519PrivateKey; never shown
    path: Path | None = None

    def public_bytes(self) -> bytes:
        """The public half as the `p=` tag carries it: DER SubjectPublicKeyInfo, or Ed25519's 32 bytes."""
        from cryptography.hazmat.primitives import serialization

        public = self.private.public_key()
        if self.algorithm == ED25519:
            raw: bytes = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return raw
        der: bytes = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return der

    def dns_record(self) -> str:
        """The TXT record to publish at `<selector>._domainkey.<domain>`."""
        kind = "ed25519" if self.algorithm == ED25519 else "rsa"
        return f"v=DKIM1; k={kind}; p={base64.b64encode(self.public_bytes()).decode('ascii')}"

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    def sign_digest(self, digest: bytes) -> bytes:
        if self.algorithm == ED25519:
            signature: bytes = self.private.sign(digest)  # RFC 8463: Ed25519 over the SHA-256 hash
            return signature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, utils

        signed: bytes = self.private.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        return signed


def key_from_pem(data: bytes, *, selector: str, domain: str, where: str, path: Path | None = None) -> DKIMKey:
    """Parse a PEM private key (RSA or Ed25519); errors name `where`, never the key's content."""
    _require()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    try:
        private = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(f"{where}: the key has a password; DKIM keys are stored without one") from None
    except ValueError:
        raise ConfigError(
            f"{where}: not a PEM private key (expected -----BEGIN PRIVATE KEY----- or "
            "-----BEGIN RSA PRIVATE KEY-----; `newsletter dkim keygen` makes one)"
        ) from None
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return DKIMKey(selector, domain, ED25519, private, path)
    if isinstance(private, rsa.RSAPrivateKey):
        if private.key_size < MIN_RSA_BITS:
            raise ConfigError(
                f"{where}: a {private.key_size}-bit RSA key; receivers ignore DKIM keys under "
                f"{MIN_RSA_BITS} bits: make a 2048-bit one with `newsletter dkim keygen`"
            )
        return DKIMKey(selector, domain, RSA, private, path)
    raise ConfigError(f"{where}: DKIM signs with RSA or Ed25519 keys only, not {type(private).__name__}")


def load_key(path: Path, *, selector: str, domain: str, where: str = "NEWSLETTER_DKIM_KEY") -> DKIMKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None
    return key_from_pem(data, selector=selector, domain=domain, where=f"{where} ({path})", path=path)


def generate_key(*, selector: str, domain: str, ed25519: bool = False) -> tuple[DKIMKey, bytes]:
    """A new key (Ed25519, or RSA 2048) and its PEM (PKCS#8, unencrypted)."""
    _require()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519 as ed
    from cryptography.hazmat.primitives.asymmetric import rsa

    private: RSAPrivateKey | Ed25519PrivateKey = (
        ed.Ed25519PrivateKey.generate() if ed25519 else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return DKIMKey(selector, domain, ED25519 if ed25519 else RSA, private), pem


def _tags_folded(tags: Sequence[tuple[str, str]]) -> bytes:
    """The tags as ` v=1; a=...;` with a line break where a line would pass the width.

    Breaks fall only before a tag or before a `:` of `h=`, where RFC 6376 allows
    folding white space; the hash is taken over these very bytes, so the receiver's
    relaxed canonicalisation sees what was hashed here.
    """
    atoms: list[tuple[str, str]] = []  # (what goes before it on the same line, the atom)
    for name, value in tags:
        if name == "h":
            first, *rest = value.split(":")
            atoms.append((" ", f"h={first}"))
            atoms.extend(("", f":{other}") for other in rest)
            atoms[-1] = (atoms[-1][0], atoms[-1][1] + ";")
        else:
            atoms.append((" ", f"{name}={value};"))
    lines: list[str] = []
    line = "DKIM-Signature:"
    for gap, atom in atoms:
        if len(line) + len(gap) + len(atom) > _WIDTH and line != "DKIM-Signature:":
            lines.append(line)
            line = " " + atom
        else:
            line += gap + atom
    lines.append(line)
    return "\r\n".join(lines).encode("ascii")[len("DKIM-Signature:") :]


_SPACES = re.compile(rb"  +")
_WSP = re.compile(rb"[ \t]+")


def relaxed_headers(head: bytes, wanted: frozenset[bytes]) -> list[tuple[bytes, bytes]]:
    """RFC 6376 3.4.2 for the fields of `head` (CRLF lines, no blank line) named in `wanted`.

    As dkimpy's `Relaxed.canonicalize_headers` gives them (value ending in CRLF), for the
    few fields a signature covers rather than every field of the message.
    """
    fields: list[list[bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1] += line  # unfolded: the line break goes, the white space stays
        else:
            name, _, value = line.partition(b":")
            fields.append([name, value])
    canonical = []
    for name, value in fields:
        lower = name.rstrip(b" \t").lower()
        if lower in wanted:
            canonical.append((lower, _WSP.sub(b" ", value).strip(b" \t") + b"\r\n"))
    return canonical


def relaxed_body(body: bytes) -> bytes | None:
    """RFC 6376 3.4.4 for a body whose every line ends in CRLF; None for any other body.

    The same bytes as dkimpy's `Relaxed.canonicalize_body` (the tests compare them), but
    with `bytes.replace` and one expression that starts with a literal instead of three
    regular-expression passes over every byte: on the example's 16 KB message, a quarter
    of dkimpy's time.
    """
    without = body.replace(b"\r\n", b"")
    if b"\r" in without or b"\n" in without:
        return None
    if b"\t" in body:
        body = body.replace(b"\t", b" ")
    if b"  " in body:
        body = _SPACES.sub(b" ", body)
    if b" \r\n" in body:
        body = body.replace(b" \r\n", b"\r\n")
    body = body.rstrip(b"\r\n")
    return body + b"\r\n" if body else b""


class Signer:
    """Adds one DKIM-Signature per key to a finished message; one signer per campaign."""

    def __init__(self, keys: Sequence[DKIMKey]) -> None:
        _require()
        from dkim import rfc822_parse  # type: ignore[import-untyped,import-not-found,unused-ignore]
        from dkim.canonicalization import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
            CanonicalizationPolicy,
        )

        if not keys:
            raise ValueError("a signer needs at least one key")
        self.keys = tuple(keys)
        self._parse = rfc822_parse
        self._policy = CanonicalizationPolicy.from_c_value(_CANON)
        self._wanted = tuple(name.lower().encode("ascii") for name in SIGNED_HEADERS)
        self._wanted_set = frozenset(self._wanted)
        self._ordered = tuple(sorted(self.keys, key=lambda k: k.algorithm != ED25519))
        self._folded: dict[tuple[int, tuple[bytes, ...], int], bytes] = {}

    def _tags(self, key: DKIMKey, include: tuple[bytes, ...], stamp: int) -> bytes:
        """The folded tags before bh=, the same for every message of one second."""
        cache_key = (id(key), include, stamp)
        folded = self._folded.get(cache_key)
        if folded is None:
            if len(self._folded) > 64:
                self._folded.clear()
            tags = [
                ("v", "1"),
                ("a", key.algorithm),
                ("c", _CANON.decode("ascii")),
                ("d", key.domain),
                ("s", key.selector),
                ("t", str(stamp)),
                ("h", ":".join(name.decode("ascii") for name in include)),
            ]
            folded = self._folded[cache_key] = _tags_folded(tags)
        return folded

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(key.domain for key in self.keys))

    def sign(self, data: bytes, *, now: int | None = None) -> bytes:
        """`data` with the signature headers in front; the rest of the bytes are unchanged.

        With two keys the Ed25519 signature comes first (receivers that do not know it
        skip it and check the RSA one); neither covers the other.
        """
        head, separator, body = data.partition(b"\r\n\r\n")
        canonical_body = relaxed_body(body) if separator else None
        if canonical_body is None or b"\n" in head.replace(b"\r\n", b"") or b"\r" in head.replace(b"\r\n", b""):
            # Not our builder's CRLF throughout: dkimpy's way, on all of it.
            headers, whole_body = self._parse(data)
            canonical_body = self._policy.canonicalize_body(whole_body)
            canonical_headers = self._policy.canonicalize_headers(headers)
        else:
            canonical_headers = relaxed_headers(head, self._wanted_set)
        selected = {}
        for name, value in canonical_headers:
            if name in self._wanted_set:
                selected[name] = value  # of a field given twice, the last is signed (RFC 6376 5.4.2)
        include = tuple(name for name in self._wanted if name in selected)
        signed_fields = b"".join(name + b":" + selected[name] for name in include)
        body_hash = base64.b64encode(hashlib.sha256(canonical_body).digest())
        stamp = int(time.time()) if now is None else now
        fields = []
        for key in self._ordered:
            prefix = self._tags(key, include, stamp) + b"\r\n bh=" + body_hash + b";\r\n b="
            # The signature field itself, relaxed, with b= empty and no line break at its end.
            canonical = b"dkim-signature:" + _WSP.sub(b" ", prefix.replace(b"\r\n", b"")).strip(b" \t")
            signature = base64.b64encode(key.sign_digest(hashlib.sha256(signed_fields + canonical).digest()))
            folded = b"\r\n  ".join(signature[i : i + 72] for i in range(0, len(signature), 72))
            fields.append(b"DKIM-Signature:" + prefix + folded + b"\r\n")
        return b"".join(fields) + data


def write_key(path: Path, pem: bytes) -> None:
    """Write a new private key readable by its owner only; an existing file is never replaced."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; a key is never overwritten: choose another --out") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as stream:
            stream.write(pem)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def txt_strings(record: str) -> str:
    """The record as zone-file strings of at most 255 characters each (an RSA key needs two)."""
    return " ".join(f'"{record[i : i + 255]}"' for i in range(0, len(record), 255))
