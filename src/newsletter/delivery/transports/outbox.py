"""Delivery into a folder of `.eml` files, the default when no SMTP host is configured."""

from __future__ import annotations

from pathlib import Path

from newsletter.inputs.folder import address_stem
from newsletter.inputs.safefiles import OutputDir
from newsletter.message.builder import Outgoing


def eml_name(address: str) -> str:
    return address_stem(address) + ".eml"


class OutboxTransport:
    """Writes each message to `folder/<address>.eml`, atomically (temp file, then rename).

    The folder may have come with the campaign, links planted in it included: opening
    refuses a linked folder or any link in it before a message is marked, and each
    file is written no-follow (`newsletter.inputs.safefiles`).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._out: OutputDir | None = None

    @property
    def connected(self) -> bool:
        return self._out is not None

    def open(self) -> None:
        if self._out is None:
            self._out = OutputDir(self.folder)

    def check(self, message: Outgoing) -> None:
        return None  # a folder takes any message

    def send(self, message: Outgoing) -> None:
        if self._out is None:
            self.open()
        assert self._out is not None
        self._out.write(eml_name(message.envelope.recipient), message.data)

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
