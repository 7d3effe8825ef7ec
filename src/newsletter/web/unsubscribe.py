"""`newsletter unsubscribe-server`: a small WSGI app that answers the unsubscribe links.

    GET  <link>   a page with one button; nothing is recorded yet, because mail
                  scanners and link previewers open every link in a message
    POST <link>   body `List-Unsubscribe=One-Click` (RFC 8058: what Gmail and Yahoo
                  send from their own "Unsubscribe" button, and what the page's
                  button sends): the token is verified and the address appended
                  to the campaign folder's `unsubscribed.csv`, which every send reads

A link is recognised by the shape of `NEWSLETTER_UNSUBSCRIBE_URL` itself (path
and query), and its token must be the HMAC of its address: a forged or edited
link gets 403 and records nothing. It binds to 127.0.0.1 by default; put it
behind the https reverse proxy that serves the public URL. The app is a plain
WSGI callable, so any WSGI server can run it instead; it reads the undecoded
request path from REQUEST_URI or RAW_URI when the server gives one (the built-in
server does), which an address holding `/` needs when `{email}` is in the path.

A mailbox provider may send many one-click POSTs at once: the built-in server
runs a thread per request and keeps a listen queue of `LISTEN_QUEUE` connections
(the standard library's default of 5 resets the rest of a burst), and the
addresses already unsubscribed are kept in memory (`UnsubscribedFile`), so a
request appends one row instead of reading the whole file.
"""

from __future__ import annotations

import html
import sys
from collections.abc import Callable, Iterable
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from socketserver import ThreadingMixIn
from urllib.parse import parse_qs, quote, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from newsletter.defaults import UNSUBSCRIBE_HOST, UNSUBSCRIBE_PORT
from newsletter.delivery.suppression import UnsubscribedFile
from newsletter.errors import ConfigError, InputError
from newsletter.inputs.addresses import check_address
from newsletter.inputs.settings import Secret
from newsletter.message.unsubscribe import UnsubscribeLinks, verify_token

DEFAULT_HOST, DEFAULT_PORT = UNSUBSCRIBE_HOST, UNSUBSCRIBE_PORT
MAX_BODY = 16 * 1024  # a one-click body is 26 bytes; a multipart one a few hundred
LISTEN_QUEUE = 1024  # connections the kernel holds while every thread is busy (capped by somaxconn)
SOURCE = "one-click"

_HEADERS = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),  # the page's own URL holds the address and token
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"),
]

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}
button{{font:inherit;padding:.6rem 1.4rem;border:0;border-radius:6px;background:#1a5fa8;color:#fff}}</style>
</head><body><h1>{title}</h1>{body}</body></html>
"""


def _page(title: str, body: str) -> bytes:
    return _PAGE.format(title=html.escape(title), body=body).encode("utf-8")


def _one_click(content_type: str, body: bytes) -> bool:
    """Whether the POST body says `List-Unsubscribe=One-Click`, urlencoded or multipart/form-data."""
    if content_type.lower().startswith("multipart/form-data"):
        head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
        message = BytesParser(policy=HTTP).parsebytes(head + body)
        for part in message.iter_parts() if message.is_multipart() else ():
            if part.get_param("name", header="content-disposition") == "List-Unsubscribe":
                value = part.get_payload(decode=True)
                if isinstance(value, bytes) and value.strip() == b"One-Click":
                    return True
        return False
    fields = parse_qs(body.decode("utf-8", "replace"))
    return "One-Click" in fields.get("List-Unsubscribe", [])


class UnsubscribeApp:
    """The WSGI application: verifies links and records unsubscribes into `target`."""

    def __init__(
        self,
        links: UnsubscribeLinks,
        target: Path,
        *,
        list_name: str = "this list",
        on_unsubscribe: Callable[[str], None] | None = None,
    ) -> None:
        if not links.signed or links.secret is None:
            raise ConfigError(
                "the unsubscribe server needs NEWSLETTER_UNSUBSCRIBE_URL with {email} and {token} "
                "(e.g. https://example.org/unsubscribe?address={email}&token={token}) and NEWSLETTER_SECRET"
            )
        self.links = links
        self.secret: Secret = links.secret
        self.target = target
        self.unsubscribed = UnsubscribedFile(target)
        self.unsubscribed.load()  # a link, or a bad row, in the file is said now, not on the first POST
        self.list_name = list_name
        self.on_unsubscribe = on_unsubscribe

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        status, body = self.respond(environ)
        headers = [*_HEADERS, ("Content-Length", str(len(body)))]
        if status.startswith("405"):
            headers.append(("Allow", "GET, HEAD, POST"))
        start_response(status, headers)
        return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    def _address(self, environ: WSGIEnvironment) -> tuple[str, str] | None:
        found = self.links.parse(*_raw_target(environ))
        if found is None:
            return None
        email, token = found
        try:
            address, _ = check_address(email)
        except ValueError:
            return None
        return address, token

    def respond(self, environ: WSGIEnvironment) -> tuple[str, bytes]:
        """The status line and page for one request; records an unsubscribe on a valid POST."""
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        if method not in ("GET", "HEAD", "POST"):
            return "405 Method Not Allowed", _page("Not allowed", "<p>Use the link from the email.</p>")
        found = self._address(environ)
        if found is None:
            return "404 Not Found", _page("Not found", "<p>There is no page here.</p>")
        address, token = found
        if not verify_token(self.secret, self.links.list_id, address, token):
            return "403 Forbidden", _page(
                "This link is not valid",
                "<p>The unsubscribe link is incomplete or was changed. Use the whole link "
                "from the email, or reply to the email and ask to be removed.</p>",
            )
        who, listed = html.escape(address), html.escape(self.list_name)
        if method != "POST":
            return "200 OK", _page(
                "Unsubscribe",
                f"<p>Stop sending {listed} to <strong>{who}</strong>?</p>"
                '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
                "<button type=\"submit\">Unsubscribe</button></form>",
            )
        try:
            length = int(str(environ.get("CONTENT_LENGTH") or 0))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            return "400 Bad Request", _page("Bad request", "<p>The request body is not acceptable.</p>")
        body = environ["wsgi.input"].read(length) if length else b""
        if not _one_click(str(environ.get("CONTENT_TYPE", "")), body):
            return "400 Bad Request", _page(
                "Bad request", "<p>An unsubscribe request must carry List-Unsubscribe=One-Click.</p>"
            )
        try:
            added = self.unsubscribed.add([address], source=SOURCE)
        except (InputError, OSError) as exc:  # the file became a link, the disk is full: record nothing, say so
            sys.stderr.write(f"unsubscribe-server: {exc}\n")
            return "503 Service Unavailable", _page(
                "Not recorded", "<p>The request could not be recorded just now. Please try again later.</p>"
            )
        if added and self.on_unsubscribe is not None:
            self.on_unsubscribe(address)
        return "200 OK", _page(
            "You are unsubscribed",
            f"<p><strong>{who}</strong> will get no more messages from {listed}.</p>",
        )


def _raw_target(environ: WSGIEnvironment) -> tuple[str, str]:
    """The request's path and query, still percent-encoded.

    PATH_INFO is decoded (an encoded `/` in an address is lost in it), so the
    undecoded request target is used where the server passes it on; otherwise
    PATH_INFO is encoded again, which is exact for every address without a `/`.
    """
    uri = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if isinstance(uri, str) and uri:
        parts = urlsplit(uri)
        return parts.path, parts.query
    # WSGI hands the decoded path over as latin-1 text of its bytes (PEP 3333).
    decoded = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
    return quote(decoded.encode("latin-1", "replace"), safe="/"), str(environ.get("QUERY_STRING", ""))


class _Handler(WSGIRequestHandler):
    """Request lines hold addresses and tokens: they stay out of the log."""

    timeout = 15  # a client that stalls does not hold a thread for ever

    def get_environ(self) -> WSGIEnvironment:
        environ = super().get_environ()
        environ["REQUEST_URI"] = self.path  # undecoded, as Apache and uWSGI pass it on
        return environ

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"unsubscribe-server: {format % args}\n")


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = LISTEN_QUEUE


def make_unsubscribe_server(app: UnsubscribeApp, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> WSGIServer:
    """A threaded stdlib server for `app`; call `serve_forever()` (port 0: any free port)."""
    return make_server(host, port, app, server_class=_ThreadingServer, handler_class=_Handler)
