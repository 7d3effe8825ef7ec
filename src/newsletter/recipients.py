"""Reading the recipients CSV, streamed, into validated Recipient records.

Every row yields exactly one event: a `Recipient`, an `InvalidRow` or a
`DuplicateRow`, each carrying its line number so problems read
`recipients.csv:17: field 'email': ...`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from email_validator import EmailNotValidError, validate_email

from newsletter.errors import RecipientsError

MAX_COLUMNS = 200
MAX_FIELD_BYTES = 64 * 1024
DELIMITERS = ",;\t|"

csv.field_size_limit(MAX_FIELD_BYTES)


@dataclass(frozen=True, slots=True)
class Recipient:
    """One valid row: the address to send to and every column for the templates."""

    line: int
    email: str
    fields: Mapping[str, str]
    smtputf8: bool = False

    @property
    def key(self) -> str:
        """The identity used for duplicates and the journal: case-insensitive."""
        return self.email.casefold()

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


def column_key(header: str) -> str:
    """Header text to the name templates use: `E-Mail Address` -> `e_mail_address`."""
    return re.sub(r"[^\w]+", "_", header.strip().casefold()).strip("_")


def check_address(text: str) -> tuple[str, bool]:
    """Validate one address (syntax only, no DNS); return it normalized and whether it needs SMTPUTF8."""
    if not text:
        raise ValueError("the address is empty")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise ValueError(f"control character in address {text!r}")
    try:
        valid = validate_email(text, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise ValueError(f"invalid address {text!r}: {exc}") from None
    if valid.ascii_email is not None:
        return valid.ascii_email, False
    return valid.normalized, True


def sniff_delimiter(header_line: str) -> str:
    """The delimiter that splits the header best; commas win ties."""
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


class SeenAddresses:
    """Which addresses were already planned, and on which line.

    Kept behind one class so the representation can shrink for huge lists.
    """

    def __init__(self) -> None:
        self._first: dict[str, int] = {}

    def first_line(self, key: str, line: int) -> int | None:
        """Record `key` at `line`; return the earlier line if it was seen before."""
        earlier = self._first.get(key)
        if earlier is None:
            self._first[key] = line
        return earlier


@dataclass(frozen=True)
class RecipientList:
    """A recipients CSV and how to read it; iterate for the row events, as often as needed."""

    path: Path
    encoding: str = "utf-8"
    delimiter: str | None = None

    def __iter__(self) -> Iterator[Row]:
        with self._open() as stream:
            yield from self._rows(stream)

    def recipients(self) -> Iterator[Recipient]:
        """Only the valid, first-seen rows: what gets sent."""
        for row in self:
            if isinstance(row, Recipient):
                yield row

    def _open(self) -> IO[str]:
        encoding = "utf-8-sig" if self.encoding.replace("_", "-").lower() in ("utf-8", "utf8") else self.encoding
        try:
            stream = self.path.open(encoding=encoding, newline="")
        except FileNotFoundError:
            raise RecipientsError("file not found", path=self.path) from None
        except LookupError:
            raise RecipientsError(f"unknown encoding {self.encoding!r}", path=self.path) from None
        except IsADirectoryError:
            raise RecipientsError("is a folder, not a CSV file", path=self.path) from None
        return stream

    def _decode_error(self, exc: UnicodeDecodeError) -> RecipientsError:
        line = 1
        with self.path.open("rb") as raw:
            for line, data in enumerate(raw, start=1):
                try:
                    data.decode(exc.encoding)
                except UnicodeDecodeError:
                    break
        return RecipientsError(
            f"not valid {self.encoding} text; if the file was saved by a spreadsheet, "
            "try --encoding cp1251 or --encoding latin-1",
            path=self.path,
            line=line,
        )

    def _rows(self, stream: IO[str]) -> Iterator[Row]:
        try:
            yield from self._parse(stream)
        except UnicodeDecodeError as exc:
            raise self._decode_error(exc) from None

    def _parse(self, stream: IO[str]) -> Iterator[Row]:
        first = stream.readline()
        if not first.strip():
            raise RecipientsError("the file is empty; it needs a header row with an 'email' column", path=self.path, line=1)
        delimiter = self.delimiter or sniff_delimiter(first)
        stream.seek(0)
        reader = csv.reader(stream, delimiter=delimiter, strict=False)
        header = self._header(reader)
        email_index = header.index("email")
        seen = SeenAddresses()
        previous_end = reader.line_num
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield InvalidRow(previous_end + 1, None, f"unreadable CSV: {exc}")
                previous_end = reader.line_num
                continue
            line, previous_end = previous_end + 1, reader.line_num
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            yield self._row(line, cells, header, email_index, seen)

    def _header(self, reader: Iterator[list[str]]) -> list[str]:
        try:
            raw = next(reader)
        except csv.Error as exc:
            raise RecipientsError(f"unreadable header row: {exc}", path=self.path, line=1) from None
        if len(raw) > MAX_COLUMNS:
            raise RecipientsError(f"{len(raw)} columns; at most {MAX_COLUMNS} are read", path=self.path, line=1)
        header = [column_key(h) for h in raw]
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
        if len(cells) > len(header):
            return InvalidRow(
                line, None, f"{len(cells)} cells but the header has {len(header)}; is a delimiter unquoted?"
            )
        try:
            email, smtputf8 = check_address(cells[email_index].strip() if email_index < len(cells) else "")
        except ValueError as exc:
            return InvalidRow(line, "email", str(exc))
        first_line = seen.first_line(email.casefold(), line)
        if first_line is not None:
            return DuplicateRow(line, email, first_line)
        fields = dict(zip(header, cells, strict=False))
        for key in header[len(cells) :]:
            fields[key] = ""
        fields["email"] = email
        return Recipient(line=line, email=email, fields=fields, smtputf8=smtputf8)
