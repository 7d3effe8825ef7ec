"""The wheel and the sdist as a user gets them: what they hold, what they leave out, what they say.

Both are built offline (the build backend from the test environment) from a copy of
this checkout into which a developer's private files have been put: a filled-in `.env`,
the real list, an outbox, a journal, bytecode. None of that may ship; the starter
campaign that `newsletter init` copies and the preview page's static files must.
"""

from __future__ import annotations

import email.parser
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import newsletter
from tests.conftest import EXAMPLE_FILES, ROOT

DIST_NAME = "newsletter-once"
STEM = f"newsletter_once-{newsletter.__version__}"
STATIC = ROOT / "src" / "newsletter" / "web" / "preview" / "static"
PRIVATE = {
    ".env": "SMTP_PASSWORD=a-secret-that-must-not-ship\n",
    "recipients.csv": "email\nreal.person@example.org\n",
    "unsubscribed.csv": "email\ngone@example.org\n",
    "outbox/real.person@example.org.eml": "Subject: private\n\n",
    ".newsletter/journal.sqlite3": "journal",
    "preview/index.html": "<p>private</p>",
    "src/newsletter/__pycache__/run.cpython-311.pyc": "bytecode",
}


def _source_files(folder: Path) -> set[str]:
    """Files under `folder`, relative, as the checkout has them (no bytecode)."""
    return {
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(wheel, sdist) built from a copy of the checkout holding a developer's private files."""
    base = tmp_path_factory.mktemp("packaging")
    checkout = base / "checkout"
    shutil.copytree(
        ROOT,
        checkout,
        ignore=shutil.ignore_patterns(".git", ".venv", ".*_cache", "__pycache__", "dist", "build", "*.egg-info"),
    )
    for name, text in PRIVATE.items():
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text(text, encoding="utf-8")
    out = base / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(checkout)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [wheel] = out.glob("*.whl")
    [sdist] = out.glob("*.tar.gz")
    assert wheel.name == f"{STEM}-py3-none-any.whl"
    assert sdist.name == f"{STEM}.tar.gz"
    return wheel, sdist


def test_the_wheel_holds_the_package_the_starter_campaign_and_nothing_else(built: tuple[Path, Path]) -> None:
    wheel, _ = built
    package = {f"newsletter/{name}" for name in _source_files(ROOT / "src" / "newsletter")}
    starter: dict[str, Path] = {}
    for name in EXAMPLE_FILES:
        source = ROOT / name
        files = [f"{name}/{f}" for f in _source_files(source)] if source.is_dir() else [name]
        starter |= {f"newsletter/starter/{f}": ROOT / f for f in files}
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = {name for name in names if name.startswith(f"{STEM}.dist-info/")}
        assert names - metadata == package | set(starter)
        for name, source in starter.items():
            assert archive.read(name) == source.read_bytes(), name
    assert {"newsletter/starter/templates/announcement.html", "newsletter/starter/.env.example"} <= names
    static = {f"newsletter/web/preview/static/{path.name}" for path in STATIC.iterdir()}
    assert {"newsletter/web/preview/static/index.html", "newsletter/web/preview/static/app.js"} <= static <= names
    assert "newsletter/py.typed" in names
    for name in names:
        parts = name.split("/")
        assert parts[0] in {"newsletter", f"{STEM}.dist-info"}, name  # no tests/, benchmarks/, docs/
        assert not name.endswith((".png", ".pyc", ".sqlite3", ".eml")), name
        assert parts[-1] not in {".env", "recipients.csv", "unsubscribed.csv"}, name


def test_the_wheel_says_its_name_version_licence_and_command(built: tuple[Path, Path]) -> None:
    wheel, _ = built
    with zipfile.ZipFile(wheel) as archive:
        metadata = email.parser.Parser().parsestr(archive.read(f"{STEM}.dist-info/METADATA").decode("utf-8"))
        entry_points = archive.read(f"{STEM}.dist-info/entry_points.txt").decode("utf-8")
        licence = archive.read(f"{STEM}.dist-info/licenses/LICENSE")
    assert metadata["Name"] == DIST_NAME
    assert metadata["Version"] == newsletter.__version__
    assert metadata["Requires-Python"] == ">=3.11"
    assert metadata["License-Expression"] == "MIT"
    assert licence == (ROOT / "LICENSE").read_bytes()
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert metadata.get_payload().startswith("# newsletter")
    classifiers = metadata.get_all("Classifier") or []
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert "test" in (metadata.get_all("Provides-Extra") or [])
    assert "[console_scripts]\nnewsletter = newsletter.cli:main" in entry_points


def test_the_sdist_can_build_the_wheel_and_run_the_tests_but_holds_no_private_file(built: tuple[Path, Path]) -> None:
    _, sdist = built
    with tarfile.open(sdist) as archive:
        names = {name.removeprefix(f"{STEM}/") for name in archive.getnames()}
    for needed in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "PKG-INFO", *EXAMPLE_FILES):
        assert needed in names or any(name.startswith(needed + "/") for name in names), needed
    assert {"src/newsletter/__init__.py", "tests/conftest.py", "tests/test_packaging.py"} <= names
    for private in PRIVATE:
        assert private not in names, private
    assert not {name for name in names if name.startswith(("outbox/", ".newsletter/", "preview/"))}


def test_the_version_has_one_home_that_the_command_prints() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'dynamic = ["version"]' in pyproject and "\nversion =" not in pyproject
    done = subprocess.run([sys.executable, "-m", "newsletter", "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f"newsletter, version {newsletter.__version__}"
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"\n## {newsletter.__version__} " in changelog, "CHANGELOG.md has no entry for this version"
