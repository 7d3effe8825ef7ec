"""The Jinja sandbox templates run in: no Python internals, no files outside `templates/`, bounded work.

A campaign folder may come from someone else, and its templates run once per
recipient. Jinja's `ImmutableSandboxedEnvironment` already keeps templates away
from Python internals (`__class__`, `__globals__`) and from mutating the data
they are given; it does not bound the work a template does. This module adds
the bounds, per render of one template for one recipient:

- loop iterations (`MAX_LOOP_ITERATIONS`, over every `{% for %}`, nested or not);
- wall-clock time (`MAX_RENDER_SECONDS`), checked every so many loop steps and after
  every filter, test and call;
- output size (`MAX_OUTPUT_CHARS`), checked as the template streams its output;
- everything the template builds (`MAX_BUILT_CHARS`, characters, and list items at
  `sizes.ITEM_COST` each): `~` and `+`, `*`, `%` and `format`, every filter, test and
  method call, the output of macros and `{% set %}` blocks. An operation whose
  arguments would multiply its input (`center(10**9)`, `"%*d" % (10**9, 1)`, the
  `str()` of a list holding one long text many times) is judged before it runs
  (`newsletter.render.sizes`), since that one C-level call would be the damage;
- filters that walk a text in Python (`MAX_SLOW_FILTER_CHARS`) and `lipsum`
  (`MAX_LIPSUM_WORDS`), whose single call could outlast the clock;
- numbers (`n ** m`, `n * m`) too large to be worth computing;
- recursion, which Python bounds and the renderer reports with the template's file and line.

The checks are counters, and one clock read per thousand loop steps or per call,
so the example campaign renders about as fast as in a plain sandbox.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextvars import ContextVar
from itertools import islice
from time import monotonic as _monotonic
from types import BuiltinMethodType, CodeType, MethodType
from typing import Any, cast

import jinja2
import markupsafe
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import SecurityError
from jinja2.runtime import BlockReference, Context, LoopContext, Macro, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import _PassArg, generate_lorem_ipsum
from markupsafe import Markup

from newsletter.render import sizes

MAX_LOOP_ITERATIONS = 250_000
MAX_RENDER_SECONDS = 5.0
MAX_OUTPUT_CHARS = 10_000_000
MAX_BUILT_CHARS = 3 * MAX_OUTPUT_CHARS  # the output, and room for what it is made from
MAX_ITEMS = MAX_LOOP_ITERATIONS  # per list: no loop may walk a longer one
MAX_SLOW_FILTER_CHARS = 100_000  # about a second of `wordwrap` or `urlize` at their slowest
MAX_LIPSUM_WORDS = 100_000
MAX_POWER_BITS = 64 * 1024
_SLOW_FILTERS = frozenset({"wordwrap", "urlize", "striptags", "pprint"})
# Filters that build nothing, or a number: left unwrapped, as they are cheap.
_UNGUARDED = frozenset({"abs", "attr", "count", "d", "default", "first", "float", "int", "last", "length", "random"})
# Filters that take lists and dicts apart rather than turning them into text.
_STRUCTURAL = frozenset(
    {"attr", "batch", "count", "d", "default", "dictsort", "first", "groupby", "items", "join", "last",
     "length", "list", "map", "max", "min", "random", "reject", "rejectattr", "reverse", "select",
     "selectattr", "slice", "sort", "sum", "unique"}
)  # fmt: skip
_PLAIN = frozenset({str, Markup, int, float, bool, type(None)})
# Filters whose arguments can multiply what they build; `sizes.filter_size` estimates them.
_MULTIPLYING = frozenset(
    {"center", "indent", "wordwrap", "replace", "join", "format", "truncate", "urlize", "batch", "slice", "sum"}
)
# Filters that take a text apart into a list (of its characters; wordcount, of its words).
_ITEMISING = sizes.ITEMISING | {"wordcount"}
_BIG_OUTPUT = 64 * 1024  # an output value this long is counted where it is written, not only when built
_CHECK_EVERY = 1024  # steps between clock reads: cheap, and still well under a second
_OUTPUT_BLOCK = 256  # output chunks between size checks
_BUDGET_FILTER = "_newsletter_budget"
_DICT_NAMES = frozenset(dir(dict))


class TemplateBudgetExceeded(SecurityError):
    """A template did more work than any announcement needs: a loop or recursion gone wrong."""


class _Budget:
    """The work one render may still do; one per `Template.render` call, per thread."""

    __slots__ = ("built", "deadline", "iterations", "steps")

    def __init__(self) -> None:
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS
        self.iterations = 0
        self.steps = 0
        self.built = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps % _CHECK_EVERY == 0:
            self.clock()

    def clock(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateBudgetExceeded(
                f"rendering took longer than {MAX_RENDER_SECONDS:g} s for one recipient; "
                "is there an enormous loop or a runaway recursion?"
            )

    def room(self) -> int:
        """What the template may still build, in characters."""
        return MAX_BUILT_CHARS - self.built

    def expect(self, size: int, what: str) -> None:
        """Refuse, before it runs, an operation that would build more than is left."""
        if size > MAX_BUILT_CHARS - self.built:
            raise TemplateBudgetExceeded(
                f"{what} would build about {size:,} characters, more than the {self.room():,} left "
                f"of the {MAX_BUILT_CHARS:,} a template may build for one recipient"
            )

    def charge(self, value: Any) -> None:
        """Count what an operation built (characters, or list items)."""
        size = sizes.built_size(value)
        if not size:
            return
        self.built += size
        if self.built > MAX_BUILT_CHARS:
            raise TemplateBudgetExceeded(
                f"the text and lists the template built grew past {MAX_BUILT_CHARS:,} characters "
                "for one recipient; is a value doubled in a loop?"
            )
        if not isinstance(value, str) and len(value) > MAX_ITEMS:
            raise TemplateBudgetExceeded(f"a list grew past {MAX_ITEMS:,} items for one recipient")

    def text(self, value: Any, what: str) -> None:
        """Refuse to turn `value` into text when that text alone would exhaust the budget."""
        if type(value) not in _PLAIN:
            self.expect(sizes.text_size(value, self.room()), what)

    def iterate(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            self.iterations += 1
            if self.iterations > MAX_LOOP_ITERATIONS:
                raise TemplateBudgetExceeded(
                    f"loops ran more than {MAX_LOOP_ITERATIONS:,} times for one recipient; "
                    "is a loop nested in another by mistake?"
                )
            self.step()
            yield item


_current: ContextVar[_Budget | None] = ContextVar("newsletter_template_budget", default=None)


def _budgeted(iterable: Any) -> Any:
    """The filter wrapped around every `{% for %}` iterable (see `BudgetedSandbox._parse`)."""
    budget = _current.get()
    if budget is None or isinstance(iterable, jinja2.Undefined):
        return iterable  # an Undefined must fail as itself, naming the missing field
    return budget.iterate(iterable)


_PLAIN_TEXT = frozenset({str, Markup})
_SCALARS = frozenset({int, float, bool, type(None)})


def _plain_escape(text: str) -> str:
    return str(markupsafe.escape(text))


# markupsafe's `escape` is Python wrapping this C function; calling it directly makes
# the budget's output functions cost no more than Jinja's plain `escape(...)`.
_escape_inner: Callable[[str], str] = getattr(markupsafe, "_escape_inner", None) or _plain_escape


def _write_escaped(value: Any) -> Markup:
    """`{{ x }}` with autoescape: `escape(x)`, with a list's text or a very long text counted first.

    This runs for every field of every message, so text of an ordinary length takes
    exactly markupsafe's own fast path.
    """
    kind = type(value)
    if kind is str:
        if len(value) < _BIG_OUTPUT:
            return Markup(_escape_inner(value))  # noqa: S704 (the text was just escaped)
    elif kind in _SCALARS or (kind is Markup and len(value) < _BIG_OUTPUT):
        return markupsafe.escape(value)
    budget = _current.get()
    if budget is not None:
        _count_written(budget, value)
    return markupsafe.escape(value)


def _write_text(value: Any) -> str:
    """`{{ x }}` without autoescape: `str(x)`, with a list's text measured before it is built."""
    kind = type(value)
    if kind is str:
        return cast(str, value)
    if kind is not Markup and kind not in _SCALARS:
        budget = _current.get()
        if budget is not None:
            _count_written(budget, value)
    return str(value)


def _buffer_escaped(value: Any) -> Markup:
    """What a macro or a `{% set %}` block writes waits in a list until joined: all of it counts."""
    text = _write_escaped(value)
    budget = _current.get()
    if budget is not None:
        budget.charge(text)
    return text


def _buffer_text(value: Any) -> str:
    text = _write_text(value)
    if text is not value:  # a new string: the text of a list, a number, a Markup
        budget = _current.get()
        if budget is not None:
            budget.charge(text)
    return text


def _count_written(budget: _Budget, value: Any) -> None:
    kind = type(value)
    if kind is str or kind is Markup:
        budget.charge(value)
    elif kind not in _SCALARS:
        size = sizes.text_size(value, budget.room())
        budget.expect(size, "writing this value")
        budget.built += size


def _listed(budget: _Budget, iterable: Any) -> list[Any]:
    """An iterable as a list (to measure it before it is joined), at most MAX_ITEMS long."""
    items = list(islice(iterable, MAX_ITEMS + 1))
    budget.charge(items)
    return items


class _Guarded(dict[str, Any]):
    """The environment's filters, each wrapped in the budget's checks as it is stored.

    Tests are left as they are: they answer yes or no, build nothing, and the clock
    is read after the filter or loop step that uses them.
    """

    def __init__(self, functions: Mapping[str, Any]) -> None:
        super().__init__()
        self.update(functions)

    def __setitem__(self, name: str, function: Any) -> None:
        super().__setitem__(name, _guard(name, function))

    def update(self, *args: Any, **kwargs: Any) -> None:
        for name, function in dict(*args, **kwargs).items():
            self[name] = function

    def setdefault(self, name: str, function: Any = None) -> Any:
        if name not in self:
            self[name] = function
        return self[name]


def _guard(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """`function` with the budget's checks around it: sizes before, time and size after.

    This runs for every filter call of every message, so each check is decided once,
    here, per filter, and the common case (text in, text out, nothing to multiply it)
    costs a few comparisons.
    """
    if getattr(function, "_newsletter_guarded", False) or name in _UNGUARDED or name == _BUDGET_FILTER:
        return function
    skip = 0 if _PassArg.from_obj(function) is None else 1  # the environment or context Jinja passes first
    textual = name not in _STRUCTURAL  # turns its value into text
    slow = name in _SLOW_FILTERS
    listing = name in ("join", "sum")
    estimating = name in _MULTIPLYING
    itemising = name in _ITEMISING
    # wordwrap (in nearly every text part) is only estimated when given a wrapstring, the
    # one argument that multiplies it; the other estimating filters are rare: always.
    first, keyword = (3, "wrapstring") if name == "wordwrap" else (0, None)
    what = f"the filter '{name}'"

    cap = MAX_SLOW_FILTER_CHARS if slow else MAX_BUILT_CHARS
    simple = not (listing or itemising)  # a text value needs no more than the length checks below

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget = _current.get()
        if budget is None:
            return function(*args, **kwargs)
        value = args[skip]
        if simple and type(value) is str:  # the common case, kept short
            if len(value) > cap:
                _check_slow(value, what)
        elif listing and not isinstance(value, list | tuple | str | jinja2.Undefined):
            value = _listed(budget, value)
            args = (*args[:skip], value, *args[skip + 1 :])
        elif isinstance(value, str):
            if len(value) > cap:
                _check_slow(value, what)
            if itemising:
                budget.expect(sizes.ITEM_COST * len(value), what)
        elif textual and type(value) not in _SCALARS:
            if slow:
                _check_slow(value, what)
            budget.text(value, what)
        if estimating and (len(args) > skip + first or (kwargs and (keyword is None or keyword in kwargs))):
            budget.expect(sizes.filter_size(name, value, args[skip + 1 :], kwargs, budget.room()), what)
        result = function(*args, **kwargs)
        if _monotonic() > budget.deadline:
            budget.clock()
        if result is not value:
            if type(result) is str:
                budget.built += len(result)
                if budget.built > MAX_BUILT_CHARS:
                    budget.charge(result)  # raises, with the message
            else:
                budget.charge(result)
        return result

    guarded._newsletter_guarded = True  # type: ignore[attr-defined]
    return guarded


def _check_slow(value: Any, what: str) -> None:
    size = len(value) if isinstance(value, str) else sizes.text_size(value, MAX_SLOW_FILTER_CHARS)
    if size > MAX_SLOW_FILTER_CHARS:
        raise TemplateBudgetExceeded(
            f"{what} takes at most {MAX_SLOW_FILTER_CHARS:,} characters at a time, "
            f"not {size:,}: it works through its text in Python"
        )


class _MeasuringFormatter(SandboxedFormatter):
    """Jinja's sandboxed `str.format`, judging every field (its width, its value) before it is built."""

    def __init__(self, env: jinja2.Environment, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        self._size = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        budget = _current.get()
        if budget is not None:
            self._size += max(sizes.spec_size(format_spec), sizes.text_size(value, budget.room()))
            budget.expect(self._size, "str.format()")
        return super().format_field(value, format_spec)

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        budget = _current.get()
        if budget is not None and conversion:
            budget.text(value, "str.format()")
        return super().convert_field(value, conversion)


class _MeasuringEscapeFormatter(_MeasuringFormatter, SandboxedEscapeFormatter):
    """The same for `Markup.format`, which escapes every field."""


class _BudgetedCodeGenerator(CodeGenerator):
    """Jinja's compiler, with `~` and every `{{ x }}` sent through the budget.

    `a ~ b` compiles to a join Jinja does not route through the environment; `{{ x }}`
    to `escape(x)` or `str(x)`, which for a list builds its whole text in one step.
    """

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        autoescape = "context.eval_ctx.autoescape" if frame.eval_ctx.volatile else str(bool(frame.eval_ctx.autoescape))
        self.write("environment.join_parts((")
        for argument in node.nodes:
            self.visit(argument, frame)
            self.write(", ")
        self.write(f"), {autoescape})")

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: CodeGenerator._FinalizeInfo) -> None:
        """Jinja writes `escape(` or `str(` here; these are the same with the budget's checks."""
        where = "write" if frame.buffer is None else "buffer"
        if frame.eval_ctx.volatile:
            self.write(f"(environment.{where}_escaped if context.eval_ctx.autoescape else environment.{where}_text)(")
        elif frame.eval_ctx.autoescape:
            self.write(f"environment.{where}_escaped(")
        elif finalize.src is None:
            # Text passes inline, as `str(x)` would pass it: a call per field of a text part was measurable.
            self.write("(_w if type(_w := ")
            return
        else:
            self.write(f"environment.{where}_text(")
        if finalize.src is not None:
            self.write(finalize.src)

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: CodeGenerator._FinalizeInfo) -> None:
        if frame.eval_ctx.volatile or frame.eval_ctx.autoescape or finalize.src is not None:
            super()._output_child_post(node, frame, finalize)
        else:
            self.write(f") is str else environment.{'write' if frame.buffer is None else 'buffer'}_text(_w))")


class BudgetedTemplate(jinja2.Template):
    """A template whose `render` runs under a fresh budget and streams with a size cap."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        token = _current.set(_Budget())
        try:
            context = self.new_context(dict(*args, **kwargs))
            parts: list[str] = []
            size = 0
            try:
                # Jinja compiles templates to generator functions; typeshed only says Iterator.
                output = cast(Generator[str, None, None], self.root_render_func(context))
                # Drained in blocks at C speed (islice, map): a Python loop over every
                # chunk cost as much as the template itself.
                while block := list(islice(output, _OUTPUT_BLOCK)):
                    size += sum(map(len, block))
                    if size > MAX_OUTPUT_CHARS:
                        # Thrown into the template, so the traceback names the line that wrote it.
                        output.throw(
                            TemplateBudgetExceeded(
                                f"the output grew past {MAX_OUTPUT_CHARS:,} characters for one recipient"
                            )
                        )
                    parts += block
            except Exception:
                self.environment.handle_exception()  # rewrites the traceback to template lines
            return "".join(parts)  # not the environment's concat: the output has its own limit
        finally:
            _current.reset(token)


class BudgetedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox plus the work bounds described in the module docstring."""

    template_class = BudgetedTemplate
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _BudgetedCodeGenerator

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # Every filter, Jinja's and those set later (the renderer's wordwrap), is
        # wrapped once, when it is stored: lookups stay plain dict reads at C speed.
        self.filters = _Guarded(self.filters)
        self.filters[_BUDGET_FILTER] = _budgeted

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Wrap every `{% for %}` iterable in the budget filter, before the code is generated."""
        try:
            tree = super()._parse(source, name, filename)
        except RecursionError:  # Jinja's parser recurses per level of nesting
            raise _too_deep(name, filename) from None
        for loop in tree.find_all(nodes.For):
            wrapped = nodes.Filter(loop.iter, _BUDGET_FILTER, [], [], None, None, lineno=loop.iter.lineno)
            wrapped.set_environment(self)
            loop.iter = wrapped
        return tree

    def _generate(
        self, source: nodes.Template, name: str | None, filename: str | None, defer_init: bool = False
    ) -> str:
        try:
            return super()._generate(source, name, filename, defer_init)
        except RecursionError:
            raise _too_deep(name, filename) from None

    def _compile(self, source: str, filename: str) -> CodeType:
        try:
            return super()._compile(source, filename)
        except (RecursionError, SyntaxError, MemoryError):  # Python's compiler has nesting limits too
            raise _too_deep(None, filename) from None

    def getattr(self, obj: Any, attribute: str) -> Any:
        """`recipient.name` on a plain dict, answered without the detour through an exception.

        Jinja tries the attribute first and falls back to the item; a dict has no attribute
        of that name unless `dict` itself has one, so for every other name the answer is
        the item (or undefined), exactly as the sandbox would give it. Templates print a few
        dozen fields each, and the AttributeError raised and caught for each was measurable.
        """
        if type(obj) is dict and attribute not in _DICT_NAMES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Every call from a template (macros included) counts towards the time budget.

        String methods that multiply their text (`center`, `replace`, `join`…) and
        `lipsum` are judged before they run; what any call returns is counted after.
        """
        budget = _current.get()
        if budget is None:
            return super().call(context, obj, *args, **kwargs)
        budget.step()
        owner = getattr(obj, "__self__", None)
        if isinstance(owner, str):
            name = getattr(obj, "__name__", "")
            if name == "join" and args and not isinstance(args[0], list | tuple):
                args = (_listed(budget, args[0]), *args[1:])
            budget.expect(sizes.method_size(name, owner, args, kwargs, budget.room()), f"str.{name}()")
        elif obj is generate_lorem_ipsum and sizes.lipsum_words(args, kwargs) > MAX_LIPSUM_WORDS:
            raise TemplateBudgetExceeded(f"lipsum() may write at most {MAX_LIPSUM_WORDS:,} words for one recipient")
        result = super().call(context, obj, *args, **kwargs)
        budget.clock()
        # A macro's or block's text was counted as it was joined.
        if not isinstance(obj, Macro | BlockReference | LoopContext) and result is not owner:
            budget.charge(result)
        return result

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """`*` and `**` are bounded per step (`_check_repeat`, `_check_power`), `%` and `+` judged
        against what is left; every result is counted, so steps cannot add up unseen."""
        if operator == "*":
            _check_repeat(left, right)
            _check_repeat(right, left)
            _check_product(left, right)
        elif operator == "**":
            _check_power(left, right)
        budget = _current.get()
        if budget is None:
            return super().call_binop(context, operator, left, right)
        if operator == "%" and isinstance(left, str):
            budget.expect(sizes.printf_size(left, right, budget.room()), "'%' formatting")
        elif operator == "+":
            budget.expect(sizes.built_size(left) + sizes.built_size(right), "'+'")
        result = super().call_binop(context, operator, left, right)
        budget.charge(result)
        return result

    write_escaped = staticmethod(_write_escaped)
    write_text = staticmethod(_write_text)
    buffer_escaped = staticmethod(_buffer_escaped)
    buffer_text = staticmethod(_buffer_text)

    def concat(self, parts: Iterable[str]) -> str:
        """The output of a macro, a call block or a `{% set %}` block, joined and counted."""
        budget = _current.get()
        if budget is None:
            return "".join(parts)
        parts = parts if isinstance(parts, list) else list(parts)
        size = sum(map(len, parts))
        budget.expect(size, "a macro or block")
        budget.built += size
        return "".join(parts)

    def join_parts(self, parts: tuple[Any, ...], autoescape: bool) -> str:
        """`a ~ b ~ c`: measured before it is joined, counted after."""
        budget = _current.get()
        if budget is not None:
            room = budget.room()
            size = sum(len(part) if type(part) in _PLAIN_TEXT else sizes.text_size(part, room) for part in parts)
            budget.expect(size, "'~'")
        text: str = markup_join(parts) if autoescape else str_join(parts)
        if budget is not None:
            budget.charge(text)
        return text

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`"{:>80}".format(x)` as Jinja's sandbox runs it, with every field measured first.

        Jinja's own wrapper (replaced here whole) formats through its sandboxed
        formatter; this one uses a subclass of it that judges each field's width and
        value before Python builds it.
        """
        if not isinstance(value, MethodType | BuiltinMethodType) or value.__name__ not in ("format", "format_map"):
            return None
        text = value.__self__
        if not isinstance(text, str):
            return None
        is_format_map = value.__name__ == "format_map"
        make_type: type[str] = type(text)

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs = args[0]
                args = ()
            formatter: SandboxedFormatter
            if isinstance(text, Markup):
                formatter = _MeasuringEscapeFormatter(self, escape=text.escape)
            else:
                formatter = _MeasuringFormatter(self)
            return make_type(formatter.vformat(text, args, kwargs))

        return functools.update_wrapper(wrapper, value)


def _too_deep(name: str | None, filename: str | None) -> jinja2.TemplateSyntaxError:
    return jinja2.TemplateSyntaxError(
        "expressions or blocks nested too deeply to compile", lineno=1, name=name, filename=filename
    )


def _check_repeat(sequence: Any, count: Any) -> None:
    huge = isinstance(sequence, str | list | tuple) and isinstance(count, int)
    if huge and len(sequence) * count > MAX_OUTPUT_CHARS:
        raise TemplateBudgetExceeded(
            f"repeating a value {count:,} times would build more than {MAX_OUTPUT_CHARS:,} items"
        )


def _check_product(left: Any, right: Any) -> None:
    ints = isinstance(left, int) and isinstance(right, int)
    if ints and left.bit_length() + right.bit_length() > MAX_POWER_BITS:
        bits = left.bit_length() + right.bit_length()
        raise TemplateBudgetExceeded(f"a product of about {bits:,} bits is too large a number for a template")


def _check_power(base: Any, exponent: Any) -> None:
    ints = isinstance(base, int) and isinstance(exponent, int) and exponent > 0
    if ints and exponent * abs(base).bit_length() > MAX_POWER_BITS:
        raise TemplateBudgetExceeded(f"{base} ** {exponent} is too large a number for a template")
