"""Missing values in templates: a fallback catches them, printing one is an error.

Lists differ: one has a `name` column, the next only `email`. A template written
for both says so with a fallback, and the fallback must work whether the column
is empty or absent: `{{ recipient.name or "colleague" }}`,
`{{ recipient.name | default("colleague") }}` and `{% if recipient.organization %}`.
So a key missing from a mapping (`recipient.<column>`, `campaign.<key>`) is false
in a test and caught by `default`, like an empty value.

Printing one, iterating it or using it in arithmetic is still an error, as with
Jinja's `StrictUndefined`: a misspelt field with no fallback stops `check` and
`send` instead of leaving a blank in ten thousand inboxes. A name that is not
there at all (`recipeint.name`, a typo of the variable itself) is an error even
in a test. The error raised is `MissingField`, which remembers the mapping and
the key, so `newsletter.render.template_errors` can say which column or front
matter key is missing in the user's own terms.
"""

from __future__ import annotations

from typing import Any, NoReturn

import jinja2
from jinja2.utils import internalcode, missing


class MissingField(jinja2.UndefinedError):
    """A template printed (or otherwise used) `owner[name]`, which does not exist."""

    def __init__(self, message: str, *, owner: object, name: str) -> None:
        super().__init__(message)
        self.owner = owner
        self.name = name


class FieldUndefined(jinja2.StrictUndefined):
    """`StrictUndefined`, except that a mapping's missing key is false in a test (see the module)."""

    __slots__ = ()

    @internalcode
    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> NoReturn:
        name = self._undefined_name
        if self._undefined_obj is not missing and isinstance(name, str) and self._undefined_hint is None:
            raise MissingField(self._undefined_message, owner=self._undefined_obj, name=name)
        raise self._undefined_exception(self._undefined_message)

    # StrictUndefined binds its dunders to the failing method at class creation; they
    # are bound again here so that they reach the override above.
    __iter__ = __str__ = __len__ = _fail_with_undefined_error
    __eq__ = __ne__ = __hash__ = __contains__ = _fail_with_undefined_error
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _fail_with_undefined_error
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = _fail_with_undefined_error
    __mod__ = __rmod__ = __pos__ = __neg__ = __call__ = __getitem__ = _fail_with_undefined_error
    __lt__ = __le__ = __gt__ = __ge__ = __int__ = __float__ = __complex__ = _fail_with_undefined_error
    __pow__ = __rpow__ = _fail_with_undefined_error

    @internalcode
    def __getattr__(self, name: str) -> Any:
        if name[:2] == "__" and name[-2:] == "__":
            raise AttributeError(name)
        self._fail_with_undefined_error()

    def __bool__(self) -> bool:  # type: ignore[override]  # StrictUndefined's fails; ours answers
        if self._undefined_obj is missing:  # the variable itself is unknown: a typo, not a fallback
            self._fail_with_undefined_error()
        return False
