"""Helpers for fault tests: campaigns with generated lists, and `newsletter` as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def write_list(folder: Path, count: int, *, domain: str = "example.org") -> list[str]:
    """A recipients.csv of `count` distinct addresses; returns them in order."""
    addresses = [f"reader{i:05d}@{domain}" for i in range(count)]
    lines = ["email,name,organization"] + [f"{a},Reader {i},Org {i % 7}" for i, a in enumerate(addresses)]
    (folder / "recipients.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return addresses


def cli_env(settings: dict[str, str]) -> dict[str, str]:
    """The environment for a subprocess: this one's, minus any real settings, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "NEWSLETTER_"))}
    env.update(settings)
    return env


def start(folder: Path, settings: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--campaign", str(folder), "send", "--yes", *args],
        env=cli_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def run(
    folder: Path, settings: dict[str, str], *args: str, command: str = "send", timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    extra = ["--yes"] if command == "send" else []
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "--campaign", str(folder), command, *extra, *args],
        env=cli_env(settings),
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=timeout,
        check=False,
    )
