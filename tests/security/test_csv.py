"""The recipients CSV, all the ways it goes wrong: encodings, delimiters, quoting, sizes,
international addresses, and property-based lists that must be planned exactly right.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.errors import RecipientsError
from newsletter.inputs.recipients import (
    MAX_FIELD_BYTES,
    MAX_LINE_BYTES,
    DuplicateRow,
    InvalidRow,
    Recipient,
    RecipientList,
    Row,
    check_address,
)
from tests.conftest import write_env
from tests.security.conftest import cli, make_campaign, serve


def _read(path: Path, **options: str) -> list[Row]:
    return list(RecipientList(path, **options))


def _write(tmp_path: Path, data: bytes | str, name: str = "list.csv") -> Path:
    path = tmp_path / name
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8", newline="")
    else:
        path.write_bytes(data)
    return path


def _summary(rows: list[Row]) -> list[tuple[str, int, str]]:
    """Rows as (kind, line, address or reason) for compact comparisons."""
    out = []
    for row in rows:
        if isinstance(row, Recipient):
            out.append(("ok", row.line, row.email))
        elif isinstance(row, DuplicateRow):
            out.append(("dup", row.line, row.email))
        else:
            out.append(("bad", row.line, row.reason))
    return out


# -- encodings and byte-order marks ---------------------------------------------------------


def test_utf8_bom_is_read_as_utf8(tmp_path: Path) -> None:
    path = _write(tmp_path, "\ufeffemail,name\nann@example.org,Анна\n".encode())
    rows = _read(path)
    assert isinstance(rows[0], Recipient) and rows[0].fields["name"] == "Анна"


def test_cp1251_file_gives_a_clear_error_then_reads_with_the_encoding(tmp_path: Path) -> None:
    data = "email,name\nann@example.org,Ann\nanna@example.org,Анна Петрова\n".encode("cp1251")
    path = _write(tmp_path, data)

    with pytest.raises(RecipientsError) as caught:
        _read(path)

    assert str(caught.value).startswith("list.csv:3: not valid utf-8 text (byte 0xc0)")
    assert "--encoding cp1251" in str(caught.value) and "--encoding latin-1" in str(caught.value)
    rows = _read(path, encoding="cp1251")
    assert [r.fields["name"] for r in rows if isinstance(r, Recipient)] == ["Ann", "Анна Петрова"]


def test_latin1_file_reads_with_the_encoding(tmp_path: Path) -> None:
    path = _write(tmp_path, "email,name\nmc@example.org,Marie-Claire Lefèvre\n".encode("latin-1"))
    with pytest.raises(RecipientsError, match=r"list.csv:2: not valid utf-8"):
        _read(path)
    assert [r.fields["name"] for r in _read(path, encoding="latin-1") if isinstance(r, Recipient)] == [
        "Marie-Claire Lefèvre"
    ]


def test_undecodable_byte_far_down_a_big_file_names_its_line(tmp_path: Path) -> None:
    rows = b"".join(b"u%d@example.org,%s\n" % (i, b"N" * 200) for i in range(3000))  # past the 64 KB chunks
    path = _write(tmp_path, b"email,name\n" + rows + b"x@example.org,\xff\n")
    with pytest.raises(RecipientsError, match=r"list.csv:3002: not valid utf-8 text \(byte 0xff\)"):
        _read(path)


@pytest.mark.parametrize(
    ("data", "encoding", "message"),
    [
        ("\ufeffemail\nann@example.org\n".encode(), "cp1251", "UTF-8 byte-order mark.*--encoding utf-8"),
        ("email\nann@example.org\n".encode("utf-16"), "utf-8", "UTF-16 byte-order mark.*--encoding utf-16"),
    ],
)
def test_a_byte_order_mark_that_contradicts_the_encoding_says_so(
    tmp_path: Path, data: bytes, encoding: str, message: str
) -> None:
    with pytest.raises(RecipientsError, match=message):
        _read(_write(tmp_path, data), encoding=encoding)


def test_utf16_as_excel_saves_unicode_text(tmp_path: Path) -> None:
    path = _write(tmp_path, "email\tname\r\nann@example.org\tАнна\r\n".encode("utf-16"))
    assert _summary(_read(path, encoding="utf-16")) == [("ok", 2, "ann@example.org")]


def test_unknown_encoding_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RecipientsError, match="unknown encoding 'klingon'"):
        _read(_write(tmp_path, "email\na@example.org\n"), encoding="klingon")


def test_cli_suggests_the_encoding_and_accepts_it(tmp_path: Path) -> None:
    folder = make_campaign(tmp_path / "c")
    (folder / "recipients.csv").write_bytes("email,name\nanna@example.org,Анна\n".encode("cp1251"))

    refused = cli(folder, "check")
    accepted = cli(folder, "--encoding", "cp1251", "check")

    assert refused.exit_code == 2 and "--encoding cp1251" in refused.output
    assert "Traceback" not in refused.output
    assert accepted.exit_code == 0, accepted.output
    assert "1 valid" in accepted.output


# -- line endings, delimiters, quoting ----------------------------------------------------------


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_line_endings(tmp_path: Path, ending: str) -> None:
    lines = ["email,name", "ann@example.org,Ann", 'bob@example.org,"Bob\nthe builder"', "cy@example.org,Cy", ""]
    rows = _read(_write(tmp_path, ending.join(lines)))
    assert _summary(rows) == [("ok", 2, "ann@example.org"), ("ok", 3, "bob@example.org"), ("ok", 5, "cy@example.org")]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiters_are_sniffed_from_the_header(tmp_path: Path, delimiter: str) -> None:
    text = f"email{delimiter}name{delimiter}organization\nann@example.org{delimiter}Ann{delimiter}A, B; C\n"
    if delimiter in ",;":
        text = text.replace("A, B; C", '"A, B; C"')
    rows = _read(_write(tmp_path, text))
    assert isinstance(rows[0], Recipient) and rows[0].fields["organization"] == "A, B; C"


def test_delimiter_option_overrides_the_sniffer(tmp_path: Path) -> None:
    folder = make_campaign(tmp_path / "c", csv="email;name;org,dept,unit\nann@example.org;Ann;x\n")
    sniffed = cli(folder, "check")
    told = cli(folder, "--delimiter", ";", "check")
    tab = make_campaign(tmp_path / "t", csv="email\tname\nann@example.org\tAnn\n")

    assert sniffed.exit_code == 2 and "no 'email' column" in sniffed.output
    assert told.exit_code == 0, told.output
    assert cli(tab, "--delimiter", "tab", "check").exit_code == 0


def test_quoted_fields_with_newlines_keep_line_numbers_right(tmp_path: Path) -> None:
    text = 'email,name,organization\nann@example.org,Ann,"Dept of Law\nRoom 5\nMoscow"\nbob@,Bob,x\n'
    rows = _read(_write(tmp_path, text))
    assert _summary(rows)[0] == ("ok", 2, "ann@example.org")
    assert isinstance(rows[0], Recipient) and rows[0].fields["organization"] == "Dept of Law\nRoom 5\nMoscow"
    assert isinstance(rows[1], InvalidRow) and rows[1].line == 5


def test_a_quote_never_closed_reports_the_lines_it_swallowed(tmp_path: Path) -> None:
    text = 'email,name\nann@example.org,"Ann\nbob@example.org,Bob\ncy@example.org,Cy\n'
    rows = _read(_write(tmp_path, text))
    assert len(rows) == 1 and isinstance(rows[0], InvalidRow) and rows[0].line == 2
    assert "never closed" in rows[0].reason and "lines 3-4 were not read as rows" in rows[0].reason


def test_two_stray_quotes_do_not_silently_join_rows(tmp_path: Path) -> None:
    text = 'email,name\nann@example.org,"Ann\nbob@example.org,Bob\ncy@example.org,Cy"\ndee@example.org,Dee\n'
    rows = _read(_write(tmp_path, text))
    assert _summary(rows)[1] == ("ok", 5, "dee@example.org")
    assert isinstance(rows[0], InvalidRow) and "lines 3-4 were not read as rows" in rows[0].reason


def test_ragged_rows(tmp_path: Path) -> None:
    text = "email,name,organization,,\nann@example.org\nbob@example.org,Bob,Org,,,\ncy@example.org,Cy,Org,extra\n"
    rows = _read(_write(tmp_path, text))
    assert isinstance(rows[0], Recipient)
    assert rows[0].fields == {"email": "ann@example.org", "name": "", "organization": ""}
    assert isinstance(rows[1], Recipient)  # trailing empty cells, as spreadsheets save them
    assert isinstance(rows[2], InvalidRow) and rows[2].line == 4 and "delimiter unquoted" in rows[2].reason


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "list.csv:1: the file is empty"),
        ("\n\n   \n", "list.csv:1: the file is empty"),
        ("name,organization\nAnn,Org\n", "no 'email' column in the header (found 'name', 'organization')"),
        ("email,name,Name\na@example.org,A,B\n", "two columns are named 'name' (columns 2 and 3)"),
        ("Email,E-Mail,email\na@example.org,b,c\n", "two columns are named 'email'"),
        ("email,,name\na@example.org,,A\n", "column 2 of the header has no name"),
        ('email,"unclosed\n', "unreadable header row"),
    ],
)
def test_unusable_files_are_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(RecipientsError, match=re.escape(message)):
        _read(_write(tmp_path, text))


def test_header_only_sends_nothing_and_says_so(tmp_path: Path) -> None:
    folder = make_campaign(tmp_path / "c", csv="email,name\n")
    checked = cli(folder, "check")
    sent = cli(folder, "send", "--yes")
    assert "0 valid, 0 invalid" in checked.output
    assert sent.exit_code in (0, 2) and "Traceback" not in sent.output
    assert not list((folder / "outbox").glob("*.eml")) if (folder / "outbox").exists() else True


def test_control_characters_in_fields_are_folded_and_in_addresses_refused(tmp_path: Path) -> None:
    text = "email,name,organization\nann@example.org,A\x00nn,Org\x1b[31m\x07\nb\x00b@example.org,Bob,x\n"
    rows = _read(_write(tmp_path, text))
    assert isinstance(rows[0], Recipient)
    assert rows[0].fields["name"] == "A nn" and rows[0].fields["organization"] == "Org [31m "
    assert isinstance(rows[1], InvalidRow) and rows[1].field == "email" and "control character" in rows[1].reason


# -- sizes ------------------------------------------------------------------------------------------


MEASURE = """
import resource, sys
from pathlib import Path
from newsletter.inputs.recipients import Recipient, RecipientList
scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
count = sum(1 for row in RecipientList(Path(sys.argv[1])) if isinstance(row, Recipient))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
print(count, after - before)
"""


def test_fifty_megabytes_of_rows_stream_in_bounded_memory(tmp_path: Path) -> None:
    """Read in a fresh process, so its peak memory is this file's alone."""
    pytest.importorskip("resource")
    path = tmp_path / "big.csv"
    note = b"n" * 10_000
    with path.open("wb") as stream:
        stream.write(b"email,name,notes\n")
        stream.writelines(b"user%d@example.org,Name %d,%s\n" % (i, i, note) for i in range(5000))
    assert path.stat().st_size > 50_000_000

    started = time.monotonic()
    process = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, check=True, timeout=120
    )
    count, grew = map(int, process.stdout.split())

    assert count == 5000
    assert grew < 20_000_000, f"reading a 50 MB file grew the process by {grew:,} bytes"
    assert time.monotonic() - started < 30


def test_a_fifty_megabyte_line_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "oneline.csv"
    with path.open("wb") as stream:
        stream.write(b"email,name\nann@example.org,Ann\n")
        for _ in range(50):
            stream.write(b"x" * 1_000_000)

    tracemalloc.start()
    try:
        with pytest.raises(RecipientsError) as caught:
            list(RecipientList(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert str(caught.value) == f"oneline.csv:3: line longer than {MAX_LINE_BYTES} bytes; is this really a CSV file?"
    assert peak < 8 * MAX_LINE_BYTES


def test_a_header_that_is_one_huge_line_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, b"email" + b",x" * MAX_LINE_BYTES)
    with pytest.raises(RecipientsError, match=r"list.csv:1: line longer than"):
        _read(path)


def test_the_line_limit_counts_bytes_not_characters(tmp_path: Path) -> None:
    cyrillic = "ж" * (MAX_LINE_BYTES // 2 + 10)  # fewer characters than the limit, more bytes
    path = _write(tmp_path, f"email,name\nann@example.org,{cyrillic}\n")
    with pytest.raises(RecipientsError, match=r"list.csv:2: line longer than"):
        _read(path)
    fits = "ж" * (MAX_FIELD_BYTES // 4)
    assert isinstance(_read(_write(tmp_path, f"email,name\nann@example.org,{fits}\n", "ok.csv"))[0], Recipient)


def test_an_oversized_field_is_an_invalid_row_and_the_rest_is_read(tmp_path: Path) -> None:
    text = f"email,name\nann@example.org,{'x' * (MAX_FIELD_BYTES + 1)}\nbob@example.org,Bob\n"
    rows = _read(_write(tmp_path, text))
    assert isinstance(rows[0], InvalidRow) and rows[0].line == 2 and "field larger than field limit" in rows[0].reason
    assert _summary(rows)[1] == ("ok", 3, "bob@example.org")


# -- international addresses -------------------------------------------------------------------------


def test_idn_domains_are_sent_as_punycode(tmp_path: Path) -> None:
    folder = make_campaign(tmp_path / "c", csv="email,name\nuser@пример.рф,Юзер\nUSER@ПРИМЕР.РФ,dup\n")
    with serve() as server:
        write_env(folder, {"SMTP_HOST": server.host, "SMTP_PORT": str(server.port), "SMTP_SECURITY": "none"})
        result = cli(folder, "send", "--yes")
    assert result.exit_code == 0, result.output
    assert [m.rcpt_tos for m in server.messages] == [["user@xn--e1afmkfd.xn--p1ai"]]
    assert server.messages[0].data.isascii()


def _utf8_campaign(tmp_path: Path) -> Path:
    return make_campaign(tmp_path / "c", csv="email,name\nann@example.org,Ann\nиван@пример.рф,Иван\n")


def test_non_ascii_local_parts_are_refused_up_front_without_smtputf8(tmp_path: Path) -> None:
    folder = _utf8_campaign(tmp_path)
    with serve(smtputf8=False) as server:
        write_env(folder, {"SMTP_HOST": server.host, "SMTP_PORT": str(server.port), "SMTP_SECURITY": "none"})
        result = cli(folder, "send", "--yes")
        status = cli(folder, "status")
    assert result.exit_code == 2
    assert "иван@пример.рф" in result.output and "SMTPUTF8" in result.output and "nothing was sent" in result.output
    assert server.messages == [] and server.recorder.mail_commands == 0
    # Nobody was marked: fix the list or the relay, run again, and everyone is still pending.
    assert re.search(r"sent\s*│\s*0", status.output) and re.search(r"failed\s*│\s*0", status.output)


def test_non_ascii_local_parts_go_out_with_smtputf8_when_offered(tmp_path: Path) -> None:
    folder = _utf8_campaign(tmp_path)
    with serve(smtputf8=True) as server:
        write_env(folder, {"SMTP_HOST": server.host, "SMTP_PORT": str(server.port), "SMTP_SECURITY": "none"})
        result = cli(folder, "send", "--yes")
    assert result.exit_code == 0, result.output
    assert sorted(server.recorder.by_recipient()) == ["ann@example.org", "иван@пример.рф"]


# -- property-based: generated lists are planned exactly right --------------------------------------

DOMAINS = {"example.org": "example.org", "Example.ORG": "example.org", "пример.рф": "xn--e1afmkfd.xn--p1ai"}
INVALID = [
    "",
    "bob@",
    "@example.org",
    "a b@example.org",
    "bob@@example.org",
    "bob@example..org",
    "bob",
    "bob@localhost",
    "x\r\n@example.org",
    "a@example.org\x00",
    "=?utf-8?q?x?=@example.org",
    "<bob@example.org>",
    "bob@example.org, eve@example.org",
]


def test_the_invalid_samples_are_invalid() -> None:
    for text in INVALID:
        with pytest.raises(ValueError, match=r"address|control character"):
            check_address(text.strip())


@dataclass(frozen=True)
class Spec:
    """One generated data row: a valid address (local part, domain key) or an invalid string."""

    local: str | None
    domain: str | None
    invalid: str | None
    name: str
    blank_before: bool


LOCALS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789", min_size=1, max_size=6)
NAMES = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="@"), max_size=12)


@st.composite
def specs(draw: st.DrawFn) -> list[Spec]:
    count = draw(st.integers(min_value=0, max_value=25))
    pool: list[tuple[str, str]] = []
    rows = []
    for _ in range(count):
        kind = draw(st.sampled_from(["new", "new", "repeat", "invalid"]))
        name, blank = draw(NAMES), draw(st.booleans())
        if kind == "invalid":
            rows.append(Spec(None, None, draw(st.sampled_from(INVALID)), name, blank))
            continue
        if kind == "repeat" and pool:
            local, domain = draw(st.sampled_from(pool))
            local = draw(st.sampled_from([local, local.upper(), local.lower()]))
        else:
            local, domain = draw(LOCALS), draw(st.sampled_from(sorted(DOMAINS)))
            pool.append((local, domain))
        rows.append(Spec(local, domain, None, name, blank))
    return rows


def _render(
    rows: list[Spec], *, delimiter: str, ending: str, header: str, bom: bool, pad: bool
) -> tuple[str, list[int]]:
    """The CSV text and each data row's first physical line, counted the way readers count."""
    out = io.StringIO()
    out.write(("\ufeff" if bom else "") + f"{header}{delimiter}name{ending}")
    line, starts = 2, []
    for spec in rows:
        if spec.blank_before:
            out.write(ending)
            line += 1
        address = spec.invalid if spec.invalid is not None else f"{spec.local}@{spec.domain}"
        if pad and spec.invalid is None:
            address = f" {address} "
        record = io.StringIO()
        # Python 3.11's writer leaves a lone CR unquoted when the line ending is LF
        # (it only quotes the terminator's own characters); spreadsheets quote it.
        quoting: Literal[0, 1] = csv.QUOTE_ALL if re.search(r"[\r\n]", spec.name + address) else csv.QUOTE_MINIMAL
        csv.writer(record, delimiter=delimiter, lineterminator=ending, quoting=quoting).writerow([address, spec.name])
        text = record.getvalue()
        starts.append(line)
        line += len(re.findall(r"\r\n|\r|\n", text))
        out.write(text)
    return out.getvalue(), starts


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=specs(),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    ending=st.sampled_from(["\n", "\r\n"]),
    header=st.sampled_from(["email", "Email", " EMAIL "]),
    bom=st.booleans(),
    pad=st.booleans(),
    told=st.booleans(),
)
def test_every_valid_unique_address_is_planned_exactly_once(
    tmp_path: Path, rows: list[Spec], delimiter: str, ending: str, header: str, bom: bool, pad: bool, told: bool
) -> None:
    text, starts = _render(rows, delimiter=delimiter, ending=ending, header=header, bom=bom, pad=pad)
    path = tmp_path / "generated.csv"
    path.write_text(text, encoding="utf-8", newline="")

    events = list(RecipientList(path, delimiter=delimiter if told else None))

    expected: list[tuple[str, int, str]] = []
    first: dict[str, int] = {}
    for spec, line in zip(rows, starts, strict=True):
        if spec.invalid is not None:
            expected.append(("bad", line, ""))
            continue
        assert spec.local is not None and spec.domain is not None
        email = f"{spec.local}@{DOMAINS[spec.domain]}"
        key = email.casefold()
        if key in first:
            expected.append(("dup", line, email))
        else:
            first[key] = line
            expected.append(("ok", line, email))
    got = [(kind, line, "" if kind == "bad" else email) for kind, line, email in _summary(events)]
    assert got == expected
    planned = [row.email.casefold() for row in events if isinstance(row, Recipient)]
    assert sorted(planned) == sorted(first)  # each valid unique address once, and only those
    for event, spec in zip(events, rows, strict=True):
        if isinstance(event, Recipient):
            assert event.fields["name"] == re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", " ", spec.name)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.one_of(
        st.binary(max_size=400),
        st.builds(lambda body: b"email,name\n" + body, st.binary(max_size=400)),
        st.builds(
            lambda body: ("email;name\r\n" + body).encode("utf-8", "surrogatepass"),
            st.text(alphabet=st.sampled_from(list('a@b.,;"\r\n\t x\x00é')), max_size=200),
        ),
    ),
    encoding=st.sampled_from(["utf-8", "cp1251", "latin-1"]),
)
def test_any_bytes_give_rows_or_one_clear_error_never_a_crash(tmp_path: Path, data: bytes, encoding: str) -> None:
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    try:
        events = list(RecipientList(path, encoding=encoding))
    except RecipientsError as exc:
        error = str(exc)
        events = []
    else:
        error = "fuzz.csv"
    assert error.startswith("fuzz.csv")
    lines = [event.line for event in events]
    assert lines == sorted(set(lines)) and all(line >= 2 for line in lines)
    for event in events:
        if isinstance(event, Recipient):
            assert check_address(event.email)[0] == event.email


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.text(st.characters(blacklist_categories=["Cs"]), max_size=300))
def test_check_on_any_list_exits_0_or_2_with_no_traceback(tmp_path: Path, body: str) -> None:
    folder = make_campaign(tmp_path / "fuzz", csv="email,name\n" + body)
    result = cli(folder, "check")  # exceptions propagate out of the runner and fail the test
    assert result.exit_code in (0, 2)
    assert "Traceback" not in result.output
