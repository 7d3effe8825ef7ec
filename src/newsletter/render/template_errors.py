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

from newsletter.inputs.folder import ANNOUNCEMENT

_NO_ATTRIBUTE = re.compile(r"'dict object' has no attribute '([^']+)'")


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
    exc: BaseException, *, fields: Mapping[str, object] | None = None, front_matter: Iterable[str] = ()
) -> tuple[str, str]:
    """(finding code, reason) for an error a template raised.

    With the recipient's `fields` and the front matter's keys, a name that is in
    neither is said to be missing from the list, which is nearly always the cause.
    """
    if isinstance(exc, jinja2.TemplateNotFound):
        return "template-error", f"template not found: {exc.name}"
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
