"""The Jinja sandbox templates run in: no Python internals, no files outside `templates/`, bounded work.

A campaign folder may come from someone else, and its templates run once per
recipient. Jinja's `ImmutableSandboxedEnvironment` already keeps templates away
from Python internals (`__class__`, `__globals__`) and from mutating the data
they are given; it does not bound the work a template does. This module adds
the bounds, per render of one template for one recipient:

- loop iterations (`MAX_LOOP_ITERATIONS`, over every `{% for %}`, nested or not);
- wall-clock time (`MAX_RENDER_SECONDS`), checked every so many loop steps and calls;
- output size (`MAX_OUTPUT_CHARS`), checked as the template streams its output;
- repetition and powers (`"x" * n`, `n ** m`) that would build a huge value in one step;
- recursion, which Python bounds and the renderer reports with the template's file and line.

The checks are counters and one clock read per thousand steps, so the example
campaign renders as fast as in a plain sandbox. What they cannot stop is a single
C-level operation that is slow or huge on its own (a filter handed an enormous
argument): templates from strangers still deserve a read before a send.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable, Iterator
from contextvars import ContextVar
from itertools import islice
from types import CodeType
from typing import Any, cast

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_LOOP_ITERATIONS = 250_000
MAX_RENDER_SECONDS = 5.0
MAX_OUTPUT_CHARS = 10_000_000
MAX_POWER_BITS = 64 * 1024
_CHECK_EVERY = 1024  # steps between clock reads: cheap, and still well under a second
_OUTPUT_BLOCK = 256  # output chunks between size checks
_BUDGET_FILTER = "_newsletter_budget"
_DICT_NAMES = frozenset(dir(dict))


class TemplateBudgetExceeded(SecurityError):
    """A template did more work than any announcement needs: a loop or recursion gone wrong."""


class _Budget:
    """The work one render may still do; one per `Template.render` call, per thread."""

    __slots__ = ("deadline", "iterations", "steps")

    def __init__(self) -> None:
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS
        self.iterations = 0
        self.steps = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps % _CHECK_EVERY == 0 and time.monotonic() > self.deadline:
            raise TemplateBudgetExceeded(
                f"rendering took longer than {MAX_RENDER_SECONDS:g} s for one recipient; "
                "is there an enormous loop or a runaway recursion?"
            )

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
            return self.environment.concat(parts)
        finally:
            _current.reset(token)


class BudgetedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox plus the work bounds described in the module docstring."""

    template_class = BudgetedTemplate
    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
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
        """Every call from a template (macros included) counts towards the time budget."""
        budget = _current.get()
        if budget is not None:
            budget.step()
        return super().call(context, obj, *args, **kwargs)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_repeat(left, right)
            _check_repeat(right, left)
        elif operator == "**":
            _check_power(left, right)
        return super().call_binop(context, operator, left, right)


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


def _check_power(base: Any, exponent: Any) -> None:
    ints = isinstance(base, int) and isinstance(exponent, int) and exponent > 0
    if ints and exponent * abs(base).bit_length() > MAX_POWER_BITS:
        raise TemplateBudgetExceeded(f"{base} ** {exponent} is too large a number for a template")
