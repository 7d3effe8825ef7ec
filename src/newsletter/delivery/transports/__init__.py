"""Ways a message leaves: an SMTP relay or `.eml` files in the outbox folder.

Every transport has the same small interface; the send loop and the
connection lifecycle live once, in `newsletter.delivery.engine`.
"""

from __future__ import annotations

from typing import Protocol

from newsletter.message.builder import Outgoing


class Transport(Protocol):
    """One connection's worth of delivery. Not shared between threads."""

    @property
    def connected(self) -> bool:
        """Whether `send` can be called without `open` first."""
        ...

    def open(self) -> None:
        """Connect (and authenticate); raises SetupError or ConnectionLost."""

    def check(self, message: Outgoing) -> None:
        """Raise SetupError if this destination has said it cannot take `message` (over its
        SIZE, say); called after `open()`, before the journal marks the recipient `sending`."""

    def send(self, message: Outgoing) -> None:
        """Hand one message over; returns only after the relay accepted it.

        Raises RecipientRefused for a 4xx/5xx reply and ConnectionLost when the
        connection broke (with `data_sent` telling whether the outcome is unknown).
        """

    def close(self) -> None:
        """Say goodbye politely; never raises."""
