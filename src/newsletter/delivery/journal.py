"""The SQLite record of every recipient's state in a campaign: the only place that knows who got it.

States: `sending` (written, durably, before the message data goes to the relay),
then `sent` (only after the relay's 250), `failed` (a 5xx, never retried
automatically), or `deferred` (a 4xx, retried). A row still `sending` when its
process is gone is `unknown`: the message may or may not have been accepted.

Rows are kept per destination kind: deliveries to the outbox folder never count
as sent for the real list.

The journal must not vanish or lie under a running send:

- the send lock is an `flock` on the campaign folder itself, besides the row in
  `locks`: deleting `.newsletter/` (a `git clean -fdx`) takes the file and its lock
  row away, but not the folder's lock, so a second sender is still refused;
- before every commit the file at `path` must still be the one this process opened
  (device and inode); if it was deleted or replaced the run stops at once, and on
  close what this process knows is written back (`_rescue`), so nothing is lost;
- every SQLite error becomes a `JournalError` naming the file and what to do.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from newsletter.delivery.states import DEFERRED, FAILED, SENDING, SENT, UNKNOWN
from newsletter.delivery.suppression import is_dead_address
from newsletter.errors import EXIT_FAILED, EXIT_INPUT, InputError, NewsletterError
from newsletter.inputs.safefiles import ensure_output_dir, link_refused

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    campaign    TEXT NOT NULL,
    destination TEXT NOT NULL,
    address     TEXT NOT NULL,          -- address_key(): the identity of a recipient
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

    def __init__(self, pid: int | None, host: str | None, started_at: float | None) -> None:
        self.pid, self.host, self.started_at = pid, host, started_at
        if pid is None or started_at is None:
            who = "another `newsletter send`"
        else:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started_at))
            who = f"another `newsletter send` (pid {pid} on {host}, started {when})"
        super().__init__(f"{who} is sending this campaign; wait for it to finish or stop it first")


class JournalError(NewsletterError):
    """The journal could not be read or written: the run stops, nothing is marked that did not happen."""

    exit_code = EXIT_FAILED

    def __init__(self, path: Path, action: str, reason: str, hint: str | None = None) -> None:
        self.path, self.action, self.reason = path, action, reason
        self.hint = hint or _hint(reason)
        super().__init__(f"{path}: cannot {action} the journal: {reason}; {self.hint}")

    def at_start(self) -> JournalUnavailable:
        """The same failure before anything was sent: a setup problem, exit 2."""
        return JournalUnavailable(self.path, self.action, self.reason, self.hint)


class JournalUnavailable(JournalError):
    """The journal cannot be opened or locked at the start: nothing was sent."""

    exit_code = EXIT_INPUT


class JournalMissing(JournalUnavailable):
    """No journal yet: nothing was ever sent from this folder (or its journal was removed)."""


def _hint(reason: str) -> str:
    text = reason.lower()
    if "full" in text:
        return "free some disk space, then run the same command again"
    if "readonly" in text or "read-only" in text or "permission" in text or "denied" in text:
        return "make the folder and the file writable, then run the same command again"
    return "check the disk and the file, then run the same command again"


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

    def __init__(self, path: Path, campaign: str, destination: str, *, create: bool = True, lock: bool = False) -> None:
        """Open (with `create`, make) the journal at `path`; JournalMissing when there is none.

        `lock` takes the folder's send lock first, before any file is made: a sender that
        is refused must not leave a fresh journal where a running one's was deleted.
        """
        self.path = path
        self.campaign = campaign
        self.destination = destination
        self._lock = threading.Lock()
        self._holding_lock = False
        self._folder_lock: int | None = None
        self._gone: str | None = None
        if path.parent.is_symlink():  # refused even just to read: it is not this folder's state
            raise link_refused(path.parent)
        if lock:
            self._lock_folder()
        try:
            self._open(create)
        except BaseException:
            self._unlock_folder()
            raise

    def _open(self, create: bool) -> None:
        path = self.path
        if not create and not path.exists():
            raise JournalMissing(path, "read", "there is none yet", "no send has run from this folder")
        ensure_output_dir(path.parent)  # SQLite follows links: a planted one is refused first
        try:
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # WAL with synchronous=NORMAL: a committed row survives a crash of this
            # process (kill, Ctrl-C, OOM); an operating-system crash or power cut may lose
            # the last commits (see the README's "If a send is interrupted").
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            stat = os.stat(path)
        except (OSError, sqlite3.Error) as exc:
            raise JournalUnavailable(path, "open", _reason(exc)) from None
        self._identity = (stat.st_dev, stat.st_ino)

    def _unlock_folder(self) -> None:
        if self._folder_lock is not None:
            with contextlib.suppress(OSError):
                os.close(self._folder_lock)
            self._folder_lock = None

    def close(self) -> None:
        """Release the lock and close; never raises (a failure here must not hide the run's outcome)."""
        with self._lock:
            if self._gone is not None:
                self._rescue()
            if self._holding_lock:
                with contextlib.suppress(sqlite3.Error):
                    self._release()
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._unlock_folder()

    def _still_here(self, *, starting: bool) -> None:
        """Notice when the file at `path` is no longer the one this process opened.

        Only a write that starts a message (`starting`) is refused then: the outcome of a
        message already handed over is still recorded, in the file this process holds
        open, and written back with the rest by `_rescue`.
        """
        if self._gone is None:
            try:
                stat = os.stat(self.path)
                if (stat.st_dev, stat.st_ino) != self._identity:
                    self._gone = "was replaced by another file"
            except OSError:
                self._gone = "was deleted"
        if self._gone is not None and starting:
            raise JournalError(
                self.path,
                "write",
                f"it {self._gone} while this send ran",
                "the send stopped at once so that nobody gets the message twice; what this run "
                "recorded is written back when it ends",
            )

    def _rescue(self) -> None:
        """Write what this process knows back to disk after its file was deleted or replaced."""
        target = self.path
        if target.exists():
            target = self.path.with_name(f"{self.path.stem}.rescued-{int(time.time())}{self.path.suffix}")
        with contextlib.suppress(OSError, sqlite3.Error, InputError):
            ensure_output_dir(target.parent)  # never written back through a link planted meanwhile
            copy = sqlite3.connect(target)
            try:
                self._db.backup(copy)
            finally:
                copy.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self, *, starting: bool = False) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._still_here(starting=starting)
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    # SQLite may have rolled back already (a full disk does): keep the first error.
                    if self._db.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise JournalError(self.path, "write", _reason(exc)) from None

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise JournalError(self.path, "read", _reason(exc)) from None

    # -- one sender at a time -------------------------------------------------

    def acquire(self) -> None:
        """Take the campaign's send lock; a lock left by a dead process is taken over."""
        if self._folder_lock is None:
            self._lock_folder()
        host = socket.gethostname()
        try:
            self._take_lock_row(host)
        except JournalError as exc:
            raise exc.at_start() from None
        self._holding_lock = True

    def _take_lock_row(self, host: str) -> None:
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

    def _lock_folder(self) -> None:
        """An flock on the campaign folder (the journal folder's parent): it outlives `.newsletter/`."""
        folder = self.path.parent.parent
        try:
            fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            return  # the lock row below still guards; a folder we cannot open cannot be locked
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalLocked(*self._holder()) from None
        except OSError:  # a file system without flock (some network mounts): the row still guards
            os.close(fd)
            return
        self._folder_lock = fd

    def _holder(self) -> tuple[int | None, str | None, float | None]:
        """Who holds the send lock, as the lock row says (read-only when this journal is not open yet)."""
        opened = getattr(self, "_db", None)
        if opened is None and not self.path.is_file():
            return None, None, None
        try:
            db = opened or sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        except sqlite3.Error:
            return None, None, None
        try:
            row = db.execute(
                "SELECT pid, host, started_at FROM locks WHERE campaign=? AND destination=?",
                (self.campaign, self.destination),
            ).fetchone()
        except sqlite3.Error:
            row = None
        finally:
            if opened is None:
                db.close()
        if row is None:
            return None, None, None
        return int(row[0]), str(row[1]), float(row[2])

    def sender_alive(self) -> bool:
        """Whether a live process holds this campaign's send lock (for `status`)."""
        pid, host, _ = self._holder()
        return pid is not None and host == socket.gethostname() and _alive(pid)

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
            with self._read() as db:
                rows = db.execute(
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
        with self._write(starting=True) as db:
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

    def release(self, address: str, code: int | None, reply: str | None) -> None:
        """Take back a `sending` (or `failed`) mark: the recipient is to be sent again.

        A row this run created goes, so the recipient is pending as if never tried; a row
        with earlier attempts becomes `deferred`, which the next run sends to as well.
        """
        with self._write() as db:
            key = (self.campaign, self.destination, address)
            db.execute("DELETE FROM deliveries WHERE campaign=? AND destination=? AND address=? AND attempts<=1", key)
            self._update(db, address, DEFERRED, code, reply)

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
        with self._read() as db:
            rows = db.execute(
                "SELECT state, count(*) FROM deliveries WHERE campaign=? AND destination=? GROUP BY state",
                (self.campaign, self.destination),
            ).fetchall()
        return {state: count for state, count in rows}

    def entries(self, states: Iterable[str]) -> list[Entry]:
        wanted = list(states)
        marks = ",".join("?" * len(wanted))
        with self._read() as db:
            rows = db.execute(
                "SELECT email, line, state, attempts, code, reply, updated_at FROM deliveries"  # noqa: S608
                f" WHERE campaign=? AND destination=? AND state IN ({marks}) ORDER BY line",
                (self.campaign, self.destination, *wanted),
            ).fetchall()
        return [Entry(*row) for row in rows]

    def span(self) -> tuple[float, float] | None:
        """First and last time a message of this campaign was handed over."""
        with self._read() as db:
            row = db.execute(
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
        with self._read() as db:
            row = db.execute(
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
            with self._read() as db:
                rows = db.execute(
                    "SELECT address, code, reply FROM deliveries d"  # noqa: S608
                    " WHERE destination=? AND campaign!=? AND state=?"
                    f" AND address IN ({marks}) AND NOT EXISTS (SELECT 1 FROM deliveries e"
                    " WHERE e.address=d.address AND e.destination=d.destination AND e.state=?"
                    " AND e.updated_at > d.updated_at)",
                    (self.destination, self.campaign, FAILED, *chunk, SENT),
                ).fetchall()
            found.update(address for address, code, reply in rows if is_dead_address(code, reply))
        return found


def _reason(exc: BaseException) -> str:
    """SQLite's or the system's words for a failure, without Python's class names."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
