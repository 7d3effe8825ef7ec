"""`unsubscribed.csv` and which failures say an address is dead: who no send may reach.

One address per row under an `email` header, with the time it was added and
where the request came from. The file is appended to, never rewritten, under
an exclusive lock where the OS has one, so the CLI and the unsubscribe server
can write at the same time without losing entries.

Rows are written quoted, and an address a spreadsheet would take for a formula
(`=1+2@example.org`, a leading `+`, `-` or `@`) gets one leading apostrophe, which
reading takes off again: the file opens safely in a spreadsheet and reads back
the exact address. A row starting with `#` is a comment only when it is not an
address, so `#news@example.org` (valid, and written unquoted by earlier versions)
is never lost. Addresses compare by `address_key`, as tokens do.

The file sits in a campaign folder that may come from someone else, so it is
never opened through a symbolic link (O_NOFOLLOW here, until the tool has one
shared no-follow helper) and must be a regular file.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import re
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from newsletter.errors import InputError, RecipientsError
from newsletter.inputs.addresses import address_key, check_address

try:
    import fcntl
except ImportError:  # Windows: appends of one short write are still whole lines
    fcntl = None  # type: ignore[assignment]

HEADER = ("email", "added", "source")
# An ASCII address in the form `check_address` gives back (up to case): taken as it
# is. Full validation costs ~90 us a row, seconds for a long file read on every
# send; only rows outside this shape pay for it.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
# Not starting with an apostrophe: `'-x@example.org` is the written form of `-x@example.org`.
_PLAIN = re.compile(rf"[A-Za-z0-9._%+-][A-Za-z0-9._%+'-]*@{_LABEL}(?:\.{_LABEL})+")
# What makes a spreadsheet read a cell as a formula, after any apostrophes: an
# address of this shape is written with one more apostrophe in front, and a cell of
# this shape with at least one apostrophe loses one on reading, so every address
# reads back exactly as it was written.
_FORMULA = re.compile(r"'*[=+\-@\t\r]")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_OPEN_FLAGS = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def _escape(address: str) -> str:
    return "'" + address if _FORMULA.match(address) else address


def _unescape(cell: str) -> str:
    return cell[1:] if cell.startswith("'") and _FORMULA.match(cell, 1) else cell


def _refused_link(path: Path) -> InputError:
    return InputError(
        "is a symbolic link; newsletter neither reads nor writes this file through a link, because "
        "a campaign folder from someone else could point it at any file of yours. Replace the link "
        "with a regular file (a copy of the list it points to)",
        path=path,
    )


def _open(path: Path, flags: int) -> int:
    """A descriptor for `path` that is not a link and is a regular file; InputError naming it otherwise.

    O_NONBLOCK: a FIFO planted under the name must be refused, not block the send
    that opens it. FileNotFoundError passes through (an absent list is empty).
    """
    if not _NOFOLLOW and path.is_symlink():  # no O_NOFOLLOW (Windows): the best check there is
        raise _refused_link(path)
    try:
        fd = os.open(path, flags | _NOFOLLOW | _OPEN_FLAGS, 0o666)  # as open() makes it: the umask decides
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) and path.is_symlink():
            raise _refused_link(path) from None
        raise InputError(f"cannot open it: {exc.strerror}", path=path) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError("is not a regular file; it must be a CSV of addresses", path=path)
    return fd


def _identity(fd: int) -> tuple[int, int, int, int]:
    """What changes when anyone else writes, replaces or edits the file: device, inode, size, mtime."""
    info = os.fstat(fd)
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def _address_text(cell: str) -> str | None:
    """The address a row's first cell holds, or None for a blank, header or comment row."""
    cell = cell.strip()
    # A header row anywhere, not only on line 1: a file concatenated from
    # two exports must not stop every send.
    if not cell or cell.lower() == "email":
        return None
    text = _unescape(cell)
    if text.startswith("#") and not _is_address(text):
        return None  # a comment; `#` is also a valid first character of an address
    return text


def _is_address(text: str) -> bool:
    try:
        check_address(text)
    except ValueError:
        return False
    return True


def _read_keys(fd: int, path: Path) -> set[str]:
    """The `address_key` of every address in the open file, read from its start."""
    os.lseek(fd, 0, os.SEEK_SET)
    found: set[str] = set()
    try:
        with open(os.dup(fd), encoding="utf-8-sig", newline="") as stream:
            reader = csv.reader(stream)
            for row in reader:
                if not row:
                    continue
                cell = row[0]
                if _PLAIN.fullmatch(cell):  # nearly every row: nothing to unescape or validate
                    found.add(address_key(cell))
                    continue
                text = _address_text(cell)
                if text is None:
                    continue
                try:
                    address, _ = check_address(text)
                except ValueError as exc:
                    raise RecipientsError(str(exc), path=path, line=reader.line_num) from None
                found.add(address_key(address))
    except UnicodeDecodeError:
        raise RecipientsError("not UTF-8 text", path=path) from None
    return found


def read_unsubscribed(path: Path) -> set[str]:
    """The `address_key` of every address in the file; an absent file is an empty list."""
    try:
        fd = _open(path, os.O_RDONLY)
    except FileNotFoundError:
        return set()
    try:
        return _read_keys(fd, path)
    finally:
        os.close(fd)


@contextmanager
def _locked(fd: int) -> Iterator[None]:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)


def _rows(addresses: list[str], source: str, *, header: bool, newline_first: bool) -> bytes:
    buffer = io.StringIO()
    if newline_first:  # a last line without its line break (edited by hand) stays a row of its own
        buffer.write("\r\n")
    if header:
        csv.writer(buffer).writerow(HEADER)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    csv.writer(buffer, quoting=csv.QUOTE_ALL).writerows([_escape(a), stamp, source] for a in addresses)
    return buffer.getvalue().encode("utf-8")


class UnsubscribedFile:
    """`unsubscribed.csv` with its addresses kept in memory, for a writer that lives long.

    The unsubscribe server answers every one-click POST through one of these: the
    file is read once, and again only when someone else changed it (device, inode,
    size or mtime differ from what this object last saw: the CLI appended, an
    editor replaced it), so a request costs one append and one fsync, not a read
    of the whole file. Safe to share between threads.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._keys: set[str] = set()
        self._seen: tuple[int, int, int, int] | None = None

    def load(self) -> int:
        """Read the file now (an absent one is empty); the number of addresses it holds."""
        with self._lock:
            try:
                fd = _open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                self._keys, self._seen = set(), None
                return 0
            try:
                self._keys, self._seen = _read_keys(fd, self.path), _identity(fd)
            finally:
                os.close(fd)
            return len(self._keys)

    def add(self, addresses: Iterable[str], *, source: str = "cli") -> list[str]:
        """Append the addresses not yet listed; return those that were added.

        Every address is validated before anything is written, so one bad
        address leaves the file untouched. Raises ValueError naming it.
        """
        wanted = [check_address(text.strip())[0] for text in addresses]
        with self._lock:
            fd = _open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
            try:
                with _locked(fd):
                    seen = _identity(fd)
                    if seen != self._seen:  # under the lock: a concurrent writer's rows count
                        self._keys, self._seen = _read_keys(fd, self.path), seen
                    new: list[str] = []
                    keys: set[str] = set()
                    for address in wanted:
                        key = address_key(address)
                        if key not in self._keys and key not in keys:
                            keys.add(key)
                            new.append(address)
                    if new:
                        self._seen = None  # read again next time if this write fails half-way
                        size = seen[2]
                        unfinished = size > 0 and _last_byte(fd, size) not in (b"\n", b"\r")
                        _write_all(fd, _rows(new, source, header=size == 0, newline_first=unfinished))
                        os.fsync(fd)
                        self._keys |= keys  # only now listed: a failed write leaves them to be asked again
                        self._seen = _identity(fd)
            finally:
                os.close(fd)
        return new


def _last_byte(fd: int, size: int) -> bytes:
    os.lseek(fd, size - 1, os.SEEK_SET)  # appends still go to the end (O_APPEND)
    return os.read(fd, 1)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def add_unsubscribed(path: Path, addresses: Iterable[str], *, source: str = "cli") -> list[str]:
    """Append the addresses not yet listed; return those that were added (see `UnsubscribedFile.add`)."""
    return UnsubscribedFile(path).add(addresses, source=source)


# Enhanced status codes (RFC 3463) that are about the recipient's address
# itself: no such mailbox (5.1.1), no such domain (5.1.2), bad syntax (5.1.3),
# moved (5.1.6), null MX (5.1.10), mailbox disabled (5.2.1), or address
# status not further specified (5.1.0).
_DEAD_ADDRESS = frozenset({"5.1.0", "5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.2.1"})
_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


def is_dead_address(code: int | None, reply: str | None) -> bool:
    """Whether a permanent failure says the address is gone, so later campaigns should skip it.

    A 5xx is not always about the address: "554 5.7.1 relay access denied",
    "552 5.3.4 message too big" or "550 5.7.1 spam" would, if taken as
    bounces, suppress a whole list for ever after one misconfigured run. The
    enhanced status code decides when there is one; without it, only the
    basic codes RFC 5321 gives to mailbox problems (550, 551, 553) count.
    """
    if code is None or not 500 <= code < 600:
        return False
    match = _ENHANCED.search(reply or "")
    if match is not None:
        return ".".join(match.groups()) in _DEAD_ADDRESS
    return code in (550, 551, 553)


def read_address_file(path: Path) -> list[str]:
    """Addresses from a text file (one a line) or a CSV whose first column is the address.

    Blank lines, `#` comments and an `email` header are skipped, as in
    `unsubscribed.csv` (whose rows this reads back exactly); a bad address raises
    RecipientsError with its line, so nothing is added from a file with a typo.
    """
    found: list[str] = []
    try:
        with path.open(encoding="utf-8-sig", newline="") as stream:
            reader = csv.reader(stream)
            for row in reader:
                text = _address_text(row[0]) if row else None
                if text is None:
                    continue
                try:
                    found.append(check_address(text)[0])
                except ValueError as exc:
                    raise RecipientsError(str(exc), path=path, line=reader.line_num) from None
    except UnicodeDecodeError:
        raise RecipientsError("not UTF-8 text", path=path) from None
    return found
