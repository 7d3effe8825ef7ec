"""The README's commands are tested: the quickstart really delivers to the outbox."""

from __future__ import annotations

import email
import re
import shlex
import shutil
import subprocess
import sys
from email import policy
from pathlib import Path

from tests.conftest import EXAMPLE_FILES, ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def quickstart_commands() -> list[str]:
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, re.S)


def test_quickstart_has_two_commands_main_job_then_tests() -> None:
    main_job, tests = quickstart_commands()[:2]
    assert "newsletter send --recipients recipients.example.csv" in main_job
    assert "pip install -e '.[test]'" in tests and tests.rstrip().endswith("pytest")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ".venv/bin/pytest" in ci and "pip install -q -e '.[test]'" in ci


def test_quickstart_main_job_delivers_every_example_recipient_to_the_outbox(tmp_path: Path) -> None:
    for name in EXAMPLE_FILES:
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, tmp_path / name)
    main_job = quickstart_commands()[0]
    # The install steps are the test environment's own; run the newsletter part as written.
    words = shlex.split(main_job.split("&&")[-1])
    assert words[0].endswith("newsletter")
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", *words[1:]], cwd=tmp_path, capture_output=True, text=True, check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "outbox" in done.stdout
    with (tmp_path / "recipients.example.csv").open(encoding="utf-8") as stream:
        expected = {line.split(",")[0].lower() for line in stream.read().splitlines()[1:] if line}
    files = list((tmp_path / "outbox").glob("*.eml"))
    assert {f.name.removesuffix(".eml").lower() for f in files} == expected
    for path in files:
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        assert message.is_multipart() and message["Message-ID"]


def test_the_python_example_checks_and_sends_the_campaign_in_this_folder(tmp_path: Path) -> None:
    """The README's "Use from Python" example, run as written in a copy of the example campaign."""
    section = README.split("## Use from Python", 1)[1].split("\n## ", 1)[0]
    [example] = re.findall(r"```python\n(.*?)\n```", section, re.S)
    for name in EXAMPLE_FILES:
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, tmp_path / name)
    shutil.copyfile(tmp_path / "recipients.example.csv", tmp_path / "recipients.csv")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no SMTP_HOST: the outbox
    done = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, check=False, env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    listed = len((tmp_path / "recipients.csv").read_text(encoding="utf-8").splitlines()) - 1
    assert done.stdout.strip() == f"{listed} sent, 0 failed, 0 done before"
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == listed
    again = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, check=False, env=env,
        timeout=300,
    )
    assert again.stdout.strip() == f"0 sent, 0 failed, {listed} done before"
