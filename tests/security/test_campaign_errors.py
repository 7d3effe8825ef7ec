"""Front matter and templates gone wrong: one clear message with file and line, exit 2,
nothing sent (a real SMTP server stands by and must receive nothing).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.inputs.campaign import load_campaign, unused_fields
from newsletter.render import sandbox
from tests.conftest import write_env
from tests.security.conftest import CountingServer, cli, make_campaign, serve


@pytest.fixture
def server() -> Iterator[CountingServer]:
    with serve() as running:
        yield running


def _refused(folder: Path, server: CountingServer, *expected: str) -> str:
    """`check` and `send` both stop with exit 2, the same message, and nothing reaches the server."""
    write_env(folder, {"SMTP_HOST": server.host, "SMTP_PORT": str(server.port), "SMTP_SECURITY": "none"})
    checked = cli(folder, "check")
    sent = cli(folder, "send", "--yes")
    for result in (checked, sent):
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        for text in expected:
            assert text in result.output, result.output
    assert server.recorder.mail_commands == 0 and server.messages == []
    return sent.output


# -- front matter --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('title = "unclosed', "announcement.md:6: invalid TOML front matter"),
        ("title = ", "announcement.md:6: invalid TOML front matter"),
        ('author = "A"\nauthor = "B"', "announcement.md:7: invalid TOML front matter"),
        ("[table\nx = 1", "announcement.md:6: invalid TOML front matter"),
    ],
)
def test_invalid_toml_names_the_line(tmp_path: Path, server: CountingServer, extra: str, expected: str) -> None:
    _refused(make_campaign(tmp_path / "c", extra=extra), server, expected)


def test_front_matter_never_opened_or_never_closed(tmp_path: Path, server: CountingServer) -> None:
    folder = make_campaign(tmp_path / "c")
    path = folder / "announcement.md"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("+++\n", "", 1), encoding="utf-8")
    _refused(folder, server, "announcement.md:1: must start with a '+++' line")
    path.write_text(text.replace("+++\n\nThe body.", "\nThe body."), encoding="utf-8")
    _refused(folder, server, "announcement.md:1: the front matter is never closed")


def test_unknown_keys_are_a_warning_with_line_and_suggestion(tmp_path: Path) -> None:
    folder = make_campaign(
        tmp_path / "c",
        extra='titel = "Typo"\nauthor = "Used"\nunused_note = "nobody reads me"',
        html="<p>{{ campaign.title }} by {{ campaign['author'] }}</p>",
    )

    result = cli(folder, "check")

    assert result.exit_code == 0, result.output
    assert "announcement.md:6: front-matter key 'titel' is not used by any template in templates/" in result.output
    assert "(did you mean 'title'?)" in result.output
    assert "announcement.md:8: front-matter key 'unused_note'" in result.output
    assert "'author'" not in result.output and "key 'subject'" not in result.output


def test_the_example_campaign_has_no_unknown_keys() -> None:
    root = Path(__file__).resolve().parents[2]
    assert unused_fields(load_campaign(root)) == []


def test_fields_read_through_an_alias_count_as_used(tmp_path: Path) -> None:
    folder = make_campaign(
        tmp_path / "c", extra='tagline = "x"', html="{% set c = campaign %}<p>{{ c.tagline }} {{ c.title }}</p>"
    )
    assert unused_fields(load_campaign(folder)) == []


# -- templates -----------------------------------------------------------------------------


def test_a_missing_template_is_named(tmp_path: Path, server: CountingServer) -> None:
    folder = make_campaign(tmp_path / "c", extra='html_template = "missing.html"')
    _refused(folder, server, "template not found: missing.html")


def test_a_missing_include_is_named_with_its_line(tmp_path: Path, server: CountingServer) -> None:
    folder = make_campaign(tmp_path / "c", html="<p>one</p>\n{% include 'footer.html' %}")
    _refused(folder, server, "announcement.html:2:", "template not found: footer.html")


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>one</p>\n<p>{{ recipient.name </p>", "announcement.html:2: template syntax error"),
        ("<p>one</p>\n{% if x %}\n<p>never closed</p>", "announcement.html:2: template syntax error"),
        ("<p>{{ recipient.name | nosuchfilter }}</p>", "announcement.html:1: template syntax error"),
        ("<p>one</p>\n\n<p>{{ recipient.nosuchfield }}</p>", "announcement.html:3: uses recipient.nosuchfield"),
    ],
)
def test_template_errors_have_file_and_line(tmp_path: Path, server: CountingServer, html: str, expected: str) -> None:
    _refused(make_campaign(tmp_path / "c", html=html), server, expected)


def test_a_syntax_error_in_the_subject_is_named(tmp_path: Path, server: CountingServer) -> None:
    _refused(make_campaign(tmp_path / "c", subject="Hello {{ recipient.name "), server, "template syntax error")


@pytest.mark.parametrize(
    "html",
    [
        "<p>a</p>\n{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}",
        "<p>a</p>\n{% include 'announcement.html' %}",
    ],
    ids=["macro", "include-self"],
)
def test_runaway_recursion_is_reported_with_its_template(tmp_path: Path, server: CountingServer, html: str) -> None:
    output = _refused(make_campaign(tmp_path / "c", html=html), server, "announcement.html:2:", "RecursionError")
    assert "rendering for ann@example.org" in output


def test_extends_in_a_circle_is_reported(tmp_path: Path, server: CountingServer) -> None:
    folder = make_campaign(tmp_path / "c", html="{% extends 'base.html' %}")
    (folder / "templates" / "base.html").write_text("{% extends 'announcement.html' %}", encoding="utf-8")
    _refused(folder, server, "RecursionError")


NESTED = "{% set l = [1] * 1000 %}{% for a in l %}{% for b in l %}{% for c in l %}{% endfor %}{% endfor %}{% endfor %}"


@pytest.mark.parametrize(
    ("work", "expected"),
    [
        ("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}", "loops ran more than"),
        ("{% for i in range(10**9) %}x{% endfor %}", "Range too big"),
        ("{% for i in range(99999) %}{{ 'x' * 5000 }}{% endfor %}", "the output grew past"),
        ("{{ 'x' * 10**10 }}", "repeating a value"),
        ("{{ 2 ** 99999999 }}", "too large a number"),
        (NESTED, "loops ran more than"),
    ],
    ids=["nested-range", "huge-range", "huge-output", "repeat", "power", "nested-list"],
)
def test_enormous_work_is_stopped_in_preflight(
    tmp_path: Path, server: CountingServer, work: str, expected: str
) -> None:
    _refused(make_campaign(tmp_path / "c", html=f"<p>a</p>\n{work}"), server, "announcement.html:2:", expected)


def test_a_render_that_takes_too_long_is_stopped(
    tmp_path: Path, server: CountingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exponential macro calls: no loop at all, so only the clock can stop it."""
    monkeypatch.setattr(sandbox, "MAX_RENDER_SECONDS", 0.3)
    html = "<p>a</p>\n{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"
    expected = "rendering took longer than 0.3 s"
    _refused(make_campaign(tmp_path / "c", html=html), server, "announcement.html:2:", expected)


def test_nesting_too_deep_to_compile_is_an_error_not_a_crash(tmp_path: Path, server: CountingServer) -> None:
    html = "<p>{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}</p>"
    _refused(make_campaign(tmp_path / "c", html=html), server, "announcement.html:1:", "nested too deeply")


def test_the_budgets_leave_ordinary_templates_alone(tmp_path: Path) -> None:
    html = (
        "{% for i in range(1000) %}{% for j in range(100) %}.{% endfor %}{% endfor %}"
        "{{ '=' * 72 }}{{ 2 ** 64 }}{% for k, v in {'a': 1}.items() %}{{ loop.index }}/{{ loop.length }}{% endfor %}"
    )
    folder = make_campaign(tmp_path / "c", html=html)
    assert cli(folder, "send", "--yes").exit_code == 0
