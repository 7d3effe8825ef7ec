"""Per-recipient unsubscribe links and the tokens that keep them from being forged.

The token is an HMAC of the list id and the address with `NEWSLETTER_SECRET`,
so a link for one address cannot be edited into a working link for another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote

from newsletter.config import Secret
from newsletter.errors import ConfigError


def make_token(secret: Secret, list_id: str, email: str) -> str:
    """A short URL-safe token binding `email` to `list_id`."""
    message = f"{list_id}\n{email.casefold()}".encode()
    digest = hmac.new(secret.reveal().encode(), message, hashlib.sha256).digest()[:18]
    return base64.urlsafe_b64encode(digest).decode("ascii")


def verify_token(secret: Secret, list_id: str, email: str, token: str) -> bool:
    """True when `token` was made for this address and list (constant-time compare)."""
    return hmac.compare_digest(make_token(secret, list_id, email), token)


@dataclass(frozen=True)
class UnsubscribeLinks:
    """Fills `{email}` and `{token}` into the configured URL; gives the header value."""

    url: str | None = None
    mailto: str | None = None
    secret: Secret | None = None
    list_id: str = ""

    def __post_init__(self) -> None:
        if self.url and "{token}" in self.url and self.secret is None:
            raise ConfigError(
                "NEWSLETTER_UNSUBSCRIBE_URL contains {token}: set NEWSLETTER_SECRET to sign the links"
            )

    def url_for(self, email: str) -> str | None:
        if not self.url:
            return None
        token = make_token(self.secret, self.list_id, email) if self.secret else ""
        return self.url.replace("{email}", quote(email, safe="@")).replace("{token}", token)

    def header_for(self, email: str) -> tuple[str | None, bool]:
        """The `List-Unsubscribe` value and whether one-click POST (RFC 8058) applies."""
        links = []
        url = self.url_for(email)
        if url:
            links.append(f"<{url}>")
        if self.mailto:
            address = self.mailto.removeprefix("mailto:")
            links.append(f"<mailto:{address}?subject=unsubscribe>")
        one_click = bool(url and url.lower().startswith("https://"))
        return (", ".join(links) or None), one_click
