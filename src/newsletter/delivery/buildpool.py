"""Rendering messages in other processes, ahead of the SMTP connections and for preflight.

Python runs one thread at a time: rendering a recipient (~0.25 ms) and driving its
SMTP transaction would share one core while the machine has more. Forked child
processes render and build batches of messages while the parent sends and journals;
a small window of batches in flight bounds the memory. Rendering is a pure function
of the campaign and the recipient, so nothing about the journal's exactly-once
discipline changes: the parent still marks, sends and records.

Why not `multiprocessing.Pool`: it keeps three helper threads in the parent, and one
of them rebuilds a selector whenever its task cache drains, which cost the sending
process about a tenth of its time, under the same lock its SMTP threads need. Here
each child has one pipe in and one pipe out, batches go round-robin, and the parent
reads each child's results in the order it handed the batches out. A thread in the
child drains its input pipe, so the parent never blocks writing a batch while the
child blocks writing a result.

Where `fork` is unavailable (Windows, and macOS's default) or there is one core,
messages are built in the calling thread, as before. The same when the process
already runs other threads (a web app or a test server calling the library): a
child forked then inherits every lock those threads held at that instant, such as
the allocator's or logging's, and can deadlock on one (Python 3.12 warns about it).
The CLI forks before it starts any thread, so it keeps the children.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import queue
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from newsletter.errors import NewsletterError

if TYPE_CHECKING:
    pass

Work = Callable[[Any], Any]
"""One item's work, or with `batched=True` a whole batch's: a list in, a list as long out."""
BATCH = 32  # recipients per task: big enough to amortise pickling, small enough to stream
WINDOW = 6  # batches in flight per child: ~200 messages of ~20 KB buffered each at most
# Children render ahead at a lower priority: the sending process and the relay answer in
# short bursts, and a reply that waits for a core behind a renderer stalls a connection.
# Measured against a local relay, nice 10 took the send loop from ~2,400 to ~2,900 messages/s.
NICENESS = 10


def can_fork() -> bool:
    """Whether children may be forked now: Linux, more than one core, and this thread alone."""
    return sys.platform == "linux" and (os.cpu_count() or 1) > 1 and _single_threaded()


def _single_threaded() -> bool:
    """No other thread in the process, Python's or a C library's (the kernel's count)."""
    if threading.active_count() > 1:
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return True  # no /proc: Python's own count above is all there is


def _pipe() -> tuple[Connection, Connection]:
    """A one-way pipe with message framing: (read end, write end)."""
    read, write = os.pipe()
    return Connection(read, writable=False), Connection(write, readable=False)


@dataclass
class _Child:
    """The parent's ends of one child: where batches go and where their results come back."""

    pid: int
    tasks: Connection
    results: Connection

    def receive(self) -> list[Any]:
        try:
            kind, payload = pickle.loads(self.results.recv_bytes())  # noqa: S301 - our own forked child
        except (EOFError, OSError):
            raise NewsletterError(f"a rendering process ({self.pid}) ended unexpectedly") from None
        if kind == "error":
            raise payload
        result: list[Any] = payload
        return result


def _serve(work: Work, tasks: Connection, results: Connection, *, batched: bool) -> None:
    """The child's loop: batches in, lists of results out, until the parent closes the pipe.

    Reading and writing happen in threads of their own: the parent never blocks handing
    over a batch, and the child renders the next batch while the last one is written
    (a batch of messages is many times a pipe's buffer).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's "finish in-flight work" handler
    with contextlib.suppress(OSError):  # lowering one's own priority is allowed nearly everywhere
        os.nice(NICENESS)
    inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def read() -> None:
        try:
            while True:
                inbox.put(tasks.recv_bytes())
        except (EOFError, OSError):
            inbox.put(None)

    def write() -> None:
        try:
            while (answer := outbox.get()) is not None:
                results.send_bytes(answer)
        except OSError:  # the parent is gone: nobody is left to tell
            return

    threading.Thread(target=read, daemon=True).start()
    writer = threading.Thread(target=write)
    writer.start()
    try:
        while (data := inbox.get()) is not None:
            batch = pickle.loads(data)  # noqa: S301 - from the parent that forked us
            try:
                done = work(batch) if batched else [work(item) for item in batch]
                answer = pickle.dumps(("ok", done), pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # a bug or an unexpected failure: the parent raises it
                try:
                    answer = pickle.dumps(("error", exc), pickle.HIGHEST_PROTOCOL)
                except Exception:
                    answer = pickle.dumps(("error", NewsletterError(f"rendering failed: {exc!r}")))
            outbox.put(answer)
    finally:
        outbox.put(None)
        writer.join()


class BuildPool:
    """`map(recipients)` yields (recipient, work(recipient)) in order, computed in child processes.

    `work` should return its expected failures as values: an exception ends the whole map.
    With `batched`, `work` takes a batch (a list) and returns one result per item, for
    work that is cheaper done for many items at once (writing them out, say).
    One `map` per pool: stopping one early (a break, an error) shuts the children down.
    """

    def __init__(self, work: Work, *, processes: int = 1, batched: bool = False) -> None:
        self._local = work
        self._batched = batched
        self._children: list[_Child] = []
        self._closed = False
        if can_fork():
            try:
                for _ in range(max(1, processes)):
                    self._children.append(self._fork(work))
            except BaseException:
                self.close()
                raise

    def _fork(self, work: Work) -> _Child:
        task_read, task_write = _pipe()
        result_read, result_write = _pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the parent's code
            status = 0
            try:
                for other in self._children:  # else a sibling's pipe never sees end-of-file
                    other.tasks.close()
                    other.results.close()
                task_write.close()
                result_read.close()
                _serve(work, task_read, result_write, batched=self._batched)
            except BaseException:
                status = 1
            finally:
                os._exit(status)
        task_read.close()
        result_write.close()
        return _Child(pid, task_write, result_read)

    def map(self, items: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        if self._closed:
            raise RuntimeError("this BuildPool is closed")
        source = iter(items)
        if not self._children:
            if not self._batched:
                for item in source:
                    yield item, self._local(item)
            while batch := list(islice(source, BATCH)):
                yield from zip(batch, self._local(batch), strict=True)
            return
        turn = itertools.cycle(self._children)
        window: deque[tuple[list[Any], _Child]] = deque()
        limit = WINDOW * len(self._children)
        try:
            while True:
                while len(window) < limit and (batch := list(islice(source, BATCH))):
                    child = next(turn)
                    try:
                        child.tasks.send_bytes(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL))
                    except OSError:
                        raise NewsletterError(f"a rendering process ({child.pid}) ended unexpectedly") from None
                    window.append((batch, child))
                if not window:
                    return
                batch, child = window.popleft()
                yield from zip(batch, child.receive(), strict=True)
        finally:
            if window:  # results still in the pipes would answer the wrong batches later
                self.close()

    def close(self) -> None:
        """End the children: closing their input lets them finish; a kill makes sure."""
        if self._closed:
            return
        self._closed = True
        for child in self._children:
            child.tasks.close()
        for child in self._children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)  # nothing of theirs is worth waiting for
            with contextlib.suppress(ChildProcessError):  # already reaped elsewhere
                os.waitpid(child.pid, 0)
            child.results.close()
        self._children = []

    def __enter__(self) -> BuildPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
