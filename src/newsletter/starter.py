"""`newsletter init`: copy the example campaign into a new folder.

The files are the repository's own example campaign, shipped inside the wheel
(see `force-include` in pyproject.toml); a source checkout uses them in place.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from newsletter.errors import ConfigError, NewsletterError
from newsletter.inputs.folder import ENV_FILE, OUTBOX, PREVIEW, RECIPIENTS, STATE_DIR, UNSUBSCRIBED

STARTER_FILES = ("announcement.md", "announcement.ru.md", "templates", "recipients.example.csv", ".env.example")
GITIGNORE = ".gitignore"

# What a campaign folder keeps out of git, so that "git ignores .env" (README,
# .env.example) holds in a folder `init` made, not only in this project's own.
# unsubscribed.csv is deliberately not ignored: a clone without it would mail the
# people who asked to stop, while a clone without recipients.csv only cannot send.
IGNORED = (ENV_FILE, RECIPIENTS, f"{OUTBOX}/", f"{PREVIEW}/", f"{STATE_DIR}/")
_GITIGNORE_HEAD = f"""\
# Written by `newsletter init`: secrets, the list and what the tool writes stay out of git.
# {UNSUBSCRIBED} is kept on purpose (a copy without it would mail people who unsubscribed);
# if this repository is shared beyond those who send, ignore it too and keep it safe elsewhere.
"""


def starter_root() -> Path:
    packaged = Path(__file__).parent / "starter"
    if (packaged / "announcement.md").is_file():
        return packaged
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "announcement.md").is_file() and (checkout / "templates").is_dir():
        return checkout
    raise NewsletterError("the starter campaign is missing from this installation; reinstall newsletter")


def init_campaign(folder: Path) -> list[Path]:
    """Write the starter campaign into `folder`; never overwrites an existing campaign."""
    if (folder / "announcement.md").exists():
        raise ConfigError(f"{folder / 'announcement.md'} already exists; choose an empty folder")
    root = starter_root()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in STARTER_FILES:
        source, target = root / name, folder / name
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(source, target)
        written.append(target)
    if _write_gitignore(folder / GITIGNORE):
        written.append(folder / GITIGNORE)
    return written


def _write_gitignore(path: Path) -> bool:
    """Write the campaign's `.gitignore`, or add the lines an existing one lacks; False if it had them all.

    An existing file (the folder is already a repository) is extended, never replaced;
    a link is left alone rather than written through.
    """
    if path.is_symlink():
        return False
    existing = path.read_text(encoding="utf-8") if path.is_file() else None
    present = {line.strip().lstrip("/") for line in (existing or "").splitlines()}
    missing = [name for name in IGNORED if name not in present and name.rstrip("/") not in present]
    if not missing:
        return False
    if existing is None:
        path.write_text(_GITIGNORE_HEAD + "".join(f"{name}\n" for name in missing), encoding="utf-8")
    else:
        separator = "" if not existing or existing.endswith("\n") else "\n"
        with path.open("a", encoding="utf-8") as file:
            file.write(separator + "# added by `newsletter init`\n" + "".join(f"{name}\n" for name in missing))
    return True
