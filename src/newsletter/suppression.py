"""`unsubscribed.csv`: the addresses that asked not to get mail from this campaign folder.

One address per row under an `email` header, with the time it was added. The
file is appended to, never rewritten, so concurrent writers cannot lose entries.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Iterable
from pathlib import Path

from newsletter.errors import RecipientsError
from newsletter.recipients import check_address

UNSUBSCRIBED = "unsubscribed.csv"


def read_unsubscribed(path: Path) -> set[str]:
    """Case-folded addresses in the file; an absent file is an empty list."""
    if not path.is_file():
        return set()
    found: set[str] = set()
    with path.open(encoding="utf-8-sig", newline="") as stream:
        for index, row in enumerate(csv.reader(stream), start=1):
            if not row or not row[0].strip() or (index == 1 and row[0].strip().lower() == "email"):
                continue
            try:
                address, _ = check_address(row[0].strip())
            except ValueError as exc:
                raise RecipientsError(str(exc), path=path, line=index) from None
            found.add(address.casefold())
    return found


def add_unsubscribed(path: Path, addresses: Iterable[str], *, source: str = "cli") -> list[str]:
    """Append the addresses not yet listed; return those that were added."""
    known = read_unsubscribed(path)
    new: list[str] = []
    for text in addresses:
        address, _ = check_address(text.strip())
        if address.casefold() not in known:
            known.add(address.casefold())
            new.append(address)
    if not new:
        return new
    fresh = not path.is_file() or path.stat().st_size == 0
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with path.open("a", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        if fresh:
            writer.writerow(["email", "added", "source"])
        writer.writerows([address, stamp, source] for address in new)
        stream.flush()
        os.fsync(stream.fileno())
    return new
