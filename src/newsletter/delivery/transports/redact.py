"""Relay text made safe to show and to store: no password in any form, no terminal control.

A relay may echo what it received (a bad AUTH line, a password typed as a user
name), and its text reaches the terminal, the journal and `status`. So every reply
passes through `Redactor.clean` once, where it enters our code:

- the password is replaced in each form a relay could echo: as written, with its
  whitespace changed (a relay may collapse or re-wrap runs of spaces), and in the
  base64 forms AUTH PLAIN and LOGIN put on the wire;
- a password shorter than `SHORT` characters is replaced only where it stands as a
  whole word: as a substring it would garble ordinary words ("p" in "password");
- control characters (an escape sequence could rewrite the user's terminal) become
  `?`, and whitespace runs one space.
"""

from __future__ import annotations

import base64
import re

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


class Redactor:
    """Removes one login's secrets from text."""

    def __init__(self, password: str | None, username: str | None = None) -> None:
        self._pattern: re.Pattern[str] | None = None
        if not password:
            return
        raw = password.encode("utf-8")
        user = (username or "").encode("utf-8")
        encoded = {
            base64.b64encode(raw).decode("ascii"),
            base64.b64encode(b"\0" + user + b"\0" + raw).decode("ascii"),
        }
        forms = [re.escape(form) for form in sorted(encoded, key=len, reverse=True)]
        if len(password.strip()) >= SHORT:
            forms.insert(0, _pattern(password))
        else:  # only as a whole word: a short password is a piece of many ordinary words
            forms.insert(0, r"(?<!\S)" + _pattern(password) + r"(?!\S)")
        self._pattern = re.compile("|".join(forms))

    def scrub(self, text: str) -> str:
        """`text` with the password in every form replaced by a mask."""
        return self._pattern.sub(MASK, text) if self._pattern is not None else text

    def clean(self, text: str | bytes) -> str:
        """Relay text ready to show or store: scrubbed first (its whitespace intact), then printable."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return printable(self.scrub(text))
