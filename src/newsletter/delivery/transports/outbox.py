"""Delivery into a folder of `.eml` files, the default when no SMTP host is configured."""

from __future__ import annotations

import os
from pathlib import Path

from newsletter.inputs.folder import address_stem
from newsletter.message.builder import Outgoing


def eml_name(address: str) -> str:
    return address_stem(address) + ".eml"


class OutboxTransport:
    """Writes each message to `folder/<address>.eml`, atomically (temp file, then rename)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @property
    def connected(self) -> bool:
        return self.folder.is_dir()

    def open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    def check(self, message: Outgoing) -> None:
        return None  # a folder takes any message

    def send(self, message: Outgoing) -> None:
        target = self.folder / eml_name(message.envelope.recipient)
        partial = target.with_name(target.name + ".part")
        with partial.open("wb") as stream:
            stream.write(message.data)
        os.replace(partial, target)

    def close(self) -> None:
        return None
