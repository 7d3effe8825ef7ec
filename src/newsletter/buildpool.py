"""Rendering messages in other processes, ahead of the SMTP connections and for preflight.

Python runs one thread at a time: rendering a recipient (~0.25 ms) and driving its
SMTP transaction (~0.4 ms) would share one core while the machine has more. A
forked child process renders and builds batches of messages while the parent sends
and journals; a small window of batches in flight bounds the memory. Rendering is a
pure function of the campaign and the recipient, so nothing about the journal's
exactly-once discipline changes: the parent still marks, sends and records.

Where `fork` is unavailable (Windows, and macOS's default) or there is one core,
messages are built in the calling thread, as before.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from multiprocessing.pool import AsyncResult, Pool
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from newsletter.recipients import Recipient

Work = Callable[["Recipient"], Any]
BATCH = 32  # recipients per task: big enough to amortise pickling, small enough to stream
WINDOW = 6  # batches in flight: ~200 messages of ~20 KB buffered at most

_work: Work | None = None  # inherited by the forked children; set just before the fork


def _child_init() -> None:
    # Ctrl-C goes to the whole process group; only the parent decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _work_batch(batch: list[Recipient]) -> list[Any]:
    assert _work is not None
    return [_work(recipient) for recipient in batch]


def can_fork() -> bool:
    return sys.platform == "linux" and (os.cpu_count() or 1) > 1


class BuildPool:
    """`map(recipients)` yields (recipient, work(recipient)) in order, computed in child processes.

    `work` must return its failures as values: an exception ends the whole batch.
    """

    def __init__(self, work: Work, *, processes: int = 1) -> None:
        self._local = work
        self._pool: Pool | None = None
        if can_fork():
            global _work
            _work = work
            self._pool = multiprocessing.get_context("fork").Pool(processes, initializer=_child_init)
        self._window = WINDOW * processes

    def map(self, recipients: Iterable[Recipient]) -> Iterator[tuple[Recipient, Any]]:
        if self._pool is None:
            for recipient in recipients:
                yield recipient, self._local(recipient)
            return
        source = iter(recipients)
        window: deque[tuple[list[Recipient], AsyncResult[list[Any]]]] = deque()
        while True:
            while len(window) < self._window and (batch := list(islice(source, BATCH))):
                window.append((batch, self._pool.apply_async(_work_batch, (batch,))))
            if not window:
                return
            batch, result = window.popleft()
            yield from zip(batch, result.get(), strict=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> BuildPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
