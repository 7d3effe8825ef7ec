"""The SQLite record of every recipient's state in a campaign: the only place that knows who got it.

States: `sending` (written, durably, before the message data goes to the relay),
then `sent` (only after the relay's 250), `failed` (a 5xx, never retried
automatically), or `deferred` (a 4xx, retried). A row still `sending` when its
process is gone is `unknown`: the message may or may not have been accepted.

Rows are kept per destination kind: deliveries to the outbox folder never count
as sent for the real list.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from newsletter.delivery.states import FAILED, SENDING, SENT, UNKNOWN
from newsletter.delivery.suppression import is_dead_address
from newsletter.errors import EXIT_INPUT, NewsletterError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    campaign    TEXT NOT NULL,
    destination TEXT NOT NULL,
    address     TEXT NOT NULL,          -- case-folded: the identity of a recipient
    email       TEXT NOT NULL,          -- as sent
    line        INTEGER,
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    code        INTEGER,
    reply       TEXT,
    message_id  TEXT,
    first_at    REAL NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (campaign, destination, address)
) WITHOUT ROWID;
-- No index on state: every state change would update it, which cost a third of each
-- commit; the reports that filter by state scan the campaign's rows by the primary key.
DROP INDEX IF EXISTS deliveries_state;
CREATE INDEX IF NOT EXISTS deliveries_address ON deliveries (address, destination);
CREATE TABLE IF NOT EXISTS locks (
    campaign    TEXT NOT NULL,
    destination TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    host        TEXT NOT NULL,
    started_at  REAL NOT NULL,
    PRIMARY KEY (campaign, destination)
);
CREATE TABLE IF NOT EXISTS runs (
    campaign    TEXT NOT NULL,
    destination TEXT NOT NULL,
    started_at  REAL NOT NULL,
    ended_at    REAL,
    sent        INTEGER NOT NULL DEFAULT 0
);
"""


class JournalLocked(NewsletterError):
    """Another live process is sending this campaign."""

    exit_code = EXIT_INPUT

    def __init__(self, pid: int, host: str, started_at: float) -> None:
        self.pid, self.host, self.started_at = pid, host, started_at
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started_at))
        super().__init__(
            f"another `newsletter send` (pid {pid} on {host}, started {when}) is sending this "
            "campaign; wait for it to finish or stop it first"
        )


@dataclass(frozen=True, slots=True)
class Entry:
    """One recipient's row, as `status` reports it."""

    email: str
    line: int | None
    state: str
    attempts: int
    code: int | None
    reply: str | None
    updated_at: float


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


Outcome = tuple[str, str, int | None, str | None]
"""(address, state, reply code, reply text): what `Journal.mark` records."""


class Journal:
    """A journal file, shared by the sending threads of one process (writes are serialized)."""

    def __init__(self, path: Path, campaign: str, destination: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.campaign = campaign
        self.destination = destination
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL with synchronous=NORMAL: a committed row survives a crash of this
        # process (the case that matters: kill, Ctrl-C, OOM); fsync per message would
        # cap the rate at the disk's flush rate for no gain against that case.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._holding_lock = False

    def close(self) -> None:
        with self._lock:
            if self._holding_lock:
                self._release()
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- one sender at a time -------------------------------------------------

    def acquire(self) -> None:
        """Take the campaign's send lock; a lock left by a dead process is taken over."""
        host = socket.gethostname()
        with self._write() as db:
            row = db.execute(
                "SELECT pid, host, started_at FROM locks WHERE campaign=? AND destination=?",
                (self.campaign, self.destination),
            ).fetchone()
            if row is not None:
                pid, lock_host, started = row
                if lock_host != host or (_alive(pid) and pid != os.getpid()):
                    raise JournalLocked(pid, lock_host, started)
            db.execute(
                "INSERT OR REPLACE INTO locks VALUES (?, ?, ?, ?, ?)",
                (self.campaign, self.destination, os.getpid(), host, time.time()),
            )
        self._holding_lock = True

    def _release(self) -> None:
        self._db.execute(
            "DELETE FROM locks WHERE campaign=? AND destination=? AND pid=?",
            (self.campaign, self.destination, os.getpid()),
        )
        self._holding_lock = False

    def recover(self) -> int:
        """Rows left `sending` by a dead run become `unknown`; call with the lock held."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE deliveries SET state=?, reply=coalesce(reply, ?), updated_at=? "
                "WHERE campaign=? AND destination=? AND state=?",
                (UNKNOWN, "interrupted while sending", time.time(), self.campaign, self.destination, SENDING),
            )
            return cursor.rowcount

    def forget(self) -> int:
        """Drop every row of this campaign and destination (used for the outbox only)."""
        with self._write() as db:
            return db.execute(
                "DELETE FROM deliveries WHERE campaign=? AND destination=?", (self.campaign, self.destination)
            ).rowcount

    # -- per-recipient records -------------------------------------------------

    def states(self, addresses: Iterable[str]) -> dict[str, str]:
        """The known state of each of `addresses` (case-folded); missing ones are pending."""
        keys = list(addresses)
        found: dict[str, str] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows = self._db.execute(
                    f"SELECT address, state FROM deliveries WHERE campaign=? AND destination=? "  # noqa: S608
                    f"AND address IN ({marks})",
                    (self.campaign, self.destination, *chunk),
                ).fetchall()
            found.update(rows)
        return found

    def mark_sending(
        self,
        address: str,
        email: str,
        line: int | None,
        message_id: str,
        *,
        finished: Outcome | None = None,
    ) -> None:
        """Durably record that this message is about to be handed to the relay.

        `finished` is the outcome of the connection's previous message, when the sender
        held it back to share this commit: one transaction a message instead of two.
        """
        now = time.time()
        with self._write() as db:
            if finished is not None:
                self._update(db, *finished)
            db.execute(
                "INSERT INTO deliveries (campaign, destination, address, email, line, state, attempts,"
                " message_id, first_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?)"
                " ON CONFLICT (campaign, destination, address) DO UPDATE SET state=excluded.state,"
                " attempts=attempts+1, message_id=excluded.message_id, email=excluded.email,"
                " line=excluded.line, updated_at=excluded.updated_at",
                (self.campaign, self.destination, address, email, line, SENDING, message_id, now, now),
            )

    def mark(self, address: str, state: str, code: int | None = None, reply: str | None = None) -> None:
        """Record the outcome of the transaction `mark_sending` announced."""
        with self._write() as db:
            self._update(db, address, state, code, reply)

    def _update(self, db: sqlite3.Connection, address: str, state: str, code: int | None, reply: str | None) -> None:
        db.execute(
            "UPDATE deliveries SET state=?, code=?, reply=?, updated_at=?"
            " WHERE campaign=? AND destination=? AND address=?",
            (state, code, reply, time.time(), self.campaign, self.destination, address),
        )

    # -- reports -----------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT state, count(*) FROM deliveries WHERE campaign=? AND destination=? GROUP BY state",
                (self.campaign, self.destination),
            ).fetchall()
        return {state: count for state, count in rows}

    def entries(self, states: Iterable[str]) -> list[Entry]:
        wanted = list(states)
        marks = ",".join("?" * len(wanted))
        with self._lock:
            rows = self._db.execute(
                "SELECT email, line, state, attempts, code, reply, updated_at FROM deliveries"  # noqa: S608
                f" WHERE campaign=? AND destination=? AND state IN ({marks}) ORDER BY line",
                (self.campaign, self.destination, *wanted),
            ).fetchall()
        return [Entry(*row) for row in rows]

    def span(self) -> tuple[float, float] | None:
        """First and last time a message of this campaign was handed over."""
        with self._lock:
            row = self._db.execute(
                "SELECT min(first_at), max(updated_at) FROM deliveries WHERE campaign=? AND destination=? AND state=?",
                (self.campaign, self.destination, SENT),
            ).fetchone()
        return (row[0], row[1]) if row and row[0] is not None else None

    def record_run(self, *, started_at: float, elapsed: float, sent: int) -> None:
        """One run's sending phase: when it began, how long it took, how many it handed over."""
        with self._write() as db:
            db.execute(
                "INSERT INTO runs (campaign, destination, started_at, ended_at, sent) VALUES (?, ?, ?, ?, ?)",
                (self.campaign, self.destination, started_at, started_at + elapsed, sent),
            )

    def last_run(self) -> tuple[float, float, int] | None:
        """(started_at, seconds, messages handed over) of the latest recorded run, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT started_at, ended_at, sent FROM runs WHERE campaign=? AND destination=? "
                "AND ended_at IS NOT NULL ORDER BY started_at DESC LIMIT 1",
                (self.campaign, self.destination),
            ).fetchone()
        return (row[0], row[1] - row[0], row[2]) if row else None

    def suppressed_failures(self, addresses: Iterable[str]) -> set[str]:
        """Those of `addresses` whose last result in another campaign of this folder was a 5xx
        saying the address is dead (`is_dead_address`): a relay's "relay access denied" or
        "message too big" must not suppress the list for every later campaign."""
        keys = list(addresses)
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows = self._db.execute(
                    "SELECT address, code, reply FROM deliveries d"  # noqa: S608
                    " WHERE destination=? AND campaign!=? AND state=?"
                    f" AND address IN ({marks}) AND NOT EXISTS (SELECT 1 FROM deliveries e"
                    " WHERE e.address=d.address AND e.destination=d.destination AND e.state=?"
                    " AND e.updated_at > d.updated_at)",
                    (self.destination, self.campaign, FAILED, *chunk, SENT),
                ).fetchall()
            found.update(address for address, code, reply in rows if is_dead_address(code, reply))
        return found
