"""`textwrap.wrap` as Jinja's `wordwrap` calls it, done by one regular expression where it can be.

Text parts wrap personalised paragraphs ("... your colleagues at {{ organization }}"),
so the filter's answers cannot be cached, and textwrap's pure-Python loop over chunks
was most of the cost of rendering a text part. For the common case the same greedy
rule is a single regex search in C: a line is the longest run of whole words, at most
`width` long, that ends where a word ends; a word longer than `width` stands alone.

Why the regex gives what textwrap gives: textwrap splits a line into alternating
chunks of whitespace and words (with `break_on_hyphens=False`, or no hyphen in the
text), adds chunks to a line while they fit, drops whitespace at the edges of every
line but the start of the first, and puts an over-long word on a line of its own.
The longest prefix of whole chunks that fits, with trailing whitespace dropped, is
the longest prefix that fits and ends at a word's end: what the pattern matches.

Everything else goes to textwrap itself: hyphens that may break, words that must be
broken, leading whitespace, Unicode whitespace (textwrap splits only on ASCII
whitespace, yet drops chunks that `str.strip` empties), widths below 2.
tests/test_wrap.py checks the equality for random text.
"""

from __future__ import annotations

import functools
import re
import textwrap

_SPACE = " \t\n\x0b\x0c\r"  # textwrap's whitespace: ASCII only
_OTHER_SPACE = re.compile(r"[^\S \t\n\x0b\x0c\r]")  # whitespace textwrap does not split on


@functools.lru_cache(maxsize=64)
def _line(width: int) -> re.Pattern[str]:
    word, space = f"[^{_SPACE}]", f"[{_SPACE}]"
    fits = f"{word}(?:.{{0,{width - 2}}}{word})?(?={space}|\\Z)"
    return re.compile(f"{fits}|{word}+", re.DOTALL)


@functools.lru_cache(maxsize=64)
def _too_long(width: int) -> re.Pattern[str]:
    return re.compile(f"[^{_SPACE}]{{{width + 1}}}")


def wrap(text: str, width: int, *, break_long_words: bool = True, break_on_hyphens: bool = True) -> list[str]:
    """`textwrap.wrap(text, width, expand_tabs=False, replace_whitespace=False, ...)`, faster."""
    simple = (
        type(width) is int
        and width >= 2
        and text[:1] not in _SPACE  # leading whitespace, and "" (both rare)
        and not (break_on_hyphens and "-" in text)
        and not _OTHER_SPACE.search(text)
        and not (break_long_words and _too_long(width).search(text))
    )
    if simple:
        return _line(width).findall(text)
    return textwrap.wrap(
        text,
        width=width,
        expand_tabs=False,
        replace_whitespace=False,
        break_long_words=break_long_words,
        break_on_hyphens=break_on_hyphens,
    )
