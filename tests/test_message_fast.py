"""The fast message builder parses to the same message as one built with `EmailMessage`."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parseaddr
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter import project as api
from newsletter.inputs.folder import CampaignFolder
from newsletter.inputs.recipients import Recipient
from newsletter.message.builder import display_name
from newsletter.render.renderer import Rendered
from tests.test_attachments import COVER, plant, png, set_front_matter

SETTINGS = {
    "NEWSLETTER_UNSUBSCRIBE_URL": "https://example.org/unsubscribe?email={email}&token={token}",
    "NEWSLETTER_UNSUBSCRIBE_MAILTO": "unsubscribe@example.org",
    "NEWSLETTER_SECRET": "a secret that is long enough for the check",
}
VARYING = {"date", "message-id", "content-type"}  # content-type: compared by same_part, boundary aside


def parse(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def same_message(fast: bytes, reference: bytes, *, subject: str, to_name: str) -> None:
    """Header names in order, their decoded values, the MIME tree, each leaf's content.

    Subject and the To display name are compared with what went in: the standard
    library's folding can drop a space that falls between two encoded words
    (found by the property test below), so its output is no oracle for them.
    """
    ours, theirs = parse(fast), parse(reference)
    assert [k.lower() for k in ours] == [k.lower() for k in theirs]
    raw_ours, raw_theirs = raw_headers(fast), raw_headers(reference)
    assert strict(raw_ours.get_all("Subject")) == [display_name(subject)]
    phrase = raw_ours["To"].replace("\r\n", "").rpartition(" <")[0]
    shown = strict([phrase])[0] if "=?" in phrase else parseaddr(raw_ours["To"])[0]
    assert shown == display_name(to_name)
    for key in theirs:
        if key.lower() not in VARYING | {"subject", "to"}:
            assert strict(raw_ours.get_all(key)) == strict(raw_theirs.get_all(key)), key
    assert ours["To"].addresses[0].addr_spec == theirs["To"].addresses[0].addr_spec
    assert ours["Message-ID"].startswith("<") and ours["Message-ID"].endswith(">")
    assert ours["Date"].datetime is not None
    same_part(ours, theirs)
    assert all(len(line) <= 998 for line in fast.split(b"\r\n"))
    assert b"\n" not in fast.replace(b"\r\n", b"")  # CRLF only


def raw_headers(data: bytes) -> Message:
    return BytesHeaderParser(policy=compat32).parsebytes(data)


def strict(values: list[str] | None) -> list[str]:
    """Raw header values decoded by the RFC 2047 rules (`email.header`), unfolded.

    policy.default's parser puts a space between adjacent encoded words of a
    display name (for the standard library's own output too), and the two
    builders split long names at different places; RFC 2047 says that white
    space is not part of the text, which is what `decode_header` implements.
    """
    return [str(make_header(decode_header(v.replace("\r\n", "")))) for v in values or []]


def same_part(ours: EmailMessage, theirs: EmailMessage) -> None:
    assert ours.get_content_type() == theirs.get_content_type()
    for name in ("charset", "type", "name", "filename"):
        assert ours.get_param(name) == theirs.get_param(name)
    assert ours.get_content_disposition() == theirs.get_content_disposition()
    assert ours["Content-ID"] == theirs["Content-ID"]
    if theirs.is_multipart():
        mine, other = list(ours.iter_parts()), list(theirs.iter_parts())
        assert len(mine) == len(other)
        for a, b in zip(mine, other, strict=True):
            same_part(a, b)  # type: ignore[arg-type]
    else:
        assert ours.get_content() == theirs.get_content()


def project_for(folder: Path) -> api.Project:
    return api.load_project(folder, environ=SETTINGS)


def test_every_example_recipient(campaign: Path) -> None:
    project = project_for(campaign)
    for recipient in project.recipients.recipients():
        rendered = project.renderer.render(recipient)
        fast = project.builder.build(recipient, rendered)
        reference = project.builder.build_reference(recipient, rendered)
        same_message(fast.data, reference.data, subject=rendered.subject, to_name=recipient.name)
        assert fast.envelope == reference.envelope


def test_with_attachments_and_inline_images(campaign: Path) -> None:
    (campaign / "images").mkdir()
    (campaign / "images" / "cover.png").write_bytes(png())
    (campaign / "book.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 300 + b"\n%%EOF\n")
    set_front_matter(campaign, 'attachments = ["book.pdf"]')
    plant(campaign, COVER)
    project = project_for(campaign)
    recipient = next(project.recipients.recipients())
    rendered = project.renderer.render(recipient)
    fast = project.builder.build(recipient, rendered)
    assert parse(fast.data).get_content_type() == "multipart/mixed"
    reference = project.builder.build_reference(recipient, rendered)
    same_message(fast.data, reference.data, subject=rendered.subject, to_name=recipient.name)


def test_test_sends_redirect_the_same_way(campaign: Path) -> None:
    project = project_for(campaign)
    recipient = next(project.recipients.recipients())
    rendered = project.renderer.render(recipient)
    fast = project.builder.build(recipient, rendered, deliver_to="me@example.com")
    reference = project.builder.build_reference(recipient, rendered, deliver_to="me@example.com")
    same_message(fast.data, reference.data, subject=rendered.subject, to_name="")
    assert fast.envelope.recipient == "me@example.com"


def test_message_ids_are_unique_and_on_the_senders_domain(campaign: Path) -> None:
    project = project_for(campaign)
    recipient = next(project.recipients.recipients())
    rendered = project.renderer.render(recipient)
    ids = {project.builder.build(recipient, rendered).message_id for _ in range(2000)}
    assert len(ids) == 2000
    assert all(i.endswith("@example.org>") for i in ids)


names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)
bodies = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=300)


@pytest.fixture(scope="module")
def example_project(tmp_path_factory: pytest.TempPathFactory) -> api.Project:
    from tests.conftest import ROOT

    folder = tmp_path_factory.mktemp("example")
    for name in ("announcement.md", "templates", "recipients.example.csv"):
        source = ROOT / name
        if source.is_dir():
            import shutil

            shutil.copytree(source, folder / name)
        else:
            (folder / name).write_bytes(source.read_bytes())
    return api.load_project(CampaignFolder(folder, recipients=folder / "recipients.example.csv"), environ=SETTINGS)


@settings(max_examples=150, deadline=None)
@given(name=names, subject=names.filter(lambda s: s.strip()), text=bodies, html=bodies)
def test_random_names_subjects_and_bodies(
    example_project: api.Project, name: str, subject: str, text: str, html: str
) -> None:
    recipient = Recipient(line=2, email="reader@example.org", fields={"email": "reader@example.org", "name": name})
    rendered = Rendered(subject=subject, html=html, text=text, unsubscribe_url=None)
    builder = example_project.builder
    fast, reference = builder.build(recipient, rendered), builder.build_reference(recipient, rendered)
    same_message(fast.data, reference.data, subject=subject, to_name=name)
