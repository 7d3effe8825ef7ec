"""Delivery into a folder of `.eml` files, the default when no SMTP host is configured."""

from __future__ import annotations

import os
import re
from pathlib import Path

from newsletter.message import Outgoing


def eml_name(address: str) -> str:
    """A file name that is safe on every filesystem and still shows whom it is for."""
    return re.sub(r"[^A-Za-z0-9@._+-]", "_", address)[:150] + ".eml"


class OutboxTransport:
    """Writes each message to `folder/<address>.eml`, atomically (temp file, then rename)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @property
    def destination(self) -> str:
        return str(self.folder)

    @property
    def connected(self) -> bool:
        return self.folder.is_dir()

    def open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    def send(self, message: Outgoing) -> None:
        target = self.folder / eml_name(message.envelope.recipient)
        partial = target.with_name(target.name + ".part")
        with partial.open("wb") as stream:
            stream.write(message.data)
        os.replace(partial, target)

    def close(self) -> None:
        return None
