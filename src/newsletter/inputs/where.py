"""`--where COLUMN=VALUE`: a subset of the list, chosen by a column, without editing the CSV.

The journal is the campaign's whatever subset a run sends to, so sending to one subset
and then to everyone sends nobody twice. Values compare case-insensitively and without
surrounding spaces, as a spreadsheet user reads them; an empty VALUE means a blank cell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from newsletter.errors import InputError


@dataclass(frozen=True, slots=True)
class Where:
    """One condition on a row: its `column` equals `value` (or, with `negate`, does not)."""

    column: str
    value: str
    negate: bool = False

    def matches(self, fields: Mapping[str, str]) -> bool:
        equal = (fields.get(self.column) or "").strip().casefold() == self.value
        return equal != self.negate

    def __str__(self) -> str:
        return f"{self.column}{'!=' if self.negate else '='}{self.value}"


def parse_where(text: str) -> Where:
    """`COLUMN=VALUE` or `COLUMN!=VALUE`; an InputError for `--where` otherwise."""
    from newsletter.inputs.recipients import column_key

    equals = text.find("=")
    negate = equals > 0 and text[equals - 1] == "!"
    column = column_key(text[: equals - 1 if negate else max(equals, 0)])
    value = text[equals + 1 :]
    if equals < 0 or not column:
        raise InputError(
            f"{text!r} is not COLUMN=VALUE or COLUMN!=VALUE (e.g. --where lang=ru)", field="--where"
        )
    return Where(column, value.strip().casefold(), negate)


def matches_all(conditions: tuple[Where, ...], fields: Mapping[str, str]) -> bool:
    return all(condition.matches(fields) for condition in conditions)
