"""Sizes as every report prints them: binary units, named as such (1 KiB = 1,024 bytes).

`check`'s table, its findings and the errors beside them once mixed `16.5 KB` and
`16 KB (16,848 bytes)` for one message, and called 1,024 bytes a KB; one function
now says every size, the same way.
"""

from __future__ import annotations

KIB = 1024


def human_size(size: float) -> str:
    """`812 bytes`, `16.5 KiB`, `102.0 KiB`, `2.0 MiB`, `1.2 GiB`: one decimal from a KiB up."""
    if size < KIB:
        return f"{int(size):,} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        size /= KIB
        if size < KIB or unit == "GiB":
            return f"{size:,.1f} {unit}"
    raise AssertionError("unreachable")
