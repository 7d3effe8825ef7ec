"""Checking one email address: syntax only (no DNS), the common shapes without email-validator.

Every address the tool meets (the list, `--to`, NEWSLETTER_FROM, unsubscribe
requests, `unsubscribed.csv`) is checked here and comes back normalized.
"""

from __future__ import annotations

import re

from newsletter.inputs.text import CONTROL

# The shape of nearly every real address: a dot-atom of common characters and an
# ASCII host name. For these, email-validator's answer is known in advance (valid;
# the domain lower-cased), and it costs ~25 us an address, the largest single cost
# of reading a big list. Anything else goes to email-validator; the equivalence is
# a property test (tests/test_recipients_fast.py).
_PLAIN = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"  # local part: a dot-atom of common characters
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"  # an ASCII host name
)


# email-validator's SPECIAL_USE_DOMAIN_NAMES: addresses there are refused. A copy, so that
# lists of plain addresses never import email-validator (its start-up compiles a few dozen
# regular expressions); tests/test_recipients_fast.py checks the copy against the original.
SPECIAL_USE_DOMAIN_NAMES = ("arpa", "invalid", "local", "localhost", "onion", "test")
_SPECIAL_USE = re.compile(r"(?:^|\.)(?:" + "|".join(map(re.escape, SPECIAL_USE_DOMAIN_NAMES)) + r")\Z")


# RFC 2142's role mailboxes, which email-validator lower-cases; a copy, so that plain lists
# never import it (a test keeps the two equal).
CASE_INSENSITIVE_MAILBOX_NAMES = frozenset(
    {"info", "marketing", "sales", "support", "abuse", "noc", "security", "postmaster", "hostmaster"}
    | {"usenet", "news", "webmaster", "www", "uucp", "ftp"}
)


def _plain_address(text: str) -> str | None:
    """The normalized address when `text` has the common plain shape, else None (ask the validator)."""
    match = _PLAIN.fullmatch(text)
    if match is None or len(text) > 254 or text.index("@") > 64 or "--" in match.group(1):
        return None
    domain = match.group(1).lower()
    if _SPECIAL_USE.search(domain):
        return None
    local = text[: text.index("@")]
    if local.lower() in CASE_INSENSITIVE_MAILBOX_NAMES:  # RFC 2142 role names: `WWW@` is `www@`
        local = local.lower()
    return local + "@" + domain


def check_address(text: str) -> tuple[str, bool]:
    """Validate one address (syntax only, no DNS); return it normalized and whether it needs SMTPUTF8."""
    if not text:
        raise ValueError("the address is empty")
    if CONTROL.search(text):
        raise ValueError(f"control character in address {text!r}")
    if "=?" in text:  # valid atext, but mail software decodes it as an RFC 2047 encoded-word
        raise ValueError(f"'=?' in address {text!r} would be read as an encoded header word")
    simple = _plain_address(text)
    if simple is not None:
        return simple, False
    from email_validator import EmailNotValidError, validate_email  # only for the unusual shapes

    try:
        valid = validate_email(text, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise ValueError(f"invalid address {text!r}: {exc}") from None
    if valid.ascii_email is not None:
        return valid.ascii_email, False
    return valid.normalized, True


def address_key(address: str) -> str:
    """The identity of an address `check_address` returned: what unsubscribe tokens and suppression compare.

    Both parts are lower-cased with `str.lower`, not `casefold`: case-folding maps
    different mailboxes onto one (`straße` and `strasse`, `ς` and `σ`), so one
    person's unsubscribe link or row would silence another. Lower-casing joins only
    spellings that differ in case, which common mail servers deliver to the same
    mailbox. It gives what `casefold` gives for every ASCII address and for nearly
    all others (not for letters such as `ß`, `ς` or a word-final `Σ`), so tokens made
    by earlier versions, and keys kept case-folded, agree with it there.
    """
    return address.lower()
