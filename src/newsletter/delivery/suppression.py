"""`unsubscribed.csv` and which failures say an address is dead: who no send may reach.

One address per row under an `email` header, with the time it was added and
where the request came from. The file is appended to, never rewritten, under
an exclusive lock where the OS has one, so the CLI and the unsubscribe server
can write at the same time without losing entries.
"""

from __future__ import annotations

import csv
import os
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from newsletter.errors import RecipientsError
from newsletter.inputs.addresses import check_address

try:
    import fcntl
except ImportError:  # Windows: appends of one short write are still whole lines
    fcntl = None  # type: ignore[assignment]

HEADER = ("email", "added", "source")
# An ASCII address in the form `check_address` gives back (up to case): taken as it
# is. Full validation costs ~90 us a row, seconds for a long file read on every
# send and every one-click request; only rows outside this shape pay for it.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_PLAIN = re.compile(rf"[A-Za-z0-9._%+'-]+@{_LABEL}(?:\.{_LABEL})+")


def read_unsubscribed(path: Path) -> set[str]:
    """Case-folded addresses in the file; an absent file is an empty list."""
    if not path.is_file():
        return set()
    found: set[str] = set()
    with path.open(encoding="utf-8-sig", newline="") as stream:
        for index, row in enumerate(csv.reader(stream), start=1):
            cell = row[0].strip() if row else ""
            # A header row anywhere, not only on line 1: a file concatenated from
            # two exports must not stop every send.
            if not cell or cell.startswith("#") or cell.casefold() == "email":
                continue
            if _PLAIN.fullmatch(cell):
                found.add(cell.casefold())
                continue
            try:
                address, _ = check_address(cell)
            except ValueError as exc:
                raise RecipientsError(str(exc), path=path, line=index) from None
            found.add(address.casefold())
    return found


@contextmanager
def _locked_append(path: Path) -> Iterator[IO[str]]:
    with path.open("a", encoding="utf-8", newline="") as stream:
        if fcntl is not None:
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX)
        try:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        finally:
            if fcntl is not None:
                fcntl.flock(stream.fileno(), fcntl.LOCK_UN)


def add_unsubscribed(path: Path, addresses: Iterable[str], *, source: str = "cli") -> list[str]:
    """Append the addresses not yet listed; return those that were added.

    Every address is validated before anything is written, so one bad
    address leaves the file untouched. Raises ValueError naming it.
    """
    wanted = [check_address(text.strip())[0] for text in addresses]
    with _locked_append(path) as stream:
        known = read_unsubscribed(path)  # under the lock: a concurrent writer's rows count
        new: list[str] = []
        for address in wanted:
            if address.casefold() not in known:
                known.add(address.casefold())
                new.append(address)
        if new:
            writer = csv.writer(stream)
            if stream.tell() == 0:
                writer.writerow(HEADER)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            writer.writerows([address, stamp, source] for address in new)
    return new


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

    Blank lines, `#` comments and an `email` header are skipped; a bad address
    raises RecipientsError with its line, so nothing is added from a file with a typo.
    """
    found: list[str] = []
    try:
        with path.open(encoding="utf-8-sig", newline="") as stream:
            for line, row in enumerate(csv.reader(stream), start=1):
                cell = row[0].strip() if row else ""
                if not cell or cell.startswith("#") or cell.casefold() == "email":
                    continue
                try:
                    found.append(check_address(cell)[0])
                except ValueError as exc:
                    raise RecipientsError(str(exc), path=path, line=line) from None
    except UnicodeDecodeError:
        raise RecipientsError("not UTF-8 text", path=path) from None
    return found
