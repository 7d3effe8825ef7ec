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
from pathlib import Path
from time import monotonic as _monotonic
from types import BuiltinMethodType, CodeType, MethodType
from typing import Any, cast

import jinja2
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
_SLOW_FILTERS = frozenset({"wordwrap", "urlize"})
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
_ITEMISING = sizes.ITEMISING  # filters that take a text apart into its characters
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


def _finalize(value: Any) -> Any:
    """Every value a template writes (`{{ x }}`), before Jinja turns it into text.

    Text and numbers pass at once (this runs for every field of every message). A list
    or a dict is measured first: its `str()` is built in one C-level step. A very long
    text is counted too, as its escaped copy is built here for the output.
    """
    kind = type(value)
    if kind is str or kind is Markup:
        if len(value) < _BIG_OUTPUT:
            return value
    elif kind in _SCALARS:
        return value
    budget = _current.get()
    if budget is not None:
        _count_written(budget, value)
    return value


@jinja2.pass_eval_context
def _finalize_buffered(eval_ctx: Any, value: Any) -> Any:
    """What a macro or a `{% set %}` block writes: kept in a list until joined, so all counted."""
    budget = _current.get()
    if budget is not None and not (type(value) is str and not eval_ctx.autoescape):
        _count_written(budget, value)
    return value


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
    """The environment's filters (or tests), each wrapped in the budget's checks as it is stored."""

    def __init__(self, functions: Mapping[str, Any], *, is_filter: bool) -> None:
        super().__init__()
        self.is_filter = is_filter
        self.update(functions)

    def __setitem__(self, name: str, function: Any) -> None:
        super().__setitem__(name, _guard(name, function, is_filter=self.is_filter))

    def update(self, *args: Any, **kwargs: Any) -> None:
        for name, function in dict(*args, **kwargs).items():
            self[name] = function

    def setdefault(self, name: str, function: Any = None) -> Any:
        if name not in self:
            self[name] = function
        return self[name]


def _guard(name: str, function: Callable[..., Any], *, is_filter: bool) -> Callable[..., Any]:
    """`function` with the budget's checks around it: sizes before, time and size after.

    This runs for every filter call of every message, so the common case (text in,
    text out, nothing to multiply it) is a handful of comparisons, inlined.
    """
    if getattr(function, "_newsletter_guarded", False) or name == _BUDGET_FILTER:
        return function
    skip = 0 if _PassArg.from_obj(function) is None else 1  # the environment or context Jinja passes first
    structural = not is_filter or name in _STRUCTURAL
    slow = is_filter and name in _SLOW_FILTERS
    listing = is_filter and name in ("join", "sum")
    estimating = is_filter and name in _MULTIPLYING
    what = f"the {'filter' if is_filter else 'test'} '{name}'"

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget = _current.get()
        if budget is None or len(args) <= skip:
            return function(*args, **kwargs)
        value = args[skip]
        if listing and not isinstance(value, list | tuple | str | jinja2.Undefined):
            value = _listed(budget, value)
            args = (*args[:skip], value, *args[skip + 1 :])
        if slow:
            _check_slow(value, what)
        if not structural:
            for argument in args[skip:]:
                if type(argument) not in _PLAIN:
                    budget.text(argument, what)
            for argument in kwargs.values():
                if type(argument) not in _PLAIN:
                    budget.text(argument, what)
        if estimating or (type(value) is str and name in _ITEMISING):
            rest = args[skip + 1 :]
            if name != "wordwrap" or len(rest) > 2 or "wrapstring" in kwargs:  # only a wrapstring multiplies
                budget.expect(sizes.filter_size(name, value, rest, kwargs, budget.room()), what)
        result = function(*args, **kwargs)
        if _monotonic() > budget.deadline:
            budget.clock()
        if is_filter and result is not value:
            if type(result) is str or type(result) is Markup:
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
    """Jinja's compiler, with `~` and buffered output sent through the budget.

    `a ~ b` compiles to a join Jinja does not route through the environment, and what
    a macro or a `{% set %}` block writes waits in a list; both are counted here.
    """

    _buffered = CodeGenerator._FinalizeInfo(None, "environment.finalize_buffered(context.eval_ctx, ")

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        autoescape = "context.eval_ctx.autoescape" if frame.eval_ctx.volatile else str(bool(frame.eval_ctx.autoescape))
        self.write("environment.join_parts((")
        for argument in node.nodes:
            self.visit(argument, frame)
            self.write(", ")
        self.write(f"), {autoescape})")

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: CodeGenerator._FinalizeInfo) -> None:
        super()._output_child_pre(node, frame, finalize if frame.buffer is None else self._buffered)

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: CodeGenerator._FinalizeInfo) -> None:
        super()._output_child_post(node, frame, finalize if frame.buffer is None else self._buffered)


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


class CampaignLoader(jinja2.FileSystemLoader):
    """Loads templates from one folder only.

    Jinja's `FileSystemLoader` already refuses `..` and absolute names; it does
    follow symbolic links, so a link in someone else's campaign folder could put
    `~/.ssh/id_rsa` into every message. Such a link is refused.
    """

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, encoding="utf-8", followlinks=False)
        self.folder = folder
        self._root = folder.resolve()

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
        source, filename, uptodate = super().get_source(environment, template)
        real = Path(filename).resolve()
        if self._root not in real.parents:
            raise SecurityError(
                f"{self.folder.name}/{template} leads outside {self.folder.name}/ "
                "(a symbolic link?); templates are only read from the campaign's own folder"
            )
        return source, filename, uptodate


class BudgetedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox plus the work bounds described in the module docstring."""

    template_class = BudgetedTemplate
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _BudgetedCodeGenerator

    def __init__(self, **options: Any) -> None:
        options.setdefault("finalize", _finalize)
        super().__init__(**options)
        # Every filter and test, Jinja's and those set later (the renderer's wordwrap), is
        # wrapped once, when it is stored: lookups stay plain dict reads at C speed.
        self.filters = _Guarded(self.filters, is_filter=True)
        self.tests = _Guarded(self.tests, is_filter=False)
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
        elif operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if isinstance(count, int) and not isinstance(count, bool):
                    budget.expect(sizes.built_size(sequence) * count, "repeating a value")
        elif operator == "+":
            budget.expect(sizes.built_size(left) + sizes.built_size(right), "'+'")
        result = super().call_binop(context, operator, left, right)
        budget.charge(result)
        return result

    finalize_buffered = staticmethod(_finalize_buffered)

    def concat(self, parts: Iterable[str]) -> str:
        """The output of a macro, a call block or a `{% set %}` block, joined and counted."""
        budget = _current.get()
        if budget is None:
            return "".join(parts)
        parts = parts if isinstance(parts, list) else list(parts)
        budget.expect(sum(map(len, parts)), "a macro or block")
        text = "".join(parts)
        budget.charge(text)
        return text

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
