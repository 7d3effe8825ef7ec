"""`newsletter completion SHELL`: the printed script really completes commands and options.

bash runs the script as a user's ~/.bashrc would and asks it for completions; zsh and
fish may be missing on the machine, so for them the script's registration is checked
and the command answers their completion protocol directly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import invoke

BIN = Path(sys.executable).parent  # where the test environment's `newsletter` command lives


def _environment(**extra: str) -> dict[str, str]:
    return {"PATH": f"{BIN}{os.pathsep}/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), **extra}


def _bash_completes(words: list[str], script: str, cwd: Path) -> list[str]:
    program = (
        f"{script}\n"
        f"COMP_WORDS=({' '.join(words)}); COMP_CWORD={len(words) - 1}; COMPREPLY=()\n"
        '_newsletter_completion newsletter; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        cwd=cwd,
        env=_environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


INSTALLED = pytest.mark.skipif(
    shutil.which("newsletter", path=str(BIN)) is None, reason="the newsletter command is not installed here"
)


@INSTALLED
def test_the_bash_script_completes_commands_and_options(tmp_path: Path) -> None:
    result = invoke("completion", "bash")
    assert result.exit_code == 0, result.output
    assert "complete -o nosort -F _newsletter_completion newsletter" in result.output
    assert _bash_completes(["newsletter", "s"], result.output, tmp_path) == ["send", "status"]
    assert set(_bash_completes(["newsletter", "send", "--re"], result.output, tmp_path)) == {
        "--recipients",
        "--resend-unknown",
        "--retry-failed",
        "--retry-delay",
        "--reconnect-for",
    }
    assert _bash_completes(["newsletter", "completion", ""], result.output, tmp_path) == ["bash", "zsh", "fish"]


@pytest.mark.parametrize(
    ("shell", "registration"),
    [("zsh", "compdef _newsletter_completion newsletter"), ("fish", "complete --no-files --command newsletter")],
)
def test_the_zsh_and_fish_scripts_register_for_the_newsletter_command(shell: str, registration: str) -> None:
    result = invoke("completion", shell)
    assert result.exit_code == 0, result.output
    assert registration in result.output
    assert f"_NEWSLETTER_COMPLETE={shell}_complete" in result.output


@INSTALLED
@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_the_command_answers_the_zsh_and_fish_protocols(shell: str, tmp_path: Path) -> None:
    words = "newsletter st"
    incomplete = {"zsh": {"COMP_CWORD": "1"}, "fish": {"COMP_CWORD": "st"}}[shell]
    done = subprocess.run(
        [str(BIN / "newsletter")],
        cwd=tmp_path,
        env=_environment(_NEWSLETTER_COMPLETE=f"{shell}_complete", COMP_WORDS=words, **incomplete),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "status" in done.stdout and "send" not in done.stdout


def test_an_unknown_shell_is_a_usage_error() -> None:
    result = invoke("completion", "tcsh")
    assert result.exit_code == 2
    assert "'tcsh' is not one of 'bash', 'zsh', 'fish'" in result.output
