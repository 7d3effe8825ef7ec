"""What went wrong in a template, in the user's words: the one translator of Jinja's errors.

The pre-send check, `newsletter check`'s scan and the preview page all report a
failed render; they say the same thing because they all ask this module, which
turns "'dict object' has no attribute 'dept'" into the column the list lacks.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path

import jinja2

from newsletter.inputs.folder import ANNOUNCEMENT, RECIPIENTS
from newsletter.render.undefined import MissingField

_NO_ATTRIBUTE = re.compile(r"'dict object' has no attribute '([^']+)'")
_UNKNOWN_NAME = re.compile(r"^'([^']+)' is undefined$")


def template_location(exc: BaseException, templates: Path) -> tuple[Path | None, int | None]:
    """The deepest template file and line in a Jinja traceback."""
    lineno = getattr(exc, "lineno", None)
    filename = getattr(exc, "filename", None)
    if isinstance(exc, jinja2.TemplateSyntaxError) and filename:
        return Path(filename), lineno
    found: tuple[Path | None, int | None] = (None, None)
    for frame in traceback.extract_tb(exc.__traceback__):
        path = Path(frame.filename)
        if path.suffix and (path.parent == templates or templates in path.parents):
            found = (path, frame.lineno)
        elif frame.filename == "<template>":
            found = (Path(ANNOUNCEMENT), None)
    return found


def describe(
    exc: BaseException,
    *,
    fields: Mapping[str, object] | None = None,
    front_matter: Iterable[str] = (),
    list_name: str = RECIPIENTS,
) -> tuple[str, str]:
    """(finding code, reason) for an error a template raised.

    With the recipient's `fields` and the front matter's keys, a name that is in
    neither is said to be missing from the list, which is nearly always the cause.
    When the error says whose key it was (`MissingField`, from the renderer's
    undefined), the reason names the column or key, the list's columns and the fix.
    """
    if isinstance(exc, jinja2.TemplateNotFound):
        return "template-error", f"template not found: {exc.name}"
    if isinstance(exc, MissingField) and fields is not None and exc.owner is fields:
        return "missing-field", missing_column(exc.name, fields, list_name)
    if isinstance(exc, MissingField) and isinstance(front_matter, Mapping) and exc.owner is front_matter:
        return "missing-field", (
            f"uses campaign.{exc.name}, but the front matter of {ANNOUNCEMENT} has no '{exc.name}' key; "
            f'add it (`{exc.name} = "..."`), or write {_fallback("campaign", exc.name)}'
        )
    if isinstance(exc, jinja2.UndefinedError) and (unknown := _UNKNOWN_NAME.match(exc.message or "")):
        return "missing-field", (
            f"undefined value: no name '{unknown.group(1)}'; templates see campaign.<key>, "
            "recipient.<column> and unsubscribe_url (a typo?)"
        )
    if isinstance(exc, jinja2.UndefinedError):
        match = _NO_ATTRIBUTE.search(exc.message or "")
        name = match.group(1) if match else None
        if name is not None and fields is not None and name not in fields and name not in set(front_matter):
            return "missing-field", (
                f"undefined value: no field '{name}' (not a column of the recipients CSV, "
                "nor a key of the front matter)"
            )
        return "missing-field", f"undefined value: {exc.message}"
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return "template-error", f"template syntax error: {exc.message}"
    return "template-error", f"{type(exc).__name__}: {exc}"


def missing_column(name: str, fields: Mapping[str, object], list_name: str) -> str:
    """A template printed `recipient.<name>` and the list has no such column: say so, and both fixes."""
    columns = ", ".join(fields) or "none"
    return (
        f"uses recipient.{name}, but {list_name} has no '{name}' column (its columns: {columns}); "
        f"add the column, or write {_fallback('recipient', name)} for rows without it"
    )


def _fallback(owner: str, name: str) -> str:
    """The template expression that prints a value or, when it is missing or empty, a stand-in."""
    stand_in = "colleague" if name == "name" else ""
    return f'{{{{ {owner}.{name} or "{stand_in}" }}}}'
