"""The unsubscribe server on a free port of 127.0.0.1, and the one-click POST a mailbox provider sends it."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from newsletter.inputs.settings import Secret
from newsletter.message.unsubscribe import UnsubscribeLinks
from newsletter.web.unsubscribe import UnsubscribeApp, make_unsubscribe_server

SECRET = "security-test-secret-0123456789"
LIST_ID = "announcements.example.org"
QUERY_URL = "https://news.example.org/unsubscribe?email={email}&token={token}"
PATH_URL = "https://news.example.org/u/{email}/{token}"
ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"


def signed_links(url: str = QUERY_URL) -> UnsubscribeLinks:
    return UnsubscribeLinks(url=url, secret=Secret(SECRET), list_id=LIST_ID)


@contextmanager
def unsubscribe_server(
    target: Path, *, url: str = QUERY_URL, on_unsubscribe: Callable[[str], None] | None = None
) -> Iterator[int]:
    """The built-in server recording into `target`; yields its port."""
    app = UnsubscribeApp(signed_links(url), target, list_name="Announcements", on_unsubscribe=on_unsubscribe)
    server = make_unsubscribe_server(app, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def header_link(address: str, url: str = QUERY_URL) -> str:
    """The https link of the List-Unsubscribe header the message to `address` carries."""
    value, one_click = signed_links(url).header_for(address)
    assert value is not None and one_click
    return value.split(", ")[0].removeprefix("<").removesuffix(">")


def post_one_click(port: int, link: str, *, timeout: float = 30) -> int:
    """POST `List-Unsubscribe=One-Click` to the link's path and query, as a reverse proxy passes them on."""
    parts = urlsplit(link)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(
            "POST",
            f"{parts.path}?{parts.query}",
            body=ONE_CLICK_BODY,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()
