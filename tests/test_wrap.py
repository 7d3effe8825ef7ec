"""The regex word wrap gives exactly what textwrap gives, as Jinja's `wordwrap` calls it."""

from __future__ import annotations

import textwrap

import jinja2
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.render.renderer import make_environment
from newsletter.render.wrap import wrap

# Words, ASCII whitespace of each kind, hyphens, a non-breaking space and an em space
# (whitespace to str.strip, not to textwrap), non-ASCII letters and markup characters.
ALPHABET = st.sampled_from(["a", "bc", "Ж", "é", " ", "  ", "\t", "-", "--", "\xa0", "\u2003", "<", "&", ".", "x" * 9])
TEXT = st.lists(ALPHABET, max_size=40).map("".join)


def reference(text: str, width: int, break_long_words: bool, break_on_hyphens: bool) -> list[str]:
    return textwrap.wrap(
        text,
        width=width,
        expand_tabs=False,
        replace_whitespace=False,
        break_long_words=break_long_words,
        break_on_hyphens=break_on_hyphens,
    )


@settings(max_examples=3000, deadline=None)
@given(TEXT, st.integers(min_value=1, max_value=14), st.booleans(), st.booleans())
def test_wrap_equals_textwrap(text: str, width: int, break_long_words: bool, break_on_hyphens: bool) -> None:
    assert wrap(text, width, break_long_words=break_long_words, break_on_hyphens=break_on_hyphens) == reference(
        text, width, break_long_words, break_on_hyphens
    )


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(["word", "a", "longerword", " ", "  "]), max_size=60).map("".join), st.integers(2, 30))
def test_the_fast_path_itself_equals_textwrap(text: str, width: int) -> None:
    """Text with no hyphen, no odd whitespace and short words never falls back; it still agrees."""
    text = text.lstrip()
    assert wrap(text, width, break_long_words=False, break_on_hyphens=True) == reference(text, width, False, True)


def test_the_filter_in_a_template_matches_jinjas_own() -> None:
    source = (
        "{% filter wordwrap(20, break_long_words=False) %}Dear {{ name }}, thanks for reading"
        " our notes.\nA second paragraph, well-known and long enough.{% endfilter %}|"
        "{{ text | wordwrap(12, wrapstring='\\n  ') }}"
    )
    values = {"name": "Anna Maria Petrova-Smirnova", "text": "one two three four five six seven"}
    ours = make_environment_for_test().from_string(source).render(values)
    plain_environment = jinja2.Environment(keep_trailing_newline=True)  # noqa: S701 - text, as Jinja's own filter sees it
    plain = plain_environment.from_string(source).render(values)
    assert ours == plain
    assert "Dear Anna Maria\n" in ours


def make_environment_for_test() -> jinja2.Environment:
    from pathlib import Path

    return make_environment(Path("."), autoescape=False)
