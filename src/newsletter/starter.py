"""`newsletter init`: copy the example campaign into a new folder.

The files are the repository's own example campaign, shipped inside the wheel
(see `force-include` in pyproject.toml); a source checkout uses them in place.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from newsletter.errors import ConfigError, NewsletterError

STARTER_FILES = ("announcement.md", "templates", "recipients.example.csv", ".env.example")


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
    return written
