"""Shared fixtures: a copy of the example campaign, real SMTP servers, the CLI runner."""

from __future__ import annotations

import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from click.testing import CliRunner, Result

from newsletter.cli import main
from newsletter.inputs.settings import KNOWN_SETTINGS
from tests.smtpd import Server, running_server

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_FILES = ("announcement.md", "announcement.ru.md", "templates", "recipients.example.csv", ".env.example")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings of the machine running the tests must not leak into them."""
    for name in KNOWN_SETTINGS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def campaign(tmp_path: Path) -> Path:
    """A fresh copy of the repository's example campaign, with recipients.csv in place."""
    folder = tmp_path / "campaign"
    folder.mkdir()
    for name in EXAMPLE_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name)
        else:
            shutil.copyfile(source, folder / name)
    shutil.copyfile(folder / "recipients.example.csv", folder / "recipients.csv")
    return folder


@pytest.fixture
def example_addresses() -> list[str]:
    import csv

    with (ROOT / "recipients.example.csv").open(encoding="utf-8") as stream:
        return [row["email"] for row in csv.DictReader(stream)]


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def smtp() -> Iterator[Server]:
    """A plain SMTP server on loopback (tests set SMTP_SECURITY=none for it)."""
    with running_server() as server:
        yield server


@pytest.fixture
def smtp_tls(server_tls: ssl.SSLContext, ca_file: Path) -> Iterator[Server]:
    """STARTTLS required, AUTH PLAIN/LOGIN after it, a certificate signed by the test CA."""
    with running_server(tls=server_tls, ca_file=ca_file, auth={"mozer": "correct horse"}) as server:
        yield server


def write_env(folder: Path, values: dict[str, str]) -> Path:
    path = folder / ".env"
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()), encoding="utf-8")
    return path


def invoke(*args: str, input: str | None = None) -> Result:
    """Run the CLI in-process, as a user would type it."""
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def break_template(campaign: Path, before_line: int) -> str:
    """Put `{% if %}` (a syntax error) on line `before_line` of the HTML template; return the good text."""
    template = campaign / "templates" / "announcement.html"
    good = template.read_text(encoding="utf-8")
    lines = good.splitlines()
    lines.insert(before_line - 1, "{% if %}")
    template.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return good
