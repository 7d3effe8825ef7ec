"""Writing into a campaign folder without ever writing through a link the folder holds.

A campaign folder may come from a stranger, and so may the `outbox/`, `preview/`
and `.newsletter/` folders inside it. A shipped `outbox/ann@example.org.eml.part
-> ~/.bashrc` would have the quickstart's own `send` overwrite the user's shell
start-up file with a message the stranger wrote; a dangling
`.newsletter/journal.sqlite3` link would create the journal wherever it points.
So every file the tool writes there goes through this module:

- an output folder (`ensure_output_dir`) is created when missing and refused when
  it, or anything directly inside it, is a symbolic link: the user hears about the
  planted link before anything is written;
- a file (`OutputDir.write`) is written as a new temporary, `O_CREAT | O_EXCL |
  O_NOFOLLOW` in the folder opened by descriptor (itself `O_NOFOLLOW`), then renamed
  over its name: a rename replaces a link, it never writes through one. Subfolders
  (images beside a preview) are opened the same way, one level at a time.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from types import TracebackType

from newsletter.errors import InputError

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
TEMPORARY = ".part"  # suffix of a file being written; renamed once complete


def link_refused(path: Path) -> InputError:
    """The one refusal for a link where the tool writes, naming it and what to do."""
    try:
        target = f" (to {os.readlink(path)})"
    except OSError:
        target = ""
    return InputError(
        f"{path} is a symbolic link{target}; newsletter never writes through a link, which a "
        "campaign folder from someone else could use to overwrite your files: remove it and run again"
    )


def in_campaign(path: Path, root: Path) -> bool:
    """Whether `path` names a place inside the campaign folder `root` (resolved), before
    its own last part is followed: `preview -> /tmp/x` is in the campaign, and strict."""
    absolute = Path(os.path.abspath(path))
    place = absolute.parent.resolve() / absolute.name
    return place == root or root in place.parents


def ensure_output_dir(path: Path) -> Path:
    """`path` as a real folder that holds no link, created if missing; InputError otherwise."""
    if path.is_symlink():
        raise link_refused(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"{path} is not a folder; move it away and run again") from None
    except OSError as exc:
        raise InputError(f"cannot create the folder {path}: {exc.strerror}") from None
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_symlink():
                raise link_refused(Path(entry.path))
    return path


class OutputDir:
    """An output folder, checked by `ensure_output_dir` and held open by descriptor.

    Writes go relative to the descriptor, so that the folder cannot be swapped for
    a link between the check and the write. `strict=False` is for a folder the user
    named outside the campaign (`preview --out ~/site`): it may be a link and hold
    links, which are theirs; the files written into it are still new and no-follow.
    """

    def __init__(self, path: Path, *, strict: bool = True) -> None:
        if strict:
            ensure_output_dir(path)
        else:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(f"cannot create the folder {path}: {exc.strerror}") from None
        self.path = path
        self._fd: int | None = _open_dir(path, None, path, follow=not strict)

    def __enter__(self) -> OutputDir:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def write(self, name: str, data: bytes) -> Path:
        """Write `data` as `name` (relative, `/` between folders) atomically; return its path."""
        if self._fd is None:
            raise ValueError("the output folder is closed")
        *folders, base = name.split("/")
        if not base or any(part in ("", ".", "..") for part in folders) or base in (".", ".."):
            raise ValueError(f"not a plain relative file name: {name!r}")
        shown = self.path
        descriptor = self._fd
        opened: list[int] = []
        try:
            for folder in folders:
                shown = shown / folder
                with contextlib.suppress(FileExistsError):
                    os.mkdir(folder, dir_fd=descriptor)
                descriptor = _open_dir(folder, descriptor, shown)
                opened.append(descriptor)
            _write_new(descriptor, base, data, shown / base)
        finally:
            for fd in opened:
                os.close(fd)
        return shown / base


def _open_dir(name: str | Path, parent: int | None, shown: Path, *, follow: bool = False) -> int:
    try:
        return os.open(name, _DIRECTORY & ~os.O_NOFOLLOW if follow else _DIRECTORY, dir_fd=parent)
    except OSError as exc:
        if _is_link(name, parent):
            raise link_refused(shown) from None
        raise InputError(f"cannot open the folder {shown}: {exc.strerror}") from None


def _is_link(name: str | Path, parent: int | None) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except OSError:
        return False


def open_new_file(directory: int, name: str, *, shown: Path) -> int:
    """A descriptor for a new, empty file `name` in the folder open as `directory`.

    Never an existing file and never through a link (`O_EXCL | O_NOFOLLOW`); a
    regular file of that name, left by a run that was killed while writing, is
    removed first. `shown` is the path to name in a refusal.
    """
    try:
        return os.open(name, _NEW_FILE, 0o666, dir_fd=directory)
    except FileExistsError:
        if _is_link(name, directory):
            raise link_refused(shown) from None
    os.unlink(name, dir_fd=directory)
    return os.open(name, _NEW_FILE, 0o666, dir_fd=directory)


def _write_new(directory: int, name: str, data: bytes, shown: Path) -> None:
    """`name` in `directory` replaced by a file holding `data`: a temporary, then a rename."""
    if _is_link(name, directory):
        raise link_refused(shown)
    temporary = name + TEMPORARY
    fd = open_new_file(directory, temporary, shown=shown.with_name(temporary))
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
    except BaseException:
        os.unlink(temporary, dir_fd=directory)
        raise
    os.replace(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
