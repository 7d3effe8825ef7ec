"""Reading the recipients CSV, streamed, into validated Recipient records.

Every row yields exactly one event: a `Recipient`, an `InvalidRow` or a
`DuplicateRow`, each carrying its line number so problems read
`recipients.csv:17: field 'email': ...`.

The file may come from anywhere, so reading it is bounded: no physical line
longer than `MAX_LINE_BYTES`, no field longer than `MAX_FIELD_BYTES`, no header
wider than `MAX_COLUMNS`. A hostile or broken file (one 2 GB line, a quote that
is never closed) is refused with its line number instead of filling memory.
"""

from __future__ import annotations

import codecs
import csv
import re
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from newsletter.errors import RecipientsError
from newsletter.inputs.addresses import address_key, check_address
from newsletter.inputs.where import Where, matches_all

MAX_COLUMNS = 200
MAX_FIELD_BYTES = 64 * 1024
MAX_LINE_BYTES = 1024 * 1024
DELIMITERS = ",;\t|"

csv.field_size_limit(MAX_FIELD_BYTES)

# C0 controls except tab, LF and CR, plus DEL: never meaningful in a name or an
# organisation, and some (NUL, ESC) upset HTML parsers and terminals downstream.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BOMS = {
    codecs.BOM_UTF8: "UTF-8",
    codecs.BOM_UTF16_LE: "UTF-16",
    codecs.BOM_UTF16_BE: "UTF-16",
}


@dataclass(frozen=True, slots=True)
class Recipient:
    """One valid row: the address to send to and every column for the templates."""

    line: int
    email: str
    fields: Mapping[str, str]
    smtputf8: bool = False
    # The identity used for duplicates, the journal and suppression (`address_key`:
    # case-insensitive, no case-folding collisions). Kept, not a property: the sending
    # process asks for it half a dozen times a recipient.
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", address_key(self.email))

    def __reduce__(self) -> tuple[type[Recipient], tuple[int, str, Mapping[str, str], bool]]:
        # Every recipient travels to a rendering process; a tuple pickles several times
        # faster than a slotted dataclass's field-by-field state.
        return (Recipient, (self.line, self.email, self.fields, self.smtputf8))

    @property
    def name(self) -> str:
        return self.fields.get("name", "")


@dataclass(frozen=True, slots=True)
class InvalidRow:
    """A row that cannot be sent to, with the reason."""

    line: int
    field: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class DuplicateRow:
    """A row whose address appeared on an earlier line; it is sent once, for the first."""

    line: int
    email: str
    first_line: int


Row = Recipient | InvalidRow | DuplicateRow


@dataclass
class RowProblems:
    """The invalid and duplicate rows met while reading a list: the first `keep` of each, and how many."""

    keep: int = 1000
    invalid: list[InvalidRow] = field(default_factory=list)
    invalid_count: int = 0
    duplicates: list[DuplicateRow] = field(default_factory=list)
    duplicate_count: int = 0

    def note(self, row: InvalidRow | DuplicateRow) -> None:
        if isinstance(row, InvalidRow):
            self.invalid_count += 1
            if len(self.invalid) < self.keep:
                self.invalid.append(row)
        else:
            self.duplicate_count += 1
            if len(self.duplicates) < self.keep:
                self.duplicates.append(row)


def column_key(header: str) -> str:
    """Header text to the name templates use: `E-Mail Address` -> `e_mail_address`."""
    return re.sub(r"[^\w]+", "_", header.strip().casefold()).strip("_")


def sniff_delimiter(header_line: str) -> str:
    """The delimiter that splits the header best; commas win ties."""
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


class SeenAddresses:
    """Which addresses were already planned, and on which line.

    A dict of a million addresses costs ~130 MB; the addresses live instead in a
    private temporary SQLite database (unlinked by SQLite, gone when closed) under a
    primary key, so memory stays at SQLite's bounded page cache whatever the list size.
    Keys are the case-folded addresses themselves, not digests: no collision can ever
    merge two recipients.
    """

    CACHE_KIB = 8 * 1024  # SQLite's page cache; beyond it, pages go to the temporary file

    def __init__(self) -> None:
        # "" opens a fresh temporary on-disk database; no journal or fsync: it never outlives us.
        self._db = sqlite3.connect("", check_same_thread=False)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", f"cache_size=-{self.CACHE_KIB}"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE seen (key TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID")

    def first_line(self, key: str, line: int) -> int | None:
        """Record `key` at `line`; return the earlier line if it was seen before."""
        if self._db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?)", (key, line)).rowcount:
            return None
        row = self._db.execute("SELECT line FROM seen WHERE key = ?", (key,)).fetchone()
        return int(row[0])

    def close(self) -> None:
        """Drop the temporary database; further calls raise."""
        self._db.close()

    def __enter__(self) -> SeenAddresses:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class RecipientList:
    """A recipients CSV and how to read it; iterate for the row events, as often as needed."""

    path: Path
    encoding: str = "utf-8"
    delimiter: str | None = None
    where: tuple[Where, ...] = ()  # `--where`: valid rows that fail one are left out, as if not listed

    def __iter__(self) -> Iterator[Row]:
        with self._open() as stream:
            yield from self._rows(stream)

    def recipients(self) -> Iterator[Recipient]:
        """Only the valid, first-seen rows: what gets sent."""
        for row in self:
            if isinstance(row, Recipient):
                yield row

    @property
    def _codec(self) -> str:
        """The Python codec name; LookupError for an unknown encoding."""
        name = codecs.lookup(self.encoding).name
        return "utf-8-sig" if name == "utf-8" else name

    def _open(self) -> IO[str]:
        try:
            encoding = self._codec
            self._check_bom(encoding)
            stream = self.path.open(encoding=encoding, newline="")
        except FileNotFoundError:
            raise RecipientsError("file not found", path=self.path) from None
        except LookupError:
            raise RecipientsError(f"unknown encoding {self.encoding!r}", path=self.path) from None
        except IsADirectoryError:
            raise RecipientsError("is a folder, not a CSV file", path=self.path) from None
        return stream

    def _check_bom(self, encoding: str) -> None:
        """A byte-order mark names the encoding for certain; say so instead of decoding garbage."""
        with self.path.open("rb") as raw:
            start = raw.read(4)
        for bom, name in _BOMS.items():
            if start.startswith(bom) and not encoding.startswith(name.lower()):
                raise RecipientsError(
                    f"the file starts with a {name} byte-order mark, so it is {name} text, "
                    f"not {self.encoding}; use --encoding {name.lower()}",
                    path=self.path,
                    line=1,
                )

    def _decode_error(self) -> RecipientsError:
        """Find the line of the first undecodable byte, reading the file in bounded chunks."""
        decoder = codecs.getincrementaldecoder(self._codec)()
        line, detail = 1, ""
        with self.path.open("rb") as raw:
            while chunk := raw.read(64 * 1024):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    # `exc.object` is what the decoder held: a partial character plus
                    # this chunk; the partial character holds no line break.
                    line += exc.object[: exc.start].count(b"\n")
                    detail = f" (byte 0x{exc.object[exc.start]:02x})"
                    break
                line += chunk.count(b"\n")
        return RecipientsError(
            f"not valid {self.encoding} text{detail}; if the file was saved by a spreadsheet, "
            "try --encoding cp1251 (Cyrillic Windows) or --encoding latin-1",
            path=self.path,
            line=line,
        )

    def _rows(self, stream: IO[str]) -> Iterator[Row]:
        try:
            yield from self._parse(stream)
        except UnicodeDecodeError:
            raise self._decode_error() from None

    def _lines(self, stream: IO[str]) -> Iterator[str]:
        """Physical lines, each at most MAX_LINE_BYTES, or a RecipientsError naming the line.

        `readline(limit)` never holds more than `limit` characters, so a file that is
        one endless line costs a megabyte, not the whole file. Characters are only
        encoded back to count bytes for lines long enough to possibly exceed the
        limit (a character is at most 4 bytes), which keeps the common case free.
        """
        limit = MAX_LINE_BYTES
        codec = self._codec.removesuffix("-sig")
        number = 0
        while line := stream.readline(limit + 1):
            number += 1
            if len(line) > limit // 4 and (
                len(line) > limit or len(line.rstrip("\r\n").encode(codec, "replace")) > limit
            ):
                raise RecipientsError(
                    f"line longer than {limit} bytes; is this really a CSV file?",
                    path=self.path,
                    line=number,
                )
            yield line

    def _parse(self, stream: IO[str]) -> Iterator[Row]:
        lines = self._lines(stream)
        first = next(lines, "")
        if not first.strip():
            raise RecipientsError(
                "the file is empty; it needs a header row with an 'email' column", path=self.path, line=1
            )
        delimiter = self.delimiter or sniff_delimiter(first)
        # strict: a quote still open at the end of the file is an error, not a last row
        # that quietly swallowed every line after it.
        reader = csv.reader(_chain(first, lines), delimiter=delimiter, strict=True)
        header = self._header(reader)
        for condition in self.where:
            if condition.column not in header:
                raise RecipientsError(
                    f"--where {condition}: no column {condition.column!r} (its columns: {', '.join(header)})",
                    path=self.path,
                    line=1,
                )
        email_index = header.index("email")
        with SeenAddresses() as seen:
            previous_end = reader.line_num
            while True:
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    line, previous_end = previous_end + 1, reader.line_num
                    yield InvalidRow(line, None, f"unreadable CSV: {exc}{_swallowed(line, previous_end)}")
                    continue
                line, previous_end = previous_end + 1, reader.line_num
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    continue
                if previous_end > line and _joined_rows(cells, delimiter):
                    reason = f"a quoted field holds what look like rows{_swallowed(line, previous_end)}"
                    yield InvalidRow(line, None, reason)
                    continue
                row = self._row(line, cells, header, email_index, seen)
                if self.where and isinstance(row, Recipient) and not matches_all(self.where, row.fields):
                    continue
                yield row

    def _header(self, reader: Iterator[list[str]]) -> list[str]:
        try:
            raw = next(reader)
        except csv.Error as exc:
            raise RecipientsError(f"unreadable header row: {exc}", path=self.path, line=1) from None
        if len(raw) > MAX_COLUMNS:
            raise RecipientsError(f"{len(raw)} columns; at most {MAX_COLUMNS} are read", path=self.path, line=1)
        header = [column_key(h) for h in raw]
        while len(header) > 1 and not header[-1]:  # "email,name,," as spreadsheets save it
            header.pop()
        for index, key in enumerate(header):
            if not key:
                raise RecipientsError(f"column {index + 1} of the header has no name", path=self.path, line=1)
            if header.index(key) != index:
                raise RecipientsError(
                    f"two columns are named {key!r} (columns {header.index(key) + 1} and {index + 1})",
                    path=self.path,
                    line=1,
                )
        if "email" not in header:
            found = ", ".join(repr(h) for h in raw)
            raise RecipientsError(f"no 'email' column in the header (found {found})", path=self.path, line=1)
        return header

    def _row(
        self, line: int, cells: list[str], header: list[str], email_index: int, seen: SeenAddresses
    ) -> Row:
        while len(cells) > len(header) and not cells[-1].strip():  # trailing empty cells
            cells.pop()
        if len(cells) > len(header):
            return InvalidRow(
                line, None, f"{len(cells)} cells but the header has {len(header)}; is a delimiter unquoted?"
            )
        try:
            email, smtputf8 = check_address(cells[email_index].strip() if email_index < len(cells) else "")
        except ValueError as exc:
            return InvalidRow(line, "email", str(exc))
        first_line = seen.first_line(address_key(email), line)
        if first_line is not None:
            return DuplicateRow(line, email, first_line)
        fields = dict(zip(header, map(_clean, cells), strict=False))
        for key in header[len(cells) :]:
            fields[key] = ""
        fields["email"] = email
        return Recipient(line=line, email=email, fields=fields, smtputf8=smtputf8)


# A line inside a quoted field that reads like a row of its own: a delimiter and an address.
_ROW_LIKE = re.compile(r"[^\s@\"',;|]+@[^\s@\"',;|]+\.[^\s@\"',;|]+")


def _joined_rows(cells: list[str], delimiter: str) -> bool:
    """Whether a record that spans several lines swallowed other rows (an unbalanced quote).

    Called only for multi-line records, which are rare: a quoted address or note
    spans lines legitimately, but one holding `x@example.org,Name` on a line of its
    own is rows that would silently go missing.
    """
    for cell in cells:
        inner = cell.splitlines()[1:]
        if any(delimiter in text and _ROW_LIKE.search(text) for text in inner):
            return True
    return False


def _swallowed(first: int, last: int) -> str:
    if last <= first:
        return ""
    skipped = f"line {last} was" if last == first + 1 else f"lines {first + 1}-{last} were"
    return (
        f" (the record runs from line {first} to {last}: is a quote on line {first} never closed? "
        f"{skipped} not read as rows)"
    )


def _clean(cell: str) -> str:
    """A cell with control characters folded to spaces (rare: search first, copy only then)."""
    return _CONTROLS.sub(" ", cell) if _CONTROLS.search(cell) else cell


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    """The line already read for sniffing, then the others: no seek, so any stream works."""
    yield first
    yield from rest
