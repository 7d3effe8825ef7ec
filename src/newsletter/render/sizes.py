"""How much a template operation would build, worked out before it runs.

The sandbox (`newsletter.render.sandbox`) bounds what one render may build. Most
operations it can let run and measure afterwards; some must be judged first, because
the single C-level call is itself the damage: `"x".center(10**9)`, `"%*d" % (10**9, 1)`,
`str()` of a list that holds the same long string a thousand times. This module only
estimates: each function returns a size in characters (or items), an upper bound
good enough to refuse the absurd and cheap enough for the ordinary, and never runs
the operation it judges.
"""

from __future__ import annotations

import re
from collections.abc import ItemsView, KeysView, Mapping, ValuesView
from typing import Any

from jinja2.utils import Namespace

ITEM_COST = 16
"""What one item of a list, tuple, set or dict counts for, in characters: its pointer
alone is 8 bytes, and filters walk items one at a time in Python."""

_SCALARS = (int, float, bool, type(None))
_SEQUENCES = (list, tuple, set, frozenset, KeysView, ValuesView, ItemsView)
ITEMISING = frozenset({"list", "sort", "unique", "batch", "slice", "map", "select", "reject", "groupby"})
"""Filters that, given a text, take it apart into a list of its characters."""
_DIGITS = re.compile(r"\d+")
_PRINTF = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[#0\- +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d+))?[hlL]?(?P<type>.?)", re.DOTALL
)


def built_size(value: Any) -> int:
    """What a finished value counts for: its characters, or its items times ITEM_COST."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list | tuple | dict | set | frozenset):
        return ITEM_COST * len(value)
    return 0


def text_size(value: Any, limit: int) -> int:
    """About how many characters `str(value)` makes; anything above `limit` is just "too many".

    Containers are measured as their repr, once per distinct object, so a list holding
    the same list twice, forty levels deep, is answered in forty steps, not 2**40.
    """
    if isinstance(value, str):
        return len(value)
    if isinstance(value, _SCALARS):
        return _scalar_size(value)
    sizes: dict[int, int] = {}
    try:
        return _repr_size(value, limit, sizes)
    except RecursionError:  # nested deeper than repr itself could go
        return limit + 1


def _scalar_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length() // 3 + 2  # decimal digits and a sign, rounded up
    return 32


def _repr_size(value: Any, limit: int, sizes: dict[int, int]) -> int:
    if isinstance(value, str):
        # Printable text is repr'd as itself plus quotes; escapes take up to 10 characters each.
        return len(value) + 2 if value.isprintable() else 10 * len(value) + 2
    if isinstance(value, _SCALARS):
        return _scalar_size(value)
    known = sizes.get(id(value))
    if known is not None:
        return known
    children: Any
    if isinstance(value, Namespace):
        children = _namespace_attributes(value)
    elif isinstance(value, Mapping):
        children = value.items()
    elif isinstance(value, _SEQUENCES):
        children = value
    else:
        return 64  # a generator, a macro, a loop: their repr names them and no contents
    sizes[id(value)] = limit + 1  # a container holding itself (or still being measured)
    total = 2
    for child in children:
        total += 2 + _repr_size(child, limit, sizes)
        if total > limit:
            break
    sizes[id(value)] = total
    return total


def _namespace_attributes(namespace: Namespace) -> Any:
    attributes: Mapping[str, Any] = getattr(namespace, "_Namespace__attrs", {})
    return attributes.items()


def spec_size(spec: str) -> int:
    """The widest field a `format()` spec (`>80`, `.2f`, `0{w}d` once resolved) asks for."""
    return max((_number(digits) for digits in _DIGITS.findall(spec)), default=0)


def _number(digits: str) -> int:
    return int(digits) if len(digits) <= 12 else 10**12


def printf_size(template: str, values: Any, limit: int) -> int:
    """About how long `template % values` is: the template, every width and precision, every value."""
    mapping = values if isinstance(values, Mapping) else None
    positional = values if isinstance(values, tuple) else (values,)
    size = len(template)
    index = 0
    for match in _PRINTF.finditer(template):
        if match["type"] == "%":
            continue
        for part in (match["width"], match["precision"]):
            if part == "*":
                star = positional[index] if index < len(positional) else 0
                index += 1
                size += abs(star) if isinstance(star, int) else 0
            elif part:
                size += _number(part)
        key = match["key"]
        if key is not None and mapping is not None:
            value = mapping.get(key)
        else:
            value = positional[index] if index < len(positional) else None
            index += 1
        size += text_size(value, limit)
        if size > limit:
            break
    return size


def joined_size(separator: str, items: list[Any] | tuple[Any, ...], limit: int) -> int:
    """About how long `separator.join(items)` (or the `join` filter) is, items made text."""
    size = len(separator) * len(items)
    for item in items:
        size += text_size(item, limit)
        if size > limit:
            break
    return size


def replaced_size(text: str, old: str, new: str, count: int = -1) -> int:
    """How long `text.replace(old, new, count)` is, counted in C before the copy is made."""
    found = len(text) + 1 if old == "" else text.count(old)
    if count >= 0:
        found = min(found, count)
    return len(text) + found * max(len(new) - len(old), 0)


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str, default: Any) -> Any:
    """Argument `index` (counted after the value) or keyword `name` of a call, as Python would bind it."""
    if index < len(args):
        return args[index]
    return kwargs.get(name, default)


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) else default


def _text(value: Any, limit: int) -> int:
    return len(value) if isinstance(value, str) else text_size(value, limit)


def filter_size(name: str, value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], limit: int) -> int:
    """About what the filter `name` builds from `value`, for the filters whose arguments multiply it.

    0 for every other filter: what they build grows with their input, which was
    counted when it was built, and is counted again once they return.
    """
    if name == "center":
        return max(_text(value, limit), _int(_arg(args, kwargs, 0, "width", 80)))
    if name == "indent":
        width = _arg(args, kwargs, 0, "width", 4)
        indent = len(width) if isinstance(width, str) else _int(width)
        lines = value.count("\n") + 2 if isinstance(value, str) else _text(value, limit) + 2
        return _text(value, limit) + lines * (indent + ITEM_COST)  # and a list of the lines
    if name == "wordwrap":
        size = _text(value, limit)
        width = max(_int(_arg(args, kwargs, 0, "width", 79), 1) - 1, 1)
        wrapstring = _arg(args, kwargs, 2, "wrapstring", None)
        breaks = min(size, 2 * size // width) + (value.count("\n") if isinstance(value, str) else 0) + 1
        return size + breaks * (_text(wrapstring, limit) if wrapstring is not None else 1)
    if name == "replace":
        old, new = (_arg(args, kwargs, i, key, "") for i, key in enumerate(("old", "new")))
        count = _int(_arg(args, kwargs, 2, "count", None), -1)
        if isinstance(value, str) and isinstance(old, str) and isinstance(new, str):
            return replaced_size(value, old, new, count)
        return _text(value, limit) * (_text(new, limit) + 1)
    if name == "format":
        return printf_size(str(value) if isinstance(value, str) else "", dict(kwargs) or args, limit)
    if name == "truncate":
        return _text(value, limit) + _text(_arg(args, kwargs, 2, "end", "..."), limit)
    if name == "urlize":
        size = _text(value, limit)
        extra = sum(_text(_arg(args, kwargs, i, key, ""), limit) for i, key in ((2, "target"), (3, "rel")))
        return 3 * size + (size // 2 + 1) * (64 + extra)
    if name == "join" and isinstance(value, list | tuple):
        return joined_size(str(_arg(args, kwargs, 0, "d", "")), value, limit)
    if name in ("batch", "slice"):
        count = _int(_arg(args, kwargs, 0, "linecount" if name == "batch" else "slices", 1))
        filled = name == "slice" or _arg(args, kwargs, 1, "fill_with", None) is not None
        return ITEM_COST * count if filled else 0
    if name == "sum" and isinstance(value, list | tuple):
        start = _arg(args, kwargs, 1, "start", 0)
        if isinstance(start, list | tuple):
            # Adding lists copies the growing total once per item: quadratic work.
            total = len(start) + sum(len(item) for item in value if isinstance(item, list | tuple))
            return ITEM_COST * total * len(value)
    return 0


def method_size(name: str, text: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], limit: int) -> int:
    """About what `text.<name>(*args)` builds, for the string methods whose arguments multiply it."""
    if name in ("center", "ljust", "rjust", "zfill"):
        return max(len(text), _int(_arg(args, kwargs, 0, "width", 0)))
    if name == "expandtabs":
        return len(text) + text.count("\t") * max(_int(_arg(args, kwargs, 0, "tabsize", 8)), 0)
    if name == "replace":
        old, new = _arg(args, kwargs, 0, "old", ""), _arg(args, kwargs, 1, "new", "")
        if isinstance(old, str) and isinstance(new, str):
            return replaced_size(text, old, new, _int(_arg(args, kwargs, 2, "count", -1), -1))
    if name == "join":
        items = _arg(args, kwargs, 0, "iterable", ())
        if isinstance(items, list | tuple):
            return joined_size(text, items, limit)
    if name in ("split", "rsplit"):
        separator = _arg(args, kwargs, 0, "sep", None)
        if separator is None:
            pieces = len(text) // 2 + 1
        else:
            pieces = text.count(separator) + 1 if isinstance(separator, str) and separator else 1
        maxsplit = _int(_arg(args, kwargs, 1, "maxsplit", -1), -1)
        return ITEM_COST * (min(pieces, maxsplit + 1) if maxsplit >= 0 else pieces)
    if name == "splitlines":
        breaks = "\n\r\x0b\x0c\x1c\x1d\x1e" if text.isascii() else "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
        return ITEM_COST * (sum(map(text.count, breaks)) + 1)
    if name == "translate":
        table = _arg(args, kwargs, 0, "table", None)
        if isinstance(table, Mapping):
            longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
            return len(text) * max(longest, 1)
    return 0


def lipsum_words(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    """How many words `lipsum(n, html, min, max)` may write: at most `max` for each of `n` paragraphs."""
    paragraphs = _int(_arg(args, kwargs, 0, "n", 5))
    return max(paragraphs, 0) * max(_int(_arg(args, kwargs, 3, "max", 100)), 0)
