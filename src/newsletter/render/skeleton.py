"""Inlining CSS once per shape of the recipients' values, not once per recipient.

premailer costs milliseconds a message, yet two recipients' HTML differs only where
their values are printed. So the template is rendered once with a unique placeholder
in place of every non-blank recipient value (and the unsubscribe URL), that render is
inlined once, and each recipient's escaped values are filled into the inlined result.

Why the result equals inlining the recipient's own HTML, and where it would not:

- Blank values stay literal and are part of the shape key: emptiness drives
  `{% if recipient.x %}`, `:empty` and the parser's whitespace handling, so each
  combination of blank fields gets its own skeleton (LRU-cached).
- premailer decides what matches from tags, `class`, `id`, attributes named in
  selectors and the `<style>` text. A placeholder there, in `style=""`, in a comment
  or raw-text element, in an unquoted attribute (the placeholder holds a space, so it
  would not survive intact) or right after a bare `&` (the value could complete an
  entity) makes the template unfit: the whole campaign is inlined per recipient.
- Every recipient is still rendered by Jinja (cheap, and where template errors are
  reported); the skeleton is used only if that render equals the placeholder render
  with the recipient's escaped values filled in. Whatever else a template does with
  a value (`|upper`, `[0]`, comparisons) shows up as a difference, and that recipient
  is inlined from scratch; if that happens to most recipients the skeleton is dropped.
- lxml rewrites some attribute values on output (URI attributes are percent-escaped,
  quotes chosen by content), so a placeholder inside an attribute is filled by letting
  lxml serialize that one attribute with the recipient's value.

Equality with from-scratch inlining holds at the DOM level, not byte for byte
(tests/test_skeleton.py checks it for random values).
"""

from __future__ import annotations

import enum
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from lxml import etree
from markupsafe import escape

from newsletter.render.inline import inline_css

RenderHTML = Callable[[Mapping[str, str], str | None], str]
"""Renders the HTML template for recipient fields and an unsubscribe URL, not inlined."""

# Placeholders are refused inside these: their text is not parsed as markup (or, for
# <pre> and <textarea>, a leading newline is dropped), so a value is not simply text there.
_RAW_TEXT = frozenset(
    {"script", "style", "textarea", "pre", "listing", "xmp", "plaintext", "iframe",
     "noembed", "noframes", "noscript", "template"}
)
# Inside SVG and MathML the parser follows other rules (CDATA sections, self-closing tags).
_FOREIGN = frozenset({"svg", "math"})
# Elements premailer or the parser read attributes of (media, data-premailer, charset, href).
_CONFIG_ELEMENTS = frozenset({"style", "link", "meta", "base"})
# Attributes selectors depend on even without `[attr]` in the CSS (.class, #id, :lang, :checked).
_SELECTOR_ATTRIBUTES = frozenset({"class", "id", "style", "lang", "xml:lang", "type"})
_ATTRIBUTE_SELECTOR = re.compile(r"\[\s*(?:[\w*-]*\|)?([\w:-]+)")


class _Filled(enum.Enum):
    """Marks a value replaced by a placeholder in a shape key (blank values are kept as they are)."""

    VALUE = 0


ShapeKey = tuple[tuple[str, ...], tuple[str | _Filled | None, ...]]


class _Tokens:
    """Placeholders unique to one renderer: `nlph<nonce><index> x`.

    Letters and digits pass Jinja's escaping and premailer untouched; the space makes a
    placeholder in an unquoted attribute fall apart, which the checks then notice.
    """

    def __init__(self) -> None:
        self.prefix = f"nlph{secrets.token_hex(5)}"
        self.pattern = re.compile(re.escape(self.prefix) + r"(\d+) x")
        self.after_ampersand = re.compile(r"&[#0-9A-Za-z]*" + re.escape(self.prefix))

    def token(self, index: int) -> str:
        return f"{self.prefix}{index} x"

    def count(self, text: str) -> int:
        return len(self.pattern.findall(text)) if self.prefix in text else 0

    def split(self, text: str) -> tuple[str | int, ...]:
        """`text` as literal strings and the value indexes between them."""
        pieces = self.pattern.split(text)
        return tuple(int(p) if i % 2 else p for i, p in enumerate(pieces) if i % 2 or p)


def attribute_markup(tag: str, name: str, value: str) -> str:
    """`name="value"` exactly as lxml writes it on a `tag` element in HTML output."""
    element = etree.Element(tag)
    element.set(name, value)
    markup: str = etree.tostring(element, method="html", encoding="utf-8").decode("utf-8")
    close = f"></{tag}>"
    end = len(markup) - len(close) if markup.endswith(close) else len(markup) - 1
    return markup[len(tag) + 2 : end]


@dataclass(frozen=True, slots=True)
class _Attribute:
    """An attribute holding placeholders in the inlined skeleton; rewritten whole per recipient."""

    tag: str
    name: str
    value: tuple[str | int, ...]

    def markup(self, raw: Sequence[str]) -> str:
        value = "".join(p if isinstance(p, str) else raw[p] for p in self.value)
        if "\r" in value:  # the HTML parser turns CR LF and CR into LF before anything else sees them
            value = value.replace("\r\n", "\n").replace("\r", "\n")
        return attribute_markup(self.tag, self.name, value)


Part = str | int | _Attribute


def _fill(parts: Sequence[Part], escaped: Sequence[str], raw: Sequence[str]) -> str:
    return "".join(
        [
            p if isinstance(p, str) else escaped[p] if isinstance(p, int) else p.markup(raw)
            for p in parts
        ]
    )


@dataclass(frozen=True, slots=True)
class _Skeleton:
    """One shape: the placeholder render (to verify against) and its inlined form (to fill)."""

    source: tuple[str | int, ...]
    inlined: tuple[Part, ...]


@dataclass
class InlineStats:
    """How recipients were inlined; premailer ran `shapes + from_scratch` times."""

    recipients: int = 0
    from_skeleton: int = 0
    shapes: int = 0
    from_scratch: int = 0


def _parse(html: str) -> etree._Element | None:
    """The tree premailer would see (it parses the stripped text with lxml's HTML parser)."""
    try:
        root: etree._Element | None = etree.fromstring(html.strip(), etree.HTMLParser())
    except (etree.XMLSyntaxError, ValueError):
        return None
    return root


def _foreign(element: etree._Element) -> bool:
    return any(e.tag in _FOREIGN for e in (element, *element.iterancestors()))


Attribute = tuple[str, str, str]
"""An element's tag, an attribute name and its value holding placeholders."""


def _placeholders(html: str, tokens: _Tokens) -> list[Attribute] | str:
    """The attributes holding placeholders in a placeholder render, or why a placeholder could
    change what premailer does."""
    if tokens.after_ampersand.search(html):
        return "a value follows a bare '&'"
    root = _parse(html)
    if root is None:
        return "the HTML does not parse"
    css = " ".join(style.text or "" for style in root.iter("style"))
    watched = _SELECTOR_ATTRIBUTES | {m.lower() for m in _ATTRIBUTE_SELECTOR.findall(css)}
    text_selected = ":contains" in css.lower()  # the one selector that reads text

    def special(element: etree._Element | None) -> bool:
        return element is None or element.tag in _RAW_TEXT or _foreign(element)

    attributes: list[Attribute] = []
    placed = 0
    for node in root.iter():
        if node.tail and (n := tokens.count(node.tail)):
            if text_selected or special(node.getparent()):
                return "a value in text the CSS or the parser treats specially"
            placed += n
        if not isinstance(node.tag, str):
            if node.text and tokens.count(node.text):
                return "a value inside a comment"
            continue
        if tokens.count(node.tag):
            return "a value in a tag name"
        for name, value in node.attrib.items():
            if tokens.count(name):
                return "a value in an attribute name"
            if n := tokens.count(value):
                if node.tag in _CONFIG_ELEMENTS or name.lower() in watched or _foreign(node):
                    return f"a value in the {name!r} attribute of <{node.tag}>"
                attributes.append((node.tag, name, value))
                placed += n
        if node.text and (n := tokens.count(node.text)):
            if text_selected or special(node):
                return f"a value inside <{node.tag}>"
            placed += n
    if placed != tokens.count(html):
        return "a value outside text and quoted attribute values"
    return attributes


def _split_inlined(html: str, attributes: list[Attribute], tokens: _Tokens) -> tuple[Part, ...] | str:
    """The inlined placeholder render as literal strings and slots, or why it cannot be split.

    Placeholders in text come out of premailer as they went in; in attributes they may not
    (URI attributes are percent-escaped), so attributes are found by how lxml writes them.
    """
    slots: dict[str, _Attribute] = {}
    for tag, name, value in attributes:
        try:
            markup = attribute_markup(tag, name, value)
        except ValueError:
            return f"lxml cannot write <{tag} {name}>"
        slot = _Attribute(tag, name, tokens.split(value))
        if tokens.prefix not in markup or slots.setdefault(markup, slot) != slot:
            return f"the {name!r} attribute of <{tag}> is not written as its value"
    root = _parse(html)
    if root is None:
        return "the inlined HTML does not parse"
    in_attributes = in_text = 0
    for node in root.iter():
        if node.tail:
            in_text += tokens.count(node.tail)
        if not isinstance(node.tag, str):
            if node.text and tokens.prefix in node.text:
                return "a value inside a comment after inlining"
            continue
        in_attributes += sum(tokens.prefix in value for value in node.attrib.values())
        if node.text:
            in_text += tokens.count(node.text)
    alternatives = [re.escape(m) for m in sorted(slots, key=len, reverse=True)]
    pattern = re.compile("|".join([*alternatives, tokens.pattern.pattern]))
    parts: list[Part] = []
    position = 0
    for match in pattern.finditer(html):
        if match.start() > position:
            parts.append(html[position : match.start()])
        index = match.group(1)
        if index is not None:
            parts.append(int(index))
            in_text -= 1
        else:
            parts.append(slots[match.group()])
            in_attributes -= 1
        position = match.end()
    if position < len(html):
        parts.append(html[position:])
    if in_text or in_attributes or tokens.prefix in "".join(p for p in parts if isinstance(p, str)):
        return "placeholders in the inlined HTML are not where the parser puts them"
    return tuple(parts)


class SkeletonInliner:
    """`inline_css` for one campaign's renders, run once per shape of recipient values."""

    def __init__(
        self,
        render: RenderHTML,
        *,
        max_shapes: int = 128,  # skeletons kept; each is about twice the size of one message
        trial: int = 100,  # recipients seen before judging whether the skeleton pays
    ) -> None:
        self._render = render
        self._tokens = _Tokens()
        self._shapes: OrderedDict[ShapeKey, _Skeleton | None] = OrderedDict()
        self._max_shapes = max_shapes
        self._trial = trial
        self._lock = threading.Lock()
        self.stats = InlineStats()
        self.disabled: str | None = None  # why every recipient is now inlined from scratch

    def inline(self, html: str, fields: Mapping[str, str], unsubscribe_url: str | None) -> str:
        """`html`, the render of `fields` and `unsubscribe_url`, with its CSS inlined."""
        result = self._from_skeleton(html, fields, unsubscribe_url) if self.disabled is None else None
        with self._lock:
            stats = self.stats
            stats.recipients += 1
            if result is not None:
                stats.from_skeleton += 1
                return result
            stats.from_scratch += 1
            # When premailer still runs for most recipients (a filter on every value, too many
            # shapes), building and checking skeletons only adds to its cost: stop trying.
            premailer_runs = stats.shapes + stats.from_scratch
            if self.disabled is None and stats.recipients >= self._trial and premailer_runs * 2 > stats.recipients:
                self.disabled = f"{premailer_runs} of the first {stats.recipients} recipients needed premailer"
        return inline_css(html)

    def _from_skeleton(self, html: str, fields: Mapping[str, str], url: str | None) -> str | None:
        values = (*fields.values(), url)
        shape: list[str | _Filled | None] = []
        for value in values:
            if value is None or not value.strip():
                shape.append(value)
            elif "\x00" in value:  # the parser makes NUL U+FFFD: not worth a special case
                return None
            else:
                shape.append(_Filled.VALUE)
        skeleton = self._skeleton((tuple(fields), tuple(shape)), values)
        if skeleton is None:
            return None
        raw = [value or "" for value in values]
        escaped = [escape(value) for value in raw]
        if _fill(skeleton.source, escaped, raw) != html:
            return None
        try:
            return _fill(skeleton.inlined, escaped, raw)
        except ValueError:  # lxml refuses control characters in attributes: inline from scratch
            return None

    def _skeleton(self, key: ShapeKey, values: Sequence[str | None]) -> _Skeleton | None:
        with self._lock:
            if key in self._shapes:
                self._shapes.move_to_end(key)
                return self._shapes[key]
        skeleton = self._build(key, values)
        with self._lock:
            self._shapes[key] = skeleton
            if len(self._shapes) > self._max_shapes:
                self._shapes.popitem(last=False)
        return skeleton

    def _build(self, key: ShapeKey, values: Sequence[str | None]) -> _Skeleton | None:
        names, shape = key
        placeholders = [
            self._tokens.token(index) if kind is _Filled.VALUE else values[index]
            for index, kind in enumerate(shape)
        ]
        fields = {name: value or "" for name, value in zip(names, placeholders, strict=False)}
        try:
            source = self._render(fields, placeholders[-1])
        except Exception:  # a template may fail on a placeholder (`|int` then divide): no skeleton
            return None
        attributes = _placeholders(source, self._tokens)
        if isinstance(attributes, str):
            problem = attributes
        else:
            try:
                inlined = inline_css(source)
            except Exception as exc:  # the recipient's own inlining reports the real error
                problem = f"premailer failed on the placeholder render: {exc!r}"
            else:
                with self._lock:
                    self.stats.shapes += 1
                parts = _split_inlined(inlined, attributes, self._tokens)
                if not isinstance(parts, str):
                    return _Skeleton(self._tokens.split(source), parts)
                problem = parts
        with self._lock:
            self.disabled = self.disabled or f"the template is not skeleton-safe: {problem}"
        return None
