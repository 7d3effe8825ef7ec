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

from newsletter.cli.output import err
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
    """Messages per second, as rich measures it over the last half minute."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:7.1f}/s" if speed else "      -/s")


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
        self._last = 0.0

    def start(self, total: int, done: int) -> None:
        # Shown only once the relay has accepted the first connection: a TLS or login
        # error then stands alone instead of under an empty bar.
        self.progress.update(self.task, total=total, completed=done)
        self.progress.start()

    def advance(self, email: str, state: str) -> None:
        with self._lock:
            self._pending += 1
            now = time.monotonic()
            if now - self._last < self.STEP:
                step = 0
            else:
                step, self._pending, self._last = self._pending, 0, now
        if step:
            self.progress.advance(self.task, step)
        if state != SENT:
            self.progress.console.print(f"{email}: {state}")

    def flush(self) -> None:
        with self._lock:
            step, self._pending = self._pending, 0
        if step:
            self.progress.advance(self.task, step)

    def note(self, text: str) -> None:
        self.progress.console.print(text)
