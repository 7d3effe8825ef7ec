"""The fast path for plain addresses answers exactly as email-validator would."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given, settings
from hypothesis import strategies as st

from newsletter.inputs.addresses import _plain_address, check_address

local = st.from_regex(r"[A-Za-z0-9_+.-]{1,70}", fullmatch=True)
label = st.from_regex(r"[A-Za-z0-9-]{1,65}", fullmatch=True)
tld = st.sampled_from(["org", "COM", "example", "test", "local", "io", "xn--p1ai", "r", "onion", "arpa"])
addresses = st.builds(lambda lp, ls, t: f"{lp}@{'.'.join(ls)}.{t}", local, st.lists(label, min_size=0, max_size=3), tld)


def reference(text: str) -> str | None:
    try:
        valid = validate_email(text, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError:
        return None
    return valid.ascii_email


@settings(max_examples=3000, deadline=None)
@given(text=addresses | st.emails())
@example("Ann.B@Example.ORG")
@example("a@ab--cd.example.org")
@example("x@foo.local")
@example("a..b@example.org")
@example(".a@example.org")
@example("a@-x.example.org")
@example("a" * 65 + "@example.org")
@example("WWW@A.bd")  # an RFC 2142 role name, which email-validator lower-cases
def test_fast_path_agrees_with_email_validator(text: str) -> None:
    fast = _plain_address(text)
    if fast is not None:
        assert fast == reference(text)
        assert check_address(text) == (fast, False)


def test_the_fast_path_takes_the_common_shape() -> None:
    assert _plain_address("Reader.One+news@Mail.Example.ORG") == "Reader.One+news@mail.example.org"
    assert _plain_address("иван@пример.рф") is None


def test_the_copy_of_the_role_mailbox_names_matches_email_validator() -> None:
    from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES as theirs

    from newsletter.inputs.addresses import CASE_INSENSITIVE_MAILBOX_NAMES

    assert frozenset(theirs) == CASE_INSENSITIVE_MAILBOX_NAMES


def test_the_copy_of_the_special_use_names_matches_email_validator() -> None:
    """The fast path keeps its own copy so plain lists never import email-validator."""
    import email_validator

    from newsletter.inputs.addresses import SPECIAL_USE_DOMAIN_NAMES

    assert sorted(SPECIAL_USE_DOMAIN_NAMES) == sorted(email_validator.SPECIAL_USE_DOMAIN_NAMES)
