"""Relay text made safe to show and to store: no secret in any form, no terminal control.

A relay may echo what it received (a bad AUTH line, a password typed as a user
name), and its text reaches the terminal, the journal and `status`. So every reply
passes through `Redactor.clean` once, where it enters our code:

- the password is replaced in each form a relay could echo: as written, with its
  whitespace changed (a relay may collapse or re-wrap runs of spaces), and in the
  base64 forms AUTH PLAIN and LOGIN put on the wire;
- a password shorter than `SHORT` characters is replaced only where it stands as a
  whole word: as a substring it would garble ordinary words ("p" in "password");
- OAuth secrets (access token, refresh token, client secret) are replaced as
  written, in base64, and inside the base64 XOAUTH2 string that carries the
  access token with the user name; `add` takes a token that arrives mid-run;
- control characters (an escape sequence could rewrite the user's terminal) become
  `?`, and whitespace runs one space.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

SHORT = 6
MASK = "********"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` on one line, with every control character (C0, C1, bidi overrides) shown as `?`."""
    return " ".join(_CONTROL.sub("?", text).split())


def _pattern(secret: str) -> str:
    """A regex for `secret` that matches whatever whitespace stands where the secret has some."""
    parts = secret.split()
    if not parts:
        return re.escape(secret)
    return r"\s*".join(re.escape(part) for part in parts)


def xoauth2_string(user: str, token: str) -> bytes:
    """The XOAUTH2 initial response, base64 (Google's and Microsoft's SASL XOAUTH2)."""
    return base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode())


class Redactor:
    """Removes one login's secrets from text: the password, and any OAuth secrets added."""

    def __init__(self, password: str | None, username: str | None = None, *, secrets: Iterable[str] = ()) -> None:
        self._username = username or ""
        self._forms: list[str] = []
        if password:
            raw = password.encode("utf-8")
            user = self._username.encode("utf-8")
            encoded = {
                base64.b64encode(raw).decode("ascii"),
                base64.b64encode(b"\0" + user + b"\0" + raw).decode("ascii"),
            }
            self._forms = [re.escape(form) for form in sorted(encoded, key=len, reverse=True)]
            if len(password.strip()) >= SHORT:
                self._forms.insert(0, _pattern(password))
            else:  # only as a whole word: a short password is a piece of many ordinary words
                self._forms.insert(0, r"(?<!\S)" + _pattern(password) + r"(?!\S)")
        self._pattern: re.Pattern[str] | None = None
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        """Also remove these secrets (tokens), in clear, base64 and inside an XOAUTH2 string.

        Tokens are long random strings, so they are matched anywhere; a secret shorter
        than `SHORT` is matched only as a whole word, as a short password is.
        """
        for secret in secrets:
            if not secret:
                continue
            encoded = {
                base64.b64encode(secret.encode("utf-8")).decode("ascii"),
                xoauth2_string(self._username, secret).decode("ascii"),
            }
            forms = [re.escape(form) for form in sorted(encoded, key=len, reverse=True)]
            if len(secret.strip()) >= SHORT:
                forms.append(_pattern(secret))
            else:
                forms.append(r"(?<!\S)" + _pattern(secret) + r"(?!\S)")
            self._forms = forms + self._forms  # the longer encoded forms first
        self._pattern = re.compile("|".join(self._forms)) if self._forms else None

    def scrub(self, text: str) -> str:
        """`text` with every secret in every form replaced by a mask."""
        return self._pattern.sub(MASK, text) if self._pattern is not None else text

    def clean(self, text: str | bytes) -> str:
        """Relay text ready to show or store: scrubbed first (its whitespace intact), then printable."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return printable(self.scrub(text))
