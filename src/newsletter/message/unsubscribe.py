"""Per-recipient unsubscribe links and the tokens that keep them from being forged.

The token is an HMAC of the list id and the address with `NEWSLETTER_SECRET`,
so a link for one address cannot be edited into a working link for another.
The same URL template that makes the links also parses them back
(`UnsubscribeLinks.parse`), so the unsubscribe server accepts exactly the
links this tool sends, whatever shape the user gave the URL, for every address
the list accepts: `#`, `&`, `/`, `?`, `%` or `+` in an address are percent-encoded
in the link and matched still encoded, then decoded, so none of them reads as URL
syntax. Tokens bind `address_key(address)`: the same identity suppression uses.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, unquote, unquote_plus, urlsplit

from newsletter.errors import ConfigError
from newsletter.inputs.addresses import address_key, check_address
from newsletter.inputs.settings import Secret

TOKEN_BYTES = 18  # 144 bits: unguessable, and a whole number of base64 characters (24)
ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058's POST body and header value

# What may appear in a URL put between the angle brackets of a List-Unsubscribe
# header (RFC 2369): no whitespace, no brackets or quotes, ASCII only.
_BAD_URL_CHARS = re.compile(r"[^\x21-\x7e]|[<>\"]")
_TOKEN = re.compile(rf"[A-Za-z0-9_-]{{{TOKEN_BYTES * 4 // 3}}}")


def make_token(secret: Secret, list_id: str, email: str) -> str:
    """A short URL-safe token binding `email` to `list_id`.

    Over `address_key`, not `casefold()`: folding gives `straße` and `strasse` one
    token. For ASCII addresses, and nearly all others, the two agree, so links sent
    by earlier versions still verify.
    """
    message = f"{list_id}\n{address_key(email)}".encode()
    digest = hmac.new(secret.reveal().encode(), message, hashlib.sha256).digest()[:TOKEN_BYTES]
    return base64.urlsafe_b64encode(digest).decode("ascii")


def verify_token(secret: Secret, list_id: str, email: str, token: str) -> bool:
    """True when `token` was made for this address and list (constant-time compare).

    Compared as bytes: `hmac.compare_digest` raises on non-ASCII `str`, and a
    token comes from whoever sent the request.
    """
    expected = make_token(secret, list_id, email).encode("ascii")
    return hmac.compare_digest(expected, token.encode("utf-8", "surrogateescape"))


def _check_url(url: str, name: str) -> None:
    if _BAD_URL_CHARS.search(url.replace("{email}", "").replace("{token}", "")):
        raise ConfigError(
            f"{name}: a URL in a header cannot hold spaces, quotes, '<', '>' or non-ASCII"
        )


@dataclass(frozen=True)
class UnsubscribeLinks:
    """Fills `{email}` and `{token}` into the configured URL; gives the header value."""

    url: str | None = None
    mailto: str | None = None
    secret: Secret | None = None
    list_id: str = ""

    def __post_init__(self) -> None:
        if self.url:
            _check_url(self.url, "NEWSLETTER_UNSUBSCRIBE_URL")
            if "{token}" in self.url and self.secret is None:
                raise ConfigError(
                    "NEWSLETTER_UNSUBSCRIBE_URL contains {token}: "
                    "set NEWSLETTER_SECRET to sign the links"
                )
        if self.mailto:
            address = self.mailto.removeprefix("mailto:").partition("?")[0]
            try:
                check_address(unquote(address))
            except ValueError as exc:
                raise ConfigError(f"NEWSLETTER_UNSUBSCRIBE_MAILTO: {exc}") from None
            _check_url(self.mailto, "NEWSLETTER_UNSUBSCRIBE_MAILTO")

    @property
    def signed(self) -> bool:
        """Whether the links name the recipient and carry a token, so they cannot be forged."""
        return bool(self.url and "{email}" in self.url and "{token}" in self.url and self.secret)

    def url_for(self, email: str) -> str | None:
        if not self.url:
            return None
        token = make_token(self.secret, self.list_id, email) if self.secret else ""
        # `safe="@"` only: '+', '&', '=', '/', '#', '?' and '%' in a local part must not read
        # as URL syntax; `parse` matches the encoded form and decodes it once.
        return self.url.replace("{email}", quote(email, safe="@")).replace("{token}", token)

    def mailto_link(self) -> str | None:
        if not self.mailto:
            return None
        address = self.mailto.removeprefix("mailto:")
        return f"mailto:{address}" if "?" in address else f"mailto:{address}?subject=unsubscribe"

    def header_for(self, email: str, *, url: str | None = None) -> tuple[str | None, bool]:
        """The `List-Unsubscribe` value and whether one-click POST (RFC 8058) applies.

        One-click needs an https URL that identifies the recipient by itself:
        the POST carries nothing else. `url` is `url_for(email)` when the caller has
        it already (the render made it): the HMAC is then not computed twice.
        """
        links = []
        url = url if url is not None else self.url_for(email)
        if url:
            # RFC 2369: a literal comma inside a URL would split the list.
            links.append("<" + url.replace(",", "%2C") + ">")
        mailto = self.mailto_link()
        if mailto:
            links.append(f"<{mailto}>")
        identifies = bool(self.url and "{email}" in self.url)
        one_click = bool(url and url.lower().startswith("https://") and identifies)
        return (", ".join(links) or None), one_click

    def parse(self, path: str, query: str) -> tuple[str, str] | None:
        """The (address, token) a request for one of our links carries, or None if it is not one.

        `path` and `query` are as the request line carried them, still percent-encoded:
        decoded first, an address holding `/`, `&` or `#` could not be told from the
        URL's own separators. The placeholders are matched in that raw form and
        decoded once. Only the path and query of the configured URL are compared:
        behind a reverse proxy the scheme and host the server sees are not the public ones.
        """
        if not self.url or "{email}" not in self.url or "{token}" not in self.url:
            return None
        template = urlsplit(self.url)
        found: dict[str, str] = {}
        path_match = _template_regex(template.path).fullmatch(path)
        if path_match is None:
            return None
        found.update(path_match.groupdict())
        asked = _raw_query(query)
        for key, value in _raw_query(template.query).items():
            got = asked.get(key)
            if got is None:
                return None
            value_match = _template_regex(value).fullmatch(got)
            if value_match is None:
                return None
            found.update(value_match.groupdict())
        token = found.get("token", "")
        try:
            # Not unquote_plus: the link encodes '+' as %2B, and a client that decoded
            # it back still means '+'; an address holds no spaces.
            email = unquote(found.get("email", ""), errors="strict")
        except UnicodeDecodeError:
            return None
        if not email or not _TOKEN.fullmatch(token):
            return None
        return email, token


def _raw_query(query: str) -> dict[str, str]:
    """Query parameters by decoded name, values left percent-encoded; the first of a repeated name wins."""
    found: dict[str, str] = {}
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        found.setdefault(unquote_plus(name), value)
    return found


@lru_cache(maxsize=16)  # the same two or three templates for every request
def _template_regex(template: str) -> re.Pattern[str]:
    """`/u/{email}/{token}` as a regex with named groups; everything else literal."""
    pieces = re.split(r"(\{email\}|\{token\})", template)
    seen: set[str] = set()
    out = []
    for piece in pieces:
        name = piece[1:-1] if piece in ("{email}", "{token}") else None
        if name is None:
            out.append(re.escape(piece))
        elif name in seen:
            out.append(f"(?P={name})")
        else:
            seen.add(name)
            out.append(f"(?P<{name}>[^/?#&]+)")
    return re.compile("".join(out))
