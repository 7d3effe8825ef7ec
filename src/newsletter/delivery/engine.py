"""The send loop: rate-limit, retry, record, over N persistent connections.

One producer (the calling thread) feeds the messages the check built into a
bounded queue; N worker threads each own one persistent
connection and hand messages over. Every message is marked `sending` in the
journal before its data goes out and `sent` only after the relay's 250.

A relay that refuses everything alike (a missing login, no relay permission)
would otherwise mark the whole list `failed` for good. So refusals are watched
across all connections: `REFUSAL_STREAK` in a row with the same permanent reply,
or `POLICY_STREAK` about login, relay access or policy before anything was
accepted, stop the run and leave those recipients to send again (RelayRefusing).
A reply that says the mailbox is dead (5.1.x, 5.2.x: `is_dead_address`) is about
the recipient and breaks the streak, so a list with dead addresses never stops.
"""

from __future__ import annotations

import heapq
import itertools
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from newsletter.defaults import POLICY_STREAK, RECONNECT_DELAY_MAX, REFUSAL_STREAK
from newsletter.delivery.journal import Journal, Outcome
from newsletter.delivery.plan import SendOptions, Summary
from newsletter.delivery.states import DEFERRED, FAILED, SENT, UNKNOWN
from newsletter.delivery.suppression import is_dead_address
from newsletter.delivery.transports import Transport
from newsletter.errors import (
    ConnectionLost,
    NewsletterError,
    RecipientRefused,
    RelayRefusing,
    RelayUnreachable,
)
from newsletter.inputs.recipients import Recipient

if TYPE_CHECKING:
    from newsletter.message.builder import Outgoing


class Reporter(Protocol):
    """Progress callbacks; called from worker threads."""

    def start(self, total: int, done: int) -> None: ...

    def advance(self, email: str, state: str) -> None: ...

    def note(self, text: str) -> None: ...


class NullReporter:
    def start(self, total: int, done: int) -> None:
        return None

    def advance(self, email: str, state: str) -> None:
        return None

    def note(self, text: str) -> None:
        return None


class RateLimiter:
    """A smooth limit shared by all connections: one slot every 1/rate seconds, no bursts."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self.unlimited = not self._interval
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self, stop: threading.Event) -> bool:
        """Block until this caller's slot; False if `stop` was set meanwhile."""
        if not self._interval:
            return not stop.is_set()
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
        delay = slot - now
        return not stop.wait(delay) if delay > 0 else not stop.is_set()


_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")
_ADDRESSES = re.compile(r"<[^>]*>|\S+@\S+")
_POLICY_WORDS = re.compile(
    r"relay(ing)? (access )?(denied|not permitted|prohibited)|access denied|authenticat|not permitted|"
    r"sender (address )?rejected|must (be )?log|client host rejected",
    re.IGNORECASE,
)


def refusal_signature(refused: RecipientRefused) -> str:
    """What two refusals share when the relay, not the recipient, is the reason: the code,
    the enhanced code and the words, without the addresses a relay quotes."""
    words = " ".join(_ADDRESSES.sub("", refused.text).lower().split())
    return f"{refused.code} {words}"


def names_policy(refused: RecipientRefused) -> bool:
    """A reply about login, relay permission or policy (530, 535, 5.7.x, "relay access denied")."""
    if refused.code in (530, 535, 538):
        return True
    enhanced = _ENHANCED.match(refused.text)
    return bool(enhanced and enhanced.group(1).startswith("5.7.")) or bool(_POLICY_WORDS.search(refused.text))


@dataclass
class _Job:
    recipient: Recipient
    outgoing: Outgoing
    attempts: int = 0
    first_deferred: float | None = None
    reconnects: int = 0


class Engine:
    """Runs one send: a producer feeding N connections, each recording into the journal."""

    def __init__(
        self,
        *,
        transport_factory: Callable[[], Transport],
        journal: Journal | None,
        options: SendOptions,
        reporter: Reporter | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.transport_factory = transport_factory
        self.journal = journal
        self.options = options
        self.reporter: Reporter = reporter or NullReporter()
        self.stop = stop or threading.Event()
        self._limiter = RateLimiter(options.rate)
        self._cond = threading.Condition()
        self._ready: deque[_Job] = deque()
        self._retry: list[tuple[float, int, _Job]] = []
        self._sequence = itertools.count()
        self._inflight = 0
        self._producing = True
        self._workers = 0
        self._broken: NewsletterError | None = None
        self._summary = Summary()
        self._accepted_any = False  # a 250 in this run: the relay takes mail from us
        self._streak: list[tuple[Recipient, str]] = []  # permanent refusals since the last 250
        self._refusing: str | None = None  # the signature that stopped the run

    # -- the producer ----------------------------------------------------------

    def run(
        self, messages: Iterable[tuple[Recipient, Outgoing]], *, total: int, done: int, summary: Summary
    ) -> Summary:
        """Hand every message over (their recipients already planned); return `summary` filled in.

        `total` and `done` are what the progress shows: the whole list, and those
        finished in earlier runs.
        """
        self._summary = summary
        first = self.transport_factory()
        try:
            first.open()  # fail fast: TLS and authentication problems stop here, nothing marked
        except ConnectionLost as exc:  # not even one connection: a setting to check, not a retry
            raise RelayUnreachable.from_lost(exc) from None
        summary.started = time.monotonic()  # the sending phase, and its rate, begin here
        self.reporter.start(total, done)
        workers = [threading.Thread(target=self._work, args=(first,), name="send-0", daemon=True)]
        for index in range(1, max(1, self.options.connections)):
            workers.append(threading.Thread(target=self._work, args=(None,), name=f"send-{index}", daemon=True))
        self._workers = len(workers)
        for worker in workers:
            worker.start()
        try:
            for recipient, outgoing in messages:
                if not self._put(_Job(recipient, outgoing)):
                    break
        finally:
            with self._cond:
                self._producing = False
                self._cond.notify_all()
            for worker in workers:
                worker.join()
        summary.interrupted = self.stop.is_set() and summary.fatal is None
        if self._broken is not None and summary.fatal is None:
            summary.fatal = self._broken
        summary.elapsed = time.monotonic() - summary.started
        return summary

    def _put(self, job: _Job) -> bool:
        with self._cond:
            while len(self._ready) >= self.options.queue_size and not self._halted():
                self._cond.wait(0.5)
            if self._halted():
                return False
            self._ready.append(job)
            self._cond.notify()
            return True

    def _halted(self) -> bool:
        return self.stop.is_set() or self._broken is not None or self._workers == 0

    # -- the workers -----------------------------------------------------------

    def _next(self, *, wait: bool = True) -> _Job | None:
        """The next job for a connection; None when the run is over (or, without `wait`, if none is ready)."""
        with self._cond:
            while True:
                if self._halted():
                    return None
                now = time.monotonic()
                while self._retry and self._retry[0][0] <= now:
                    self._ready.appendleft(heapq.heappop(self._retry)[2])
                if self._ready:
                    self._inflight += 1
                    job = self._ready.popleft()
                    self._cond.notify_all()
                    return job
                if not self._producing and not self._retry and self._inflight == 0:
                    self._cond.notify_all()
                    return None
                if not wait:
                    return None
                timeout = min(0.5, self._retry[0][0] - now) if self._retry else 0.5
                self._cond.wait(max(timeout, 0.01))

    def _finished(self, job: _Job | None = None, delay: float = 0.0) -> None:
        with self._cond:
            self._inflight -= 1
            if job is not None:
                heapq.heappush(self._retry, (time.monotonic() + delay, next(self._sequence), job))
            self._cond.notify_all()

    def _work(self, transport: Transport | None) -> None:
        """One connection's loop.

        A `sent` outcome is held back, at most until this connection's next message is
        marked `sending`, so both go in one journal commit. It is written at once
        whenever that would mean waiting: for the queue, a reconnect, the rate limit.
        """
        transport = transport or self.transport_factory()
        held: list[Outcome] = []  # at most one
        try:
            while True:
                job = self._next(wait=False) if held else self._next()
                if job is None and held:
                    self._flush(held)
                    job = self._next()
                if job is None:
                    return
                if not transport.connected:
                    self._flush(held)
                    if not self._connect(transport):
                        self._finished(job)  # back to the queue for a connection that works
                        return
                if not self._limiter.wait(self.stop):
                    self._finished()
                    return
                self._finished(*self._deliver(transport, job, held))
        except NewsletterError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug must stop the run loudly, not strand the queue
            self._fail(NewsletterError(f"internal error in {threading.current_thread().name}: {exc!r}"))
        finally:
            try:
                self._flush(held)
            except Exception as exc:  # the journal failed: the run must say so, like any failure
                self._fail(NewsletterError(f"could not record a delivery in the journal: {exc!r}"))
            finally:
                transport.close()
                with self._cond:
                    self._workers -= 1
                    self._cond.notify_all()

    def _flush(self, held: list[Outcome]) -> None:
        if held and self.journal is not None:
            self.journal.mark(*held[0])
            held.clear()

    def _fail(self, exc: NewsletterError) -> None:
        with self._cond:
            if self._summary.fatal is None:
                self._summary.fatal = exc
            self.stop.set()
            self._cond.notify_all()

    def _connect(self, transport: Transport) -> bool:
        """Reconnect with a doubling back-off for at most `reconnect_for` seconds in all."""
        delay = self.options.reconnect_delay
        give_up = time.monotonic() + self.options.reconnect_for
        last: ConnectionLost | None = None
        while not self.stop.is_set():
            try:
                transport.open()
                return True
            except ConnectionLost as exc:
                last = exc
            left = give_up - time.monotonic()
            if left <= 0:
                break
            wait = min(delay, left)
            self.reporter.note(f"{last}; reconnecting in {wait:.0f} s")
            if self.stop.wait(wait):
                return False
            delay = min(delay * 2, RECONNECT_DELAY_MAX)
        with self._cond:
            if self._workers == 1 and last is not None:  # the last connection: relay out of reach
                self._broken = ConnectionLost(
                    f"{last.reason}; still out of reach after {self.options.reconnect_for:.0f} s (--reconnect-for)",
                    host=last.host,
                    port=last.port,
                    code=last.code,
                )
            self._cond.notify_all()
        return False

    def _deliver(self, transport: Transport, job: _Job, held: list[Outcome]) -> tuple[_Job, float] | tuple[()]:
        """Hand one message over and record the outcome; return a job to retry, if any.

        `held` carries this connection's last `sent` outcome into the next `sending` commit.
        """
        recipient, outgoing = job.recipient, job.outgoing
        journal = self.journal
        # A message the relay said it cannot take (over its SIZE, say) stops the run here,
        # before the journal marks anyone: a campaign-wide limit is not a recipient's failure.
        transport.check(outgoing)
        if journal is not None:
            finished = held[0] if held else None
            journal.mark_sending(recipient.key, recipient.email, recipient.line, outgoing.message_id, finished=finished)
            held.clear()  # only once committed: a failed commit leaves it for the final flush
        try:
            transport.send(outgoing)
        except RecipientRefused as refused:
            return self._refused(job, refused)
        except ConnectionLost as lost:
            if lost.data_sent:
                self._record(recipient, UNKNOWN, lost.code, f"{lost.reason} after the message data was sent")
                return ()
            job.reconnects += 1
            if job.reconnects > self.options.reconnect_attempts:
                self._record(recipient, DEFERRED, lost.code, lost.reason)
                return ()
            if journal is not None:
                journal.mark(recipient.key, DEFERRED, lost.code, f"{lost.reason}; will retry")
            return (job, 0.0)
        with self._cond:
            self._accepted_any = True
            self._streak.clear()
        if journal is not None and self._limiter.unlimited:
            held.append((recipient.key, SENT, 250, None))  # committed with the next `sending`
            self._record(recipient, SENT, 250, None, write_journal=False)
        else:
            self._record(recipient, SENT, 250, None)
        return ()

    def _refused(self, job: _Job, refused: RecipientRefused) -> tuple[_Job, float] | tuple[()]:
        recipient = job.recipient
        if refused.permanent:
            if not self._relay_wide(recipient, refused):
                self._record(recipient, FAILED, refused.code, refused.text)
            return ()
        job.attempts += 1
        now = time.monotonic()
        job.first_deferred = job.first_deferred or now
        delay = self.options.retry_delay * 2 ** (job.attempts - 1)
        in_window = now + delay - job.first_deferred <= self.options.retry_window
        if job.attempts < self.options.max_attempts and in_window and not self.stop.is_set():
            if self.journal is not None:
                self.journal.mark(recipient.key, DEFERRED, refused.code, refused.text)
            self.reporter.note(f"{recipient.email}: {refused.code} {refused.text}; retrying in {delay:.0f} s")
            return (job, delay)
        self._record(recipient, DEFERRED, refused.code, refused.text)
        return ()

    def _relay_wide(self, recipient: Recipient, refused: RecipientRefused) -> bool:
        """Whether this refusal is the relay's, not the recipient's; if so, stop the run and leave
        everyone it refused alike to send again. Their earlier `failed` marks are taken back."""
        signature = refusal_signature(refused)
        if is_dead_address(refused.code, refused.text):  # about this mailbox: the relay reads each one
            with self._cond:
                self._streak.clear()
            return False
        with self._cond:
            if self._refusing is not None:
                released = [recipient] if signature == self._refusing else []
                stopping = bool(released)
            else:
                self._streak.append((recipient, signature))
                same = [r for r, s in self._streak if s == signature]
                policy = names_policy(refused) and not self._accepted_any
                stopping = len(same) >= (POLICY_STREAK if policy else REFUSAL_STREAK) and len(same) == len(
                    self._streak
                )
                released = same if stopping else []
                if stopping:
                    self._refusing = signature
                    self._summary.failed -= len(same) - 1  # all but this one were counted failed
                    self._broken = RelayRefusing(
                        f"the relay refused {len(same)} messages in a row with the same reply: "
                        f"{refused.code} {refused.text}. Stopped; those recipients are left to send "
                        "again. Check the login (SMTP_USERNAME, SMTP_PASSWORD) and that this relay "
                        "lets you send from the From address"
                    )
                    self._cond.notify_all()
        if self.journal is not None:
            for other in released:
                self.journal.release(other.key, refused.code, refused.text)
        return stopping

    def _record(
        self, recipient: Recipient, state: str, code: int | None, reply: str | None, *, write_journal: bool = True
    ) -> None:
        """A final outcome for this run: journal (unless the caller holds it back), summary and progress."""
        if self.journal is not None and write_journal:
            self.journal.mark(recipient.key, state, code, reply)
        with self._cond:
            summary = self._summary
            if state == SENT:
                summary.sent += 1
            elif state == FAILED:
                summary.failed += 1
            elif state == DEFERRED:
                summary.deferred += 1
            else:
                summary.unknown += 1
        self.reporter.advance(recipient.email, state)
