"""What a long send shows: a progress bar fed from the sending threads, and the signal handling
that turns Ctrl-C or SIGTERM into "finish the messages in flight, then stop"."""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from newsletter.cli.output import err, per_second
from newsletter.delivery.states import SENT


class Signals:
    """First SIGINT/SIGTERM: stop taking new recipients; a second SIGINT aborts at once."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum)
        self.stop.set()
        err.print("\nStopping: finishing the messages in flight (Ctrl-C again to abort now)...")

    def __enter__(self) -> Signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class _RateColumn(ProgressColumn):
    """Messages handed over in this run per second since its first connection: the summary's rate.

    rich's own speed is a moving average over the last half minute, which told a
    different number from the summary and `status` for the same send.
    """

    def render(self, task: Task) -> Text:
        sent = task.fields.get("sent", 0)
        elapsed = task.elapsed
        return Text(f"{per_second(sent / elapsed):>8}" if sent and elapsed else "     -/s")


def new_progress() -> Progress:
    return Progress(
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


class ProgressReporter:
    """Feeds the bar in steps of at most a twentieth of a second: rich redraws ten times a
    second anyway, and a call per message cost the sending threads more than the journal."""

    STEP = 0.05

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("sending", total=None)
        self._lock = threading.Lock()
        self._pending = 0
        self._sent = 0
        self._last = 0.0

    def start(self, total: int, done: int) -> None:
        # Shown only once the relay has accepted the first connection: a TLS or login
        # error then stands alone instead of under an empty bar.
        self.progress.reset(self.task, total=total, completed=done, sent=0)  # its clock starts now
        self.progress.start()

    def advance(self, email: str, state: str) -> None:
        with self._lock:
            self._pending += 1
            self._sent += state == SENT
            now = time.monotonic()
            if now - self._last < self.STEP:
                step = 0
            else:
                step, self._pending, self._last = self._pending, 0, now
            sent = self._sent
        if step:
            self.progress.update(self.task, advance=step, sent=sent)
        if state != SENT:
            self.progress.console.print(f"{email}: {state}")

    def flush(self) -> None:
        with self._lock:
            step, self._pending, sent = self._pending, 0, self._sent
        if step:
            self.progress.update(self.task, advance=step, sent=sent)

    def note(self, text: str) -> None:
        self.progress.console.print(text)
