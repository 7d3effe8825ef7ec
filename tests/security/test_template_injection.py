"""Template injection and escaping: recipient and front-matter values are data, never code.

Values are printed as text (escaped in HTML, literal in the plain-text part),
templates run in Jinja's immutable sandbox, and templates are read only from the
campaign's own `templates/` folder.
"""

from __future__ import annotations

import csv
import io
from email import message_from_bytes, policy
from email.message import EmailMessage
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.security.conftest import cli, make_campaign

HOSTILE = [
    "{{ 7*7 }}",
    "{% include '/etc/passwd' %}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'><svg/onload=alert(1)>",
    "{{ config }}{{ self }}{{ lipsum.__globals__ }}",
    "<!-- --><style>body{display:none}</style>",
]
SECRET = "TOP-SECRET-FILE-CONTENT-4242"


def _csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


def _messages(folder: Path) -> dict[str, EmailMessage]:
    """Every .eml in the outbox, by recipient address."""
    found = {}
    for path in (folder / "outbox").glob("*.eml"):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        found[message["To"].addresses[0].addr_spec] = message
    return found


def _parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def test_recipient_values_are_text_escaped_in_html_and_never_evaluated(campaign: Path) -> None:
    rows = [["email", "name", "organization"]]
    rows += [[f"r{i}@example.org", value, value] for i, value in enumerate(HOSTILE)]
    (campaign / "recipients.csv").write_text(_csv(rows), encoding="utf-8")

    result = cli(campaign, "send", "--yes")  # no SMTP_HOST: the outbox folder

    assert result.exit_code == 0, result.output
    messages = _messages(campaign)
    assert len(messages) == len(HOSTILE)
    for i, value in enumerate(HOSTILE):
        text, html = _parts(messages[f"r{i}@example.org"])
        assert f"Dear {value}," in text  # the plain-text part shows exactly what the CSV holds
        assert "Dear 49," not in text and "root:" not in text and "<class" not in text
        assert "<script>" not in html and "<svg" not in html and "<img src=x" not in html
        assert "onerror=alert" not in html.replace("onerror=alert(1)&gt;", "")
        assert "root:" not in html and "<class" not in html and "Dear 49," not in html
    _, html = _parts(messages["r3@example.org"])
    assert "Dear &lt;script&gt;alert(1)&lt;/script&gt;," in html
    _, html = _parts(messages["r4@example.org"])
    assert "Dear &#34;&gt;&lt;img src=x onerror=alert(1)&gt;," in html or "Dear \"&gt;&lt;img" in html


def test_front_matter_values_are_data_too(tmp_path: Path) -> None:
    folder = make_campaign(
        tmp_path / "c",
        extra='title = "{{ 7*7 }} <b>bold</b>"\nnote = "{% include \'/etc/passwd\' %}"',
        html="<p>{{ campaign.title }} | {{ campaign.note }}</p>",
        text="{{ campaign.title }} | {{ campaign.note }}\n",
    )
    path = folder / "announcement.md"
    path.write_text(path.read_text(encoding="utf-8").replace('title = "A Book"\n', ""), encoding="utf-8")

    result = cli(folder, "send", "--yes")

    assert result.exit_code == 0, result.output
    text, html = _parts(_messages(folder)["ann@example.org"])
    assert "{{ 7*7 }} <b>bold</b> | {% include '/etc/passwd' %}" in text
    assert "{{ 7*7 }} &lt;b&gt;bold&lt;/b&gt;" in html and "<b>" not in html


def test_raw_html_in_the_markdown_body_stays_text(tmp_path: Path) -> None:
    body = 'Hello <script>alert(1)</script> and <img src="x" onerror="alert(1)">.\n\n<div onclick="x()">div</div>'
    folder = make_campaign(tmp_path / "c", body=body)

    assert cli(folder, "send", "--yes").exit_code == 0

    _, html = _parts(_messages(folder)["ann@example.org"])
    assert "<script>" not in html and "<img" not in html and "<div" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "attribute '__class__' of 'str' object is unsafe"),
        ("{{ recipient.__init__.__globals__ }}", "attribute '__init__' of 'dict' object is unsafe"),
        ("{{ cycler.__init__.__globals__.os }}", "attribute '__init__' of 'type' object is unsafe"),
        ("{{ recipient.update({'email': 'evil@evil.example'}) }}", "attribute 'update' of 'dict' object is unsafe"),
        ("{{ campaign.pop('title') }}", "attribute 'pop' of 'dict' object is unsafe"),
        ("{{ ''.format.__self__ }}", "has no attribute '__self__'"),
    ],
)
def test_sandbox_escapes_fail_preflight_with_file_and_line(tmp_path: Path, template: str, expected: str) -> None:
    folder = make_campaign(tmp_path / "c", html=f"<p>line one</p>\n<p>{template}</p>")

    result = cli(folder, "send", "--yes")

    assert result.exit_code == 2, result.output
    assert "announcement.html:2:" in result.output
    assert expected in result.output
    assert not (folder / "outbox").exists()


@pytest.mark.parametrize(
    "include",
    [
        "{% include '/etc/passwd' %}",
        "{% include '../secret.txt' %}",
        "{% include 'sub/../../secret.txt' %}",
        "{% extends '../secret.txt' %}",
        "{% import '/etc/hostname' as x %}",
    ],
)
def test_templates_load_only_from_the_campaign_templates_folder(tmp_path: Path, include: str) -> None:
    folder = make_campaign(tmp_path / "c", html=f"<p>hi</p>{include}")
    (folder / "secret.txt").write_text(SECRET, encoding="utf-8")

    result = cli(folder, "check")

    assert result.exit_code == 2
    assert "template not found" in result.output
    assert SECRET not in result.output and "root:" not in result.output


@pytest.mark.parametrize(
    ("key", "name"),
    [("html_template", "../secret.txt"), ("html_template", "/etc/passwd"), ("text_template", "a/../../x.txt")],
)
def test_template_names_in_front_matter_must_stay_inside_templates(tmp_path: Path, key: str, name: str) -> None:
    folder = make_campaign(tmp_path / "c", extra=f'{key} = "{name}"')
    (folder / "secret.txt").write_text(SECRET, encoding="utf-8")

    result = cli(folder, "check")

    assert result.exit_code == 2
    assert f"announcement.md:6: '{key}' must name a file inside templates/" in result.output
    assert SECRET not in result.output


def test_a_symbolic_link_out_of_templates_is_refused(tmp_path: Path) -> None:
    folder = make_campaign(tmp_path / "c", html="<style>{% include 'style.css' %}</style><p>hi</p>")
    secret = tmp_path / "id_rsa"
    secret.write_text(SECRET, encoding="utf-8")
    (folder / "templates" / "style.css").symlink_to(secret)

    result = cli(folder, "send", "--yes")

    assert result.exit_code == 2
    assert "style.css leads outside templates/" in result.output
    assert SECRET not in result.output
    assert not (folder / "outbox").exists()


def test_a_symbolic_link_inside_templates_still_works(tmp_path: Path) -> None:
    folder = make_campaign(tmp_path / "c", html="<style>{% include 'style.css' %}</style><p class=x>hi</p>")
    (folder / "templates" / "real.css").write_text(".x { color: red }", encoding="utf-8")
    (folder / "templates" / "style.css").symlink_to(folder / "templates" / "real.css")

    result = cli(folder, "send", "--yes")

    assert result.exit_code == 0, result.output
    _, html = _parts(_messages(folder)["ann@example.org"])
    assert 'style="color:red"' in html


def test_jinja_is_new_enough_for_its_sandbox_fixes() -> None:
    """Jinja 3.1.5 and 3.1.6 fixed sandbox escapes (CVE-2024-56201, CVE-2024-56326, CVE-2025-27516)."""
    installed = tuple(int(part) for part in version("jinja2").split(".")[:3])
    assert installed >= (3, 1, 6)
    pinned = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"jinja2>=3.1.6"' in pinned


@pytest.mark.parametrize(
    "expression",
    [
        "d.name",
        "d.missing is defined",
        "d.items is defined",  # dict's own attribute wins over a key of that name, as in Jinja
        "d.keys()|list|length",
        "d.pop is defined",  # mutating methods stay refused by the immutable sandbox
        "d.__class__ is defined",
        "d.get('name')",
        "(d.update is defined) ~ (d.clear is defined)",
    ],
)
def test_dict_attribute_fast_path_answers_as_jinjas_sandbox(expression: str) -> None:
    """`BudgetedSandbox.getattr` skips an exception for dict fields; its answers must not change."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from newsletter.render.renderer import make_environment

    data = {"d": {"name": "Ann", "items": "a column called items", "pop": "x", "update": "y"}}
    source = "{{ " + expression + " }}"
    ours = make_environment(ROOT / "templates", autoescape=True).from_string(source).render(data)
    theirs = ImmutableSandboxedEnvironment(autoescape=True).from_string(source).render(data)
    assert ours == theirs
