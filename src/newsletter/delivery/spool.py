"""The pre-send check's messages, kept for the send: every recipient is rendered once per run.

Before the first message leaves, the check renders every recipient (a template
error stops the run before anyone gets anything). The messages it builds for the
recipients this run sends to are not thrown away: each rendering process appends
them, a batch at a time, to a file of its own in a private temporary folder, and
the sender reads the batches back in list order. Sending then costs a read and an
unpickle per batch instead of a second render and build per message, and the CSV
is not read a second time either.

Batches are written as they are; past `RAW_BYTES` in one file they are compressed
(zlib, fastest level), so a list of a million recipients costs a few gigabytes of
temporary disk at most, not tens. The files are removed when the run ends; a
folder left by a run that was killed (its name carries the owner's pid) is removed
by the next spool made on this machine, since it holds the recipients' messages.

Each message keeps the Date and Message-ID it was built with at the check.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.errors import NewsletterError

if TYPE_CHECKING:
    from newsletter.inputs.recipients import Recipient
    from newsletter.message.builder import Outgoing

PREFIX = "newsletter-spool-"
RAW_BYTES = 256 * 1024 * 1024  # per writing process: beyond this, batches are compressed

Location = tuple[int, int, int, bool, int]
"""(writer's pid, offset, length, compressed, messages): where one batch of messages is."""


class Spool:
    """Batches of built messages: written by the rendering processes, read back by the sender.

    `write` runs in whichever process built the batch (a forked child, or this one)
    and returns the batch's `Location`; the owner `add`s the locations in list order
    and `messages()` replays them.
    """

    def __init__(self) -> None:
        remove_stale()
        self.folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))  # mode 0700
        self._index: list[Location] = []
        self.count = 0  # messages added
        self._readers: dict[int, int] = {}
        self._writer: tuple[int, int] | None = None  # (pid, fd) of this process's file
        self._offset = 0

    def _file(self, pid: int) -> Path:
        return self.folder / f"{pid}.spool"

    def write(self, messages: list[tuple[Recipient, Outgoing]]) -> Location:
        """Append one batch to this process's file; NewsletterError if the disk refuses it."""
        pid = os.getpid()
        try:
            if self._writer is None or self._writer[0] != pid:  # first batch in this process
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                self._writer, self._offset = (pid, os.open(self._file(pid), flags, 0o600)), 0
            data = pickle.dumps(messages, pickle.HIGHEST_PROTOCOL)
            compressed = self._offset > RAW_BYTES
            if compressed:
                data = zlib.compress(data, 1)
            view = memoryview(data)
            while view:
                view = view[os.write(self._writer[1], view) :]
        except OSError as exc:
            raise NewsletterError(
                f"cannot keep the rendered messages in {self.folder}: {exc.strerror or exc}; "
                "free some disk space (or point TMPDIR elsewhere) and run the same command again"
            ) from None
        location = (pid, self._offset, len(data), compressed, len(messages))
        self._offset += len(data)
        return location

    def add(self, location: Location) -> None:
        """Record the next batch, in list order."""
        self._index.append(location)
        self.count += location[4]

    def messages(self) -> Iterator[tuple[Recipient, Outgoing]]:
        """Every added message, in the order the batches were added."""
        for pid, offset, length, compressed, _ in self._index:
            fd = self._readers.get(pid)
            if fd is None:
                fd = self._readers[pid] = os.open(self._file(pid), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            data = os.pread(fd, length, offset)
            while len(data) < length:  # a short read is allowed, if unlikely for a regular file
                more = os.pread(fd, length - len(data), offset + len(data))
                if not more:
                    raise NewsletterError(f"the spool file {self._file(pid)} was cut short")
                data += more
            batch: list[tuple[Recipient, Outgoing]] = pickle.loads(  # noqa: S301 - written by this run
                zlib.decompress(data) if compressed else data
            )
            yield from batch

    def close(self) -> None:
        for fd in self._readers.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._readers.clear()
        if self._writer is not None and self._writer[0] == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._writer[1])
        self._writer = None
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def remove_stale(base: Path | None = None) -> list[Path]:
    """Remove the spool folders of this user whose owning process is gone; return them."""
    removed = []
    for folder in Path(base or tempfile.gettempdir()).glob(f"{PREFIX}*-*"):
        pid_text = folder.name.removeprefix(PREFIX).partition("-")[0]
        try:
            pid = int(pid_text)
            if folder.is_symlink() or folder.lstat().st_uid != os.getuid():
                continue
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        except (ValueError, OSError):  # not ours to judge: a foreign name, or another user's process
            continue
    return removed
