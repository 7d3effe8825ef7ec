"""The local preview page of `newsletter preview --serve`: a server and its static files.

`open_server` binds the port; the caller runs `serve_forever()` (the CLI, in the
foreground until Ctrl-C) or uses `server.running()` in a background thread (tests).
"""

from __future__ import annotations

import errno

from newsletter.defaults import PREVIEW_PORT
from newsletter.errors import ConfigError
from newsletter.web.preview.live import LiveCampaign, Source
from newsletter.web.preview.server import PreviewServer, running

DEFAULT_PORT = PREVIEW_PORT

__all__ = ["DEFAULT_PORT", "LiveCampaign", "PreviewServer", "Source", "open_server", "running"]


def open_server(source: Source, *, port: int | None = None) -> PreviewServer:
    """A server for `source` on 127.0.0.1:`port`.

    With no port, DEFAULT_PORT when it is free and any free port when it is not
    (other local mail tools like that port too); a port asked for by number that
    is taken is an error.
    """
    live = LiveCampaign(source)
    try:
        return PreviewServer(live, port=DEFAULT_PORT if port is None else port)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise ConfigError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
        if port is not None:
            raise ConfigError(
                f"port {port} on 127.0.0.1 is in use; choose another with --port, "
                "or --port 0 for any free port"
            ) from None
    return PreviewServer(live, port=0)
