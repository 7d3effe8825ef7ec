"""Attachments and inline images, decoded back from the messages a real SMTP server received."""

from __future__ import annotations

import os
import struct
import zlib
from email.message import EmailMessage
from pathlib import Path

import pytest

from newsletter import project as api
from tests.conftest import invoke, write_env
from tests.smtpd import Server, running_server

ANNA = "anna.petrova@academy.example.org"


def png(width: int = 6, height: int = 4, rgb: tuple[int, int, int] = (31, 58, 95)) -> bytes:
    """A real (tiny, one-colour) PNG file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def set_front_matter(folder: Path, line: str) -> None:
    path = folder / "announcement.md"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("+++\n", f"+++\n{line}\n", 1), encoding="utf-8")


def plant(folder: Path, markup: str) -> None:
    """Put `markup` at the top of the HTML template's content block."""
    path = folder / "templates" / "announcement.html"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("{% block content %}", "{% block content %}\n" + markup, 1), encoding="utf-8")


def shape(part: EmailMessage) -> object:
    """The MIME tree as nested (type, [children]) tuples."""
    if part.is_multipart():
        return (part.get_content_type(), [shape(p) for p in part.iter_parts()])  # type: ignore[arg-type]
    return part.get_content_type()


def received(smtp: Server, address: str = ANNA) -> EmailMessage:
    return smtp.recorder.by_recipient()[address][0].message


def write_list(folder: Path, count: int) -> None:
    rows = "".join(f"reader{i:05d}@example.org,Reader {i},\n" for i in range(count))
    (folder / "recipients.csv").write_text("email,name,organization\n" + rows, encoding="utf-8")


# -- attachments ----------------------------------------------------------------------


@pytest.fixture
def book() -> bytes:
    return b"%PDF-1.7\n" + os.urandom(40_000) + b"\n%%EOF\n"


def test_attachments_arrive_byte_for_byte_with_their_types(campaign: Path, smtp: Server, book: bytes) -> None:
    (campaign / "files").mkdir()
    (campaign / "files" / "book.pdf").write_bytes(book)
    epub = os.urandom(5_000)
    (campaign / "Книга.epub").write_bytes(epub)
    set_front_matter(campaign, 'attachments = ["files/book.pdf", "Книга.epub"]')
    write_env(campaign, smtp.env())
    result = invoke("--campaign", str(campaign), "send", "--yes")
    assert result.exit_code == 0, result.output
    assert len(smtp.messages) == 12
    for item in smtp.messages:
        message = item.message
        assert shape(message) == (
            "multipart/mixed",
            [("multipart/alternative", ["text/plain", "text/html"]), "application/pdf", "application/epub+zip"],
        )
        _, pdf, ebook = message.iter_parts()
        assert pdf.get_content_disposition() == "attachment"
        assert pdf.get_filename() == "book.pdf"
        assert pdf.get_content() == book
        assert ebook.get_filename() == "Книга.epub"
        assert ebook.get_content() == epub
        assert message.get_body(("plain",)) is not None  # the alternative is still found as the body


def test_an_attachment_is_read_once_per_campaign_not_per_recipient(campaign: Path, book: bytes) -> None:
    (campaign / "book.pdf").write_bytes(book)
    set_front_matter(campaign, 'attachments = ["book.pdf"]')
    project = api.load_project(campaign, environ={})
    first, second = list(project.recipients.recipients())[:2]
    before = project.message(first)[1].data
    (campaign / "book.pdf").write_bytes(b"changed on disk during the send")
    after = project.message(second)[1].data
    assert b"changed on disk" not in after
    assert before.count(b"application/pdf") == after.count(b"application/pdf") == 1


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('attachments = ["missing.pdf"]', "'missing.pdf': no such file in the campaign folder"),
        ('attachments = ["../outside.txt"]', "'../outside.txt': only files inside the campaign folder can be attached"),
        ('attachments = "book.pdf"', "'attachments' must be a list of file names"),
        ("attachments = [1]", "every entry must be a file name"),
    ],
)
def test_a_bad_attachment_stops_check_naming_the_file(campaign: Path, line: str, reason: str) -> None:
    (campaign.parent / "outside.txt").write_text("not for the list")
    set_front_matter(campaign, line)
    result = invoke("--campaign", str(campaign), "check")
    assert result.exit_code == 2
    assert "announcement.md" in result.output
    assert reason in result.output


# -- inline images --------------------------------------------------------------------

COVER = '<img src="images/cover.png" alt="Cover of the book" width="120">'
LOGO = '<img src="https://example.org/logo.png" alt="Academy logo">'


def test_a_local_image_is_embedded_as_a_related_part_byte_for_byte(campaign: Path, smtp: Server) -> None:
    (campaign / "images").mkdir()
    cover = png()
    (campaign / "images" / "cover.png").write_bytes(cover)
    plant(campaign, COVER + LOGO)
    write_env(campaign, smtp.env())
    assert invoke("--campaign", str(campaign), "send", "--yes").exit_code == 0
    message = received(smtp)
    assert shape(message) == (
        "multipart/alternative",
        ["text/plain", ("multipart/related", ["text/html", "image/png"])],
    )
    assert smtp.recorder.by_recipient()[ANNA][0].data.count(b"MIME-Version:") == 1  # top level only
    _, related = message.iter_parts()
    assert related.get_param("type") == "text/html"  # RFC 2387
    html, image = related.iter_parts()
    cid = image["Content-ID"].strip("<>")
    assert image.get_content() == cover
    assert image.get_content_disposition() == "inline"
    body = html.get_content()
    assert f'src="cid:{cid}"' in body
    assert "images/cover.png" not in body
    assert 'src="https://example.org/logo.png"' in body  # remote images stay remote


def test_images_and_attachments_together_make_mixed_alternative_related(
    campaign: Path, smtp: Server, book: bytes
) -> None:
    (campaign / "images").mkdir()
    (campaign / "images" / "cover.png").write_bytes(png())
    (campaign / "book.pdf").write_bytes(book)
    set_front_matter(campaign, 'attachments = ["book.pdf"]')
    plant(campaign, COVER + COVER.replace("Cover of the book", "Again"))  # twice: one part
    write_env(campaign, smtp.env())
    assert invoke("--campaign", str(campaign), "send", "--yes").exit_code == 0
    assert shape(received(smtp)) == (
        "multipart/mixed",
        [
            ("multipart/alternative", ["text/plain", ("multipart/related", ["text/html", "image/png"])]),
            "application/pdf",
        ],
    )


def test_an_upper_case_img_tag_is_embedded_too(campaign: Path) -> None:
    """Inlining writes tag names in lower case, which `images._sources` relies on; so is a missing file caught."""
    (campaign / "images").mkdir()
    (campaign / "images" / "cover.png").write_bytes(png())
    plant(campaign, '<IMG SRC="images/cover.png" ALT="Cover">')
    project = api.load_project(campaign, environ={})
    _, outgoing = project.message(next(iter(project.recipients.recipients())))
    assert b"cid:img-" in outgoing.data and b"images/cover.png" not in outgoing.data
    plant(campaign, '<Img Src="images/gone.png" alt="x">')
    result = invoke("--campaign", str(campaign), "check")
    assert result.exit_code == 2
    assert "images/gone.png" in result.output and "no such file" in result.output


@pytest.mark.parametrize(
    ("markup", "reason"),
    [
        ('<img src="images/missing.png" alt="x">', 'src="images/missing.png">: no such file in the campaign folder'),
        ('<img src="../../../etc/hostname" alt="x">', "only files inside the campaign folder can be embedded"),
        ('<img src="announcement.md" alt="x">', "not an image"),
    ],
)
def test_a_local_image_that_cannot_be_embedded_stops_check(campaign: Path, markup: str, reason: str) -> None:
    plant(campaign, markup)
    result = invoke("--campaign", str(campaign), "check")
    assert result.exit_code == 2
    assert reason in result.output


def test_preview_and_web_version_carry_the_image_beside_the_html(campaign: Path, tmp_path: Path) -> None:
    (campaign / "images").mkdir()
    cover = png()
    (campaign / "images" / "cover.png").write_bytes(cover)
    plant(campaign, COVER)
    out = tmp_path / "site"
    result = invoke("--campaign", str(campaign), "preview", "--out", str(out), "--web-version")
    assert result.exit_code == 0, result.output
    assert (out / "images" / "cover.png").read_bytes() == cover
    assert 'src="images/cover.png"' in (out / "index.html").read_text(encoding="utf-8")
    eml = next(out.glob("*.eml")).read_bytes()
    assert b"cid:img-" in eml  # the message itself embeds it


# -- what check says about size --------------------------------------------------------


def test_check_warns_about_attachment_traffic_for_a_large_list(campaign: Path) -> None:
    (campaign / "book.pdf").write_bytes(os.urandom(2 * 1024 * 1024))
    set_front_matter(campaign, 'attachments = ["book.pdf"]')
    write_list(campaign, 600)
    result = invoke("--campaign", str(campaign), "check")
    assert result.exit_code == 0, result.output
    assert (
        "warning: attachments (book.pdf): 2.0 MiB × 600 recipients = 1.2 GiB through your relay "
        "(1.6 GiB once encoded); consider a download link instead"
    ) in result.output


def test_check_warns_about_a_message_too_large_for_most_relays(campaign: Path) -> None:
    (campaign / "book.pdf").write_bytes(os.urandom(11 * 1024 * 1024))
    set_front_matter(campaign, 'attachments = ["book.pdf"]')
    result = invoke("--campaign", str(campaign), "check")
    assert result.exit_code == 0, result.output
    assert "warning: the largest message is 15.1 MiB: many relays refuse messages over 10 MiB" in result.output
    assert "info: attachments (book.pdf): 11.0 MiB × 12 recipients = 132.0 MiB" in result.output


def test_check_smtp_compares_the_message_with_the_relays_size(campaign: Path) -> None:
    (campaign / "book.pdf").write_bytes(os.urandom(60_000))
    set_front_matter(campaign, 'attachments = ["book.pdf"]')
    with running_server(data_size_limit=50_000) as small:
        write_env(campaign, small.env())
        result = invoke("--campaign", str(campaign), "check", "--smtp")
        assert small.messages == []  # asking sends nothing
    assert result.exit_code == 2
    assert "error: the largest message is" in result.output
    assert "the relay accepts at most 48.8 KiB (50,000 bytes, its SIZE)" in result.output
    with running_server() as roomy:
        write_env(campaign, roomy.env())
        result = invoke("--campaign", str(campaign), "check", "--smtp")
    assert result.exit_code == 0, result.output
    assert "relay accepts" in result.output


def test_a_symlink_out_of_the_campaign_folder_is_not_attached(campaign: Path, tmp_path: Path) -> None:
    secret = tmp_path / "id_ed25519"
    secret.write_text("PRIVATE KEY")
    (campaign / "book.pdf").symlink_to(secret)
    set_front_matter(campaign, 'attachments = ["book.pdf"]')
    result = invoke("--campaign", str(campaign), "send")
    assert result.exit_code == 2
    assert "only files inside the campaign folder can be attached" in result.output
    assert not (campaign / "outbox").exists()
