"""Who this run sends to: the journal's states, the suppression list and `--limit`, counted.

A plan walks the list once and sorts every recipient into planned, already done,
unknown (skipped unless asked) or suppressed; the counts become the run's `Summary`,
which the send fills in and the CLI prints.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from newsletter.defaults import (
    DEFAULT_CONNECTIONS,
    MAX_ATTEMPTS,
    RECONNECT_ATTEMPTS,
    RECONNECT_DELAY,
    RECONNECT_FOR,
    RETRY_DELAY,
    RETRY_WINDOW,
)
from newsletter.delivery.journal import Journal
from newsletter.delivery.states import FAILED, SENT, UNKNOWN
from newsletter.errors import NewsletterError
from newsletter.inputs.addresses import address_key
from newsletter.inputs.recipients import Recipient


@dataclass(frozen=True)
class SendOptions:
    """How hard to push and how patiently to retry."""

    connections: int = DEFAULT_CONNECTIONS
    rate: float | None = None  # messages per second over all connections
    max_attempts: int = MAX_ATTEMPTS  # per recipient and run, for 4xx replies
    retry_delay: float = RETRY_DELAY  # first back-off after a 4xx; doubles each time
    retry_window: float = RETRY_WINDOW  # no retry later than this after a recipient's first 4xx
    reconnect_attempts: int = RECONNECT_ATTEMPTS
    reconnect_delay: float = RECONNECT_DELAY  # first back-off between reconnects; doubles
    reconnect_for: float = RECONNECT_FOR  # total seconds to keep trying a relay that went away
    resend_unknown: bool = False
    retry_failed: bool = False  # send again to recipients an earlier run recorded `failed`
    ignore_suppression: bool = False
    limit: int | None = None  # messages to hand over in this run
    queue_size: int = 64


@dataclass
class Summary:
    """What a run did, in numbers the CLI prints and the exit code derives from."""

    planned: int = 0
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    unknown: int = 0
    already_done: int = 0
    skipped_unknown: int = 0
    suppressed: int = 0  # = unsubscribed + bounced
    unsubscribed: int = 0  # in unsubscribed.csv
    bounced: int = 0  # a permanent failure for a dead address in an earlier campaign
    retrying_failed: int = 0  # planned although recorded `failed` (--retry-failed)
    interrupted: bool = False
    fatal: NewsletterError | None = None
    started: float = field(default_factory=time.monotonic)  # the sending phase: first connection ready
    elapsed: float = 0.0  # ... to the last reply

    @property
    def rate(self) -> float:
        """Messages handed over per second of the sending phase: the one rate every report shows."""
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def problems(self) -> int:
        return self.failed + self.deferred + self.unknown


class Plan:
    """Decides, recipient by recipient, who is sent to in this run, and counts the rest."""

    def __init__(
        self,
        journal: Journal | None,
        options: SendOptions,
        *,
        unsubscribed: set[str] | None = None,  # address_key of each (read_unsubscribed)
    ) -> None:
        self.journal = journal
        self.options = options
        self.unsubscribed = unsubscribed or set()
        self.summary = Summary()
        # A few planned addresses that need SMTPUTF8: the transport refuses a relay
        # without it before the first message, instead of failing them one by one.
        self.smtputf8: list[str] = []

    def select(self, recipients: Iterable[Recipient], *, chunk: int = 256) -> Iterator[Recipient]:
        batch: list[Recipient] = []
        for recipient in recipients:
            batch.append(recipient)
            if len(batch) >= chunk:
                yield from self._select(batch)
                batch = []
            if self.options.limit is not None and self.summary.planned >= self.options.limit:
                return
        yield from self._select(batch)

    def mark(self, recipients: Iterable[Recipient], *, chunk: int = 256) -> Iterator[tuple[Recipient, bool]]:
        """Every recipient of `recipients`, with whether this run sends to it, counting as it goes.

        Lets one pass over the list serve both the pre-send check, which renders
        everyone, and the send, which needs only the selected.
        """
        iterator = iter(recipients)
        while batch := list(itertools.islice(iterator, chunk)):
            selected = {id(recipient) for recipient in self._select(batch)}
            for recipient in batch:
                yield recipient, id(recipient) in selected

    def _select(self, batch: list[Recipient]) -> Iterator[Recipient]:
        summary = self.summary
        states: dict[str, str] = {}
        failed_before: set[str] = set()
        if self.journal is not None and batch:
            keys = [r.key for r in batch]
            states = self.journal.states(keys)
            if not self.options.ignore_suppression:
                failed_before = self.journal.suppressed_failures(keys)
        for recipient in batch:
            if self.options.limit is not None and summary.planned >= self.options.limit:
                return
            state = states.get(recipient.key)
            if state == SENT or (state == FAILED and not self.options.retry_failed):
                summary.already_done += 1
            elif state == UNKNOWN and not self.options.resend_unknown:
                summary.skipped_unknown += 1
            elif not self.options.ignore_suppression and address_key(recipient.email) in self.unsubscribed:
                summary.suppressed += 1
                summary.unsubscribed += 1
            elif not self.options.ignore_suppression and recipient.key in failed_before:
                summary.suppressed += 1
                summary.bounced += 1
            else:
                summary.planned += 1
                summary.retrying_failed += state == FAILED
                if recipient.smtputf8 and len(self.smtputf8) < 6:
                    self.smtputf8.append(recipient.email)
                yield recipient
