"""The skeleton fast path gives the same DOM as rendering and inlining each recipient from scratch.

The reference is computed independently of the renderer under test: its own Jinja
environment renders the template, and `inline_css` (premailer) inlines that render.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jinja2
import lxml.html
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from premailer import Premailer

from newsletter.inputs.campaign import Campaign, load_campaign
from newsletter.inputs.recipients import Recipient
from newsletter.inputs.settings import Secret
from newsletter.message.unsubscribe import UnsubscribeLinks
from newsletter.render.inline import inline_css
from newsletter.render.plaintext import html_to_text
from newsletter.render.renderer import Renderer, make_environment
from newsletter.render.skeleton import InlineStats, SkeletonInliner

ROOT = Path(__file__).resolve().parents[1]

LINKS = UnsubscribeLinks(
    url="https://example.org/unsubscribe?e={email}&t={token}",
    secret=Secret("test secret"),
    list_id="announcements.example.org",
)

ANNOUNCEMENT = """+++
id = "skeleton-test"
subject = "A test announcement"
from = "Sender <sender@example.org>"
+++

A body with *emphasis* and a [link](https://example.org/book).
"""

STYLE = """
p { margin: 0 0 12px 0; }
.greeting { font-weight: bold; }
.org { color: #3e4c59; }
a { color: #1a5fa8; text-decoration: underline; }
a[x-apple-data-detectors] { color: inherit; }
td.cell { padding: 4px; background-color: #f5f8fc; }
p:first-child { margin-top: 0; }
span:empty { display: none; }
img { border: 0; }
@media (max-width: 600px) { .greeting { font-size: 20px !important; } }
"""

# Recipient values in text, in attributes (a URI one and plain ones), next to each
# other, in conditions, through filters and indexing: all the ways a value reaches HTML.
TRICKY_HTML = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>For {{ recipient.name }}</title>
<style>""" + STYLE + """</style></head>
<body>
<p class="greeting">Dear {{ recipient.name or "colleague" }},</p>
{% if recipient.organization %}<p class="org">At {{ recipient.organization }} &amp; partners</p>
{%- else %}<p class="org">Hello!</p>{% endif %}
{% if recipient.shout == "yes" %}<p>{{ recipient.name|upper }}</p>{% endif %}
{% if recipient.initial and recipient.name %}<p class="initial">{{ recipient.name[0] }}</p>{% endif %}
<table><tr><td class="cell" title="{{ recipient.organization }}">
  {{- recipient.name }}{{ recipient.organization -}}
</td></tr></table>
<p><a href="https://example.org/profile?name={{ recipient.name }}&amp;org={{ recipient.organization }}">Profile</a>
<a href="mailto:{{ recipient.email }}">{{ recipient.email }}</a>
<img src="https://example.org/i/{{ recipient.name }}.png" alt="{{ recipient.name }}"></p>
<span>{{ recipient.organization }}</span>
<div>{{ campaign.body }}</div>
{% if unsubscribe_url %}<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>{% endif %}
</body></html>
"""


def _page(body: str, style: str = STYLE) -> str:
    return f"<!DOCTYPE html>\n<html><head><style>{style}</style></head><body>\n{body}\n</body></html>\n"


# Templates where a value could change what premailer does: the skeleton must be
# refused for the whole campaign, and every recipient inlined from scratch.
UNSAFE_HTML = {
    "style-attribute": _page('<p style="color: {{ recipient.color }}">Dear {{ recipient.name }}</p>'),
    "class-attribute": _page('<p class="{{ recipient.organization }}">Dear {{ recipient.name }}</p>'),
    "style-block": _page("<p>Dear {{ recipient.name }}</p>", STYLE + "\n.x { content: '{{ recipient.name }}'; }"),
    "attribute-selector": _page(
        '<p><a title="{{ recipient.name }}" href="#">Hi</a></p>', STYLE + '\na[title^="A"] { color: red; }'
    ),
    "after-ampersand": _page("<p>AT&{{ recipient.name }}</p>"),
    "unquoted-attribute": _page("<p><a title={{ recipient.name }} href=#>Hi</a></p>"),
    "comment": _page("<!-- for {{ recipient.name }} --><p>Hi</p>"),
    "pre": _page("<pre>{{ recipient.name }}</pre>"),
    "svg": _page('<svg width="10" height="10"><text>{{ recipient.name }}</text></svg>'),
}

CAMPAIGNS = {"tricky": TRICKY_HTML, **UNSAFE_HTML}


def dom(html: str) -> Any:
    """Tag, attributes, text and tail of every node, recursively: what a mail client parses."""

    def walk(node: Any) -> tuple[Any, ...]:
        return (node.tag, dict(node.attrib), node.text, node.tail, [walk(child) for child in node])

    return walk(lxml.html.document_fromstring(html))


@pytest.fixture(scope="module")
def campaigns(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Campaign]:
    """The repository's example campaign (copied) and one folder per template above."""
    base = tmp_path_factory.mktemp("skeleton")
    folders: dict[str, Path] = {}
    example = folders["example"] = base / "example"
    example.mkdir()
    shutil.copyfile(ROOT / "announcement.md", example / "announcement.md")
    shutil.copytree(ROOT / "templates", example / "templates")
    for name, html in CAMPAIGNS.items():
        folder = folders[name] = base / name
        (folder / "templates").mkdir(parents=True)
        (folder / "announcement.md").write_text(ANNOUNCEMENT, encoding="utf-8")
        (folder / "templates" / "announcement.html").write_text(html, encoding="utf-8")
    return {name: load_campaign(folder) for name, folder in folders.items()}


class Reference:
    """Renders and inlines one recipient from scratch, sharing nothing with the renderer under test."""

    def __init__(self, campaign: Campaign) -> None:
        templates = campaign.templates_dir
        self.html = make_environment(templates, autoescape=True).get_template(campaign.html_template)
        text_env = make_environment(templates, autoescape=False)
        has_text = (templates / campaign.text_template).is_file()
        self.text = text_env.get_template(campaign.text_template) if has_text else None
        self.context = {"campaign": campaign.context()}

    def render(self, recipient: Recipient) -> tuple[str, str]:
        context = {**self.context, "recipient": recipient.fields, "unsubscribe_url": LINKS.url_for(recipient.email)}
        html = inline_css(self.html.render(context))
        return html, self.text.render(context) if self.text is not None else html_to_text(html)


TRICKY_VALUES = [
    "<b>bold</b>", "AT&T", "&amp;", "lt;", "amp;", "#34;", "copy", '"quoted"', "it's", "a'b\"c",
    "{{ 7*7 }}", "{% if true %}x{% endif %}", "Анна Петрова", "Jürgen Müller", "李小龙", "😀",
    "  padded  ", " ", "\t", "\n", "line\r\nbreak", "a\rb", "</p><p>", "<!-- c -->", "-->", "x]]>",
    "nlph", "greeting", "\nleading newline", "javascript:alert(1)", "ä b", "%20", "\u00a0", "\x01ctl",
    "\x00nul", "yes", "",
]
values = st.one_of(
    st.sampled_from(TRICKY_VALUES),
    st.lists(st.sampled_from(TRICKY_VALUES), min_size=2, max_size=4).map("".join),
    st.text(max_size=20),
)
emails = st.sampled_from(
    ["anna@example.org", "o'brien@example.org", "a+b&c@example.org", "jürgen@example.de", "Li.Xiao@Example.org"]
)
field_sets = st.fixed_dictionaries(
    {
        "name": values,
        "organization": values,
        "shout": st.sampled_from(["", "yes", "no"]),
        "initial": st.sampled_from(["", "y"]),
        "color": st.one_of(st.just(""), st.sampled_from(["red", "#123456", "blue; font-size: 40px"]), values),
    }
)


def as_recipients(batch: list[tuple[str, dict[str, str]]]) -> Iterator[Recipient]:
    for line, (email, fields) in enumerate(batch, start=2):
        yield Recipient(line=line, email=email, fields={"email": email, **fields})


@pytest.mark.parametrize("name", ["example", "tricky", "style-attribute"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(st.tuples(emails, field_sets), min_size=1, max_size=6))
def test_fast_path_gives_the_same_dom_as_inlining_from_scratch(
    campaigns: dict[str, Campaign], name: str, batch: list[tuple[str, dict[str, str]]]
) -> None:
    campaign = campaigns[name]
    renderer = Renderer(campaign, links=LINKS)
    reference = Reference(campaign)
    for recipient in as_recipients(batch):
        try:
            html, text = reference.render(recipient)
        except ValueError:  # lxml refuses a control character premailer puts into style=""
            with pytest.raises(ValueError, match="XML compatible"):
                renderer.render(recipient)
            continue
        rendered = renderer.render(recipient)
        assert dom(rendered.html) == dom(html)
        assert rendered.text == text
    stats = renderer.inliner.stats
    assert stats.recipients == len(batch)
    if name == "example":  # nothing in it depends on a value: only NUL is inlined from scratch
        assert renderer.inliner.disabled is None
        assert stats.from_scratch == sum("\x00" in "".join(fields.values()) for _, fields in batch)


def recipient(line: int, **fields: str) -> Recipient:
    email = fields.setdefault("email", f"reader{line}@example.org")
    return Recipient(line=line, email=email, fields=fields)


@pytest.mark.parametrize("name", sorted(UNSAFE_HTML))
def test_unsafe_templates_fall_back_to_inlining_every_recipient(campaigns: dict[str, Campaign], name: str) -> None:
    campaign = campaigns[name]
    renderer = Renderer(campaign, links=LINKS)
    reference = Reference(campaign)
    for line, value in enumerate(TRICKY_VALUES, start=2):
        person = recipient(line, name=value or "Anna", organization=value or "Academy", color=value or "red")
        assert dom(renderer.render(person).html) == dom(reference.render(person)[0])
    assert renderer.inliner.disabled is not None
    assert renderer.inliner.disabled.startswith("the template is not skeleton-safe")
    assert renderer.inliner.stats.from_skeleton == 0


@pytest.fixture
def premailer_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per premailer transform, however inline_css builds its Premailer."""
    runs: list[int] = []
    transform: Callable[..., str] = Premailer.transform

    def counting(self: Premailer, *args: Any, **kwargs: Any) -> str:
        runs.append(1)
        return transform(self, *args, **kwargs)

    monkeypatch.setattr(Premailer, "transform", counting)
    return runs


def test_premailer_runs_once_per_shape_not_per_recipient(
    campaigns: dict[str, Campaign], premailer_runs: list[int]
) -> None:
    renderer = Renderer(campaigns["example"], links=LINKS)
    people = [
        recipient(line, name=f"Reader {line}" if line % 2 else "", organization=f"Org {line}" if line % 3 else "")
        for line in range(2, 302)
    ]
    for person in people:
        renderer.render(person)
    assert len(premailer_runs) == 4  # name empty or not, times organization empty or not
    for person in people[:10]:
        renderer.render(person)
    assert len(premailer_runs) == 4
    assert renderer.inliner.stats == InlineStats(recipients=310, from_skeleton=310, shapes=4, from_scratch=0)


def test_a_value_the_template_transforms_is_inlined_from_scratch(
    campaigns: dict[str, Campaign], premailer_runs: list[int]
) -> None:
    campaign = campaigns["tricky"]
    renderer, reference = Renderer(campaign, links=LINKS), Reference(campaign)
    plain = recipient(2, name="Anna", organization="Academy", shout="no", initial="")
    shouted = recipient(3, name="Anna", organization="Academy", shout="yes", initial="")
    for person in (plain, shouted, plain):
        assert dom(renderer.render(person).html) == dom(reference.render(person)[0])
    # one shape for all three; `|upper` made the second differ from the placeholder render
    assert renderer.inliner.stats == InlineStats(recipients=3, from_skeleton=2, shapes=1, from_scratch=1)
    assert len(premailer_runs) == 2 + 3  # the renderer's two, the reference's three


def test_the_skeleton_is_dropped_when_most_recipients_need_premailer(
    tmp_path: Path, premailer_runs: list[int]
) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "announcement.md").write_text(ANNOUNCEMENT, encoding="utf-8")
    (tmp_path / "templates" / "announcement.html").write_text(_page("<p>{{ recipient.name|upper }}</p>"))
    renderer = Renderer(load_campaign(tmp_path))
    for line in range(2, 152):
        html = renderer.render(recipient(line, name=f"reader {line}")).html
        assert f"READER {line}" in html
    assert renderer.inliner.disabled == "101 of the first 100 recipients needed premailer"
    assert len(premailer_runs) == 1 + 150  # the one skeleton, then every recipient
    assert renderer.inliner.stats == InlineStats(recipients=150, from_skeleton=0, shapes=1, from_scratch=150)


def test_a_template_failing_on_a_placeholder_is_inlined_from_scratch(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "announcement.md").write_text(ANNOUNCEMENT, encoding="utf-8")
    (tmp_path / "templates" / "announcement.html").write_text(_page("<p>{{ 100 // (recipient.count|int) }}</p>"))
    renderer = Renderer(load_campaign(tmp_path))
    assert ">20</p>" in renderer.render(recipient(2, count="5")).html
    assert ">4</p>" in renderer.render(recipient(3, count="25")).html
    assert renderer.inliner.disabled is None
    assert renderer.inliner.stats == InlineStats(recipients=2, from_skeleton=0, shapes=0, from_scratch=2)


def test_shapes_are_kept_in_a_bounded_lru(premailer_runs: list[int]) -> None:
    env = make_environment(ROOT / "templates", autoescape=True)
    template = env.from_string(_page("<p>{{ recipient.a }}</p><p>{{ recipient.b }}</p>"))

    def render(fields: Mapping[str, str], unsubscribe_url: str | None) -> str:
        return template.render(recipient=fields)

    inliner = SkeletonInliner(render, max_shapes=2)
    shapes = [{"a": "x", "b": ""}, {"a": "", "b": "y"}, {"a": "x", "b": "y"}]
    for fields in shapes + shapes:
        inliner.inline(render(fields, None), fields, None)
    assert inliner.stats.shapes == 6  # three shapes through a cache of two: each one evicted before reuse
    for fields in [shapes[2], shapes[1], shapes[2]]:
        inliner.inline(render(fields, None), fields, None)
    assert inliner.stats.shapes == 6
    assert len(premailer_runs) == 6


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from("ab cd-\n\tЖ"), max_size=120),
    width=st.integers(min_value=1, max_value=40),
    break_long_words=st.booleans(),
)
def test_remembered_wordwrap_wraps_like_jinja(text: str, width: int, break_long_words: bool) -> None:
    environment = make_environment(ROOT / "templates", autoescape=False)
    template = environment.from_string("{{ text | wordwrap(width, break_long_words=flag) }}")
    expected = jinja2.filters.do_wordwrap(environment, text, width, break_long_words=break_long_words)
    for _ in range(2):  # computed, then remembered
        assert template.render(text=text, width=width, flag=break_long_words) == expected
