"""The preview server over real HTTP on loopback: its JSON, its refusals, its errors, its CLI."""

from __future__ import annotations

import csv
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest

from newsletter import project as api
from newsletter.inputs.folder import CampaignFolder
from newsletter.web.preview import LiveCampaign, PreviewServer, Source, running
from tests.conftest import ROOT, break_template, invoke


@pytest.fixture
def server(campaign: Path) -> Iterator[PreviewServer]:
    source = Source(CampaignFolder(campaign), load=lambda: api.load_project(campaign, environ={}))
    with running(LiveCampaign(source)) as preview:
        yield preview


class Answer:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()

    def json(self) -> Any:
        assert self.headers["Content-Type"] == "application/json; charset=utf-8"
        return json.loads(self.body)


def request(
    server: PreviewServer, path: str, *, method: str = "GET", host: str | None = None, body: bytes | None = None
) -> Answer:
    """Send `path` exactly as written: no client-side normalisation of `..` or `%2e`."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", host if host is not None else f"127.0.0.1:{server.port}")
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        return Answer(connection.getresponse())
    finally:
        connection.close()


def message(server: PreviewServer, email: str = "") -> Any:
    answer = request(server, f"/api/message?email={email}")
    assert answer.status == 200
    return answer.json()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


# -- what the page gets ------------------------------------------------------------------


def test_page_and_its_files_are_served_with_security_headers(server: PreviewServer) -> None:
    page = request(server, "/")
    assert page.status == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert b'src="/static/app.js"' in page.body
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    for path, kind in (("/static/app.js", "text/javascript"), ("/static/app.css", "text/css")):
        answer = request(server, path)
        assert answer.status == 200 and answer.headers["Content-Type"].startswith(kind)
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    # Nothing the page needs comes from elsewhere: no absolute URLs to other hosts.
    for path in ("/", "/static/app.js", "/static/app.css"):
        assert not re.search(rb"(src|href)=\"https?://|url\(\s*['\"]?https?://|@import", request(server, path).body)


def test_each_example_recipient_gets_their_own_message(server: PreviewServer, example_addresses: list[str]) -> None:
    with (ROOT / "recipients.example.csv").open(encoding="utf-8") as stream:
        russian = {row["email"] for row in csv.DictReader(stream) if row["lang"] == "ru"}
    assert russian
    for position, address in enumerate(example_addresses):
        data = message(server, address)
        assert data["error"] is None
        assert data["recipient"]["email"] == address
        assert data["recipient"]["position"] == position
        shown = data["message"]
        name = data["recipient"]["name"]
        greeting = f"Здравствуйте, {name}!" if address in russian else f"Dear {name or 'colleague'},"
        assert shown["text"].startswith(greeting)
        assert shown["to"] == [{"name": name, "address": address}]
        assert shown["headers"]["To"].endswith(f"<{address}>") if name else shown["headers"]["To"] == address
        assert shown["headers"]["From"] == "Sergei Mozer <sergei.mozer@example.org>"
        assert shown["headers"]["Reply-To"] == "sergei.mozer@example.org"
        assert shown["subject"] == (
            "Новая книга: «Развитие института цифровой таможни»"
            if address in russian
            else "New book: Development of the Institute of Digital Customs"
        )
        assert shown["source"].startswith(("From:", "Content-Type:", "MIME-Version:", "To:", "Subject:"))
    assert data["next"] is None and data["previous"] == example_addresses[-2]


def test_no_address_means_the_first_recipient_and_an_unknown_one_too(server: PreviewServer) -> None:
    assert message(server)["recipient"]["email"] == "anna.petrova@academy.example.org"
    assert message(server, "nobody@example.org")["recipient"]["position"] == 0
    assert message(server, "JUERGEN.MUELLER@zoll.example.com")["recipient"]["line"] == 6


def test_headers_are_decoded_as_a_client_shows_them(server: PreviewServer) -> None:
    data = message(server, "anna.petrova@academy.example.org")["message"]
    assert "=?utf-8?" in data["source"]  # the wire form is encoded...
    assert data["headers"]["To"] == "Анна Петрова <anna.petrova@academy.example.org>"  # ...the page shows it readable
    assert data["headers"]["List-Unsubscribe"] is None


def test_search_by_name_or_address(server: PreviewServer) -> None:
    def found(query: str) -> list[str]:
        data = request(server, f"/api/recipients?q={query}").json()
        assert data["count"] == 12
        return [m["email"] for m in data["matches"]]

    assert len(found("")) == 12
    assert found("m%C3%BCller") == ["juergen.mueller@zoll.example.com"]  # "müller", by name
    assert found("%D0%BF%D0%B5%D1%82%D1%80%D0%BE%D0%B2%D0%B0") == ["anna.petrova@academy.example.org"]  # "петрова"
    assert found("rtc") == ["marie-claire.lefevre@rtc.wco.example.org", "aram.hakobyan@rtc.example.org"]
    assert found("nobody-matches-this") == []


def test_search_on_a_large_list_returns_a_bounded_page(campaign: Path, server: PreviewServer) -> None:
    rows = "".join(f"user{i}@example.org,User {i},Org\n" for i in range(3000))
    (campaign / "recipients.csv").write_text("email,name,organization\n" + rows, encoding="utf-8")
    data = request(server, "/api/recipients?q=user").json()
    assert data["count"] == data["total"] == 3000
    assert len(data["matches"]) == 200 and data["truncated"]
    assert request(server, "/api/recipients?q=user2999").json()["matches"][0]["line"] == 3001


def test_html_is_served_sandboxed_without_scripts(campaign: Path, server: PreviewServer) -> None:
    block = "{% block content %}"
    edit(campaign / "templates" / "announcement.html", block, block + "<script>alert(1)</script>")
    answer = request(server, "/message.html?email=pavel.novak@vse.example.com")
    assert answer.status == 200
    assert "Dear Pavel Novák," in answer.body.decode("utf-8")
    csp = answer.headers["Content-Security-Policy"]
    assert csp.startswith("sandbox ") and "allow-scripts" not in csp and "allow-same-origin" not in csp
    assert "default-src 'none'" in csp and "script-src" not in csp  # scripts fall back to 'none'
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_eml_download_is_the_message_the_page_shows(server: PreviewServer) -> None:
    address = "sofia.gonzalez@example.com"
    shown = message(server, address)["message"]
    answer = request(server, f"/message.eml?email={address}")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "message/rfc822"
    assert answer.headers["Content-Disposition"].startswith(f'attachment; filename="{address}.eml"')
    assert answer.body.decode("utf-8") == shown["source"]
    parsed = message_from_bytes(answer.body, policy=policy.default)
    assert parsed["Message-ID"] == shown["headers"]["Message-ID"]


# -- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/announcement.md",
        "/recipients.csv",
        "/templates/base.html",
        "/../announcement.md",
        "/../../../../etc/passwd",
        "/static/../announcement.md",
        "/static/../../pyproject.toml",
        "/static/..%2f..%2fannouncement.md",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/static/%2e%2e/%2e%2e/recipients.csv",
        "//etc/passwd",
        "/static/app.js/../../recipients.csv",
        "/static/",
        "/static/index.html/..",
        "/message.html/../recipients.csv",
    ],
)
def test_paths_outside_the_page_are_refused(server: PreviewServer, path: str) -> None:
    answer = request(server, path)
    assert answer.status == 404
    assert b"+++" not in answer.body and b"email,name" not in answer.body and b"root:" not in answer.body


def test_recipient_parameter_cannot_reach_files(server: PreviewServer) -> None:
    for value in ("../../recipients.csv", "/etc/passwd", "..%2f..%2fannouncement.md"):
        for path in ("/message.html", "/message.eml"):
            assert request(server, f"{path}?email={value}").status == 404


def test_bound_to_loopback_only(server: PreviewServer) -> None:
    assert server.server_address[0] == "127.0.0.1"
    assert server.url == f"http://127.0.0.1:{server.port}/"
    others = ["127.0.0.2"]  # another loopback address: refused when bound to 127.0.0.1 alone
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # picks the outgoing interface; sends nothing
            others.append(probe.getsockname()[0])
        except OSError:
            pass  # no non-loopback interface on this machine
    for address in others:
        if address != "127.0.0.1":
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((address, server.port), timeout=2).close()
    # ::1 is refused, or there is no IPv6 loopback at all: either way, no answer.
    with pytest.raises(OSError, match=r"Connection refused|Cannot assign|not supported|unreachable"):
        socket.create_connection(("::1", server.port), timeout=2).close()


def test_foreign_host_headers_are_refused(server: PreviewServer) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 still sends its own Host."""
    port = server.port
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}", "", f"127.0.0.1:{port + 1}"):
        answer = request(server, "/api/message", host=host)
        assert answer.status == 403, host
        assert b"Dear" not in answer.body
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", "127.0.0.1"):
        assert request(server, "/api/version", host=host).status == 200, host


def test_only_get_and_head(server: PreviewServer) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        answer = request(server, "/api/message", method=method, body=b"{}")
        assert answer.status == 405, method
        assert answer.headers["Allow"] == "GET, HEAD"
    head = request(server, "/", method="HEAD")
    assert head.status == 200 and head.body == b"" and int(head.headers["Content-Length"]) > 0


# -- live state and errors ---------------------------------------------------------------


def test_version_follows_every_input(campaign: Path, server: PreviewServer) -> None:
    def version() -> str:
        return str(request(server, "/api/version").json()["version"])

    seen = {version()}
    assert version() in seen  # stable while nothing changes
    for path, old, new in (
        (campaign / "announcement.md", "New book", "A new book"),
        (campaign / "templates" / "announcement.html", "Dear", "Hello"),
        (campaign / "templates" / "style.css", "#1a5fa8", "#123456"),
        (campaign / "recipients.csv", "Pavel Novák", "Pavel Novak"),
    ):
        edit(path, old, new)
        assert version() not in seen, path.name
        seen.add(version())
    (campaign / ".env").write_text("NEWSLETTER_UNSUBSCRIBE_MAILTO=unsubscribe@example.org\n", encoding="utf-8")
    assert version() not in seen
    data = message(server, "pavel.novak@vse.example.com")
    assert data["recipient"]["name"] == "Pavel Novak"
    assert data["message"]["text"].startswith("Dear Pavel Novak,")
    assert "Hello Pavel Novak," in request(server, "/message.html?email=pavel.novak@vse.example.com").body.decode()
    assert "#123456" in request(server, "/message.html?email=pavel.novak@vse.example.com").body.decode()
    assert data["message"]["subject"].startswith("A new book")
    assert data["message"]["headers"]["List-Unsubscribe"] == "<mailto:unsubscribe@example.org?subject=unsubscribe>"


def test_template_syntax_error_is_json_with_file_and_line(campaign: Path, server: PreviewServer) -> None:
    template = campaign / "templates" / "announcement.html"
    good = break_template(campaign, 7)
    data = message(server, "pavel.novak@vse.example.com")
    assert data["message"] is None
    error = data["error"]
    assert (error["kind"], error["path"], error["line"]) == ("template", "templates/announcement.html", 7)
    assert "syntax error" in error["reason"]
    assert data["recipient"]["email"] == "pavel.novak@vse.example.com"  # the picker keeps working
    assert request(server, "/api/recipients").json()["count"] == 12
    assert request(server, "/message.html?email=pavel.novak@vse.example.com").status == 422
    template.write_text(good, encoding="utf-8")
    assert message(server, "pavel.novak@vse.example.com")["error"] is None


def test_missing_field_names_file_line_and_recipient(campaign: Path, server: PreviewServer) -> None:
    edit(campaign / "templates" / "announcement.txt", "{{ recipient.organization }}", "{{ recipient.department }}")
    data = message(server, "juergen.mueller@zoll.example.com")
    error = data["error"]
    assert error["path"] == "templates/announcement.txt" and error["line"] == 9
    assert "department" in error["reason"]
    assert error["recipient"] == "juergen.mueller@zoll.example.com, recipients line 6"
    checks = {item["code"]: item for item in data["checks"]["items"]}
    assert checks["missing-field"]["location"] == "templates/announcement.txt:9"
    assert data["checks"]["counts"]["error"] >= 1


def test_broken_csv_and_announcement_are_shown_not_raised(campaign: Path, server: PreviewServer) -> None:
    csv_file = campaign / "recipients.csv"
    csv_file.write_text("name,organization\nAnna,Academy\n", encoding="utf-8")
    error = message(server)["error"]
    assert error["path"] == "recipients.csv" and error["line"] == 1 and "no 'email' column" in error["reason"]
    csv_file.write_text("email,name,organization\nnot-an-address,Bad,\nok@example.org,Ok,\n", encoding="utf-8")
    data = message(server)
    assert data["error"] is None and data["recipient"]["email"] == "ok@example.org"
    invalid = [item for item in data["checks"]["items"] if item["code"] == "invalid-row"]
    assert invalid[0]["location"] == "recipients.csv:2"
    csv_file.write_text("email,name,organization\n", encoding="utf-8")
    error = message(server)["error"]
    assert (error["path"], error["reason"]) == ("recipients.csv", "the list has no valid recipient")
    (campaign / "announcement.md").write_text("no front matter\n", encoding="utf-8")
    error = message(server)["error"]
    assert (error["kind"], error["path"], error["line"]) == ("input", "announcement.md", 1)


def test_missing_csv_says_what_to_do_and_is_picked_up_when_created(campaign: Path, server: PreviewServer) -> None:
    csv_file = campaign / "recipients.csv"
    csv_file.unlink()
    error = message(server)["error"]
    assert (error["path"], error["reason"]) == ("recipients.csv", "file not found")
    assert "recipients.example.csv" in error["hint"]
    csv_file.write_text("email,name,organization\nfirst@example.org,First,\n", encoding="utf-8")
    data = message(server)
    assert data["error"] is None and data["message"]["text"].startswith("Dear First,")


def test_checks_panel_data_for_the_example(server: PreviewServer) -> None:
    checks = message(server)["checks"]
    assert checks["counts"] == {"error": 0, "warning": 2, "info": 0}
    assert {item["code"] for item in checks["items"]} == {"unsubscribe-header", "unsubscribe-link"}


# -- the command line --------------------------------------------------------------------


def test_cli_serves_until_interrupted(campaign: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "newsletter", "--campaign", str(campaign), "preview", "--serve", "--port", "0"]
    command += ["--recipient", "olga.smirnova@research.example.org"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as process:
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            match = re.search(r"http://127\.0\.0\.1:(\d+)/\?email=olga\.smirnova@research\.example\.org", first)
            assert match, first
            connection = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=10)
            connection.request("GET", "/api/message?email=olga.smirnova@research.example.org")
            data = json.loads(connection.getresponse().read())
            connection.close()
            assert data["message"]["text"].startswith("Здравствуйте, Ольга Смирнова!")  # her language: ru
        finally:
            process.send_signal(signal.SIGINT)
            try:
                output, _ = process.communicate(timeout=10)
            except subprocess.TimeoutExpired:  # fail, not hang: Popen's exit waits with no timeout
                process.kill()
                output, _ = process.communicate(timeout=10)
                pytest.fail(f"the server did not stop on SIGINT:\n{output}")
    assert process.returncode == 0, output
    assert "Stopped." in output and "Traceback" not in output


def test_cli_refuses_a_port_in_use(campaign: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke("--campaign", str(campaign), "preview", "--serve", "--port", str(port))
    assert result.exit_code == 2
    assert f"port {port} on 127.0.0.1 is in use" in result.output


def test_cli_has_no_way_to_listen_on_other_interfaces(campaign: Path) -> None:
    result = invoke("--campaign", str(campaign), "preview", "--serve", "--host", "0.0.0.0")  # noqa: S104
    assert result.exit_code == 2 and "No such option" in result.output


def test_cli_serve_and_out_are_exclusive(campaign: Path, tmp_path: Path) -> None:
    result = invoke("--campaign", str(campaign), "preview", "--serve", "--out", str(tmp_path / "x"))
    assert result.exit_code == 2 and "--out" in result.output


def test_server_keeps_answering_while_files_change(campaign: Path, server: PreviewServer) -> None:
    template = campaign / "templates" / "announcement.html"
    good = template.read_text(encoding="utf-8")
    deadline = time.monotonic() + 1
    flip = False
    while time.monotonic() < deadline:
        template.write_text(good if flip else good.replace("{% block content %}", "{% block content %}{% if %}"))
        flip = not flip
        assert request(server, "/api/message").status == 200
    template.write_text(good, encoding="utf-8")
    assert message(server)["error"] is None


def test_a_long_cyrillic_name_is_shown_as_written(campaign: Path, server: PreviewServer) -> None:
    name = "Наталья Александровна Кузнецова"
    (campaign / "recipients.csv").write_text(f"email,name,organization\nn.k@example.org,{name},Org\n", encoding="utf-8")
    shown = message(server)["message"]
    assert "=?utf-8?b?" in shown["source"]
    assert shown["to"] == [{"name": name, "address": "n.k@example.org"}]
    assert shown["headers"]["To"] == f"{name} <n.k@example.org>"


def test_missing_csv_is_no_empty_list(campaign: Path, server: PreviewServer) -> None:
    (campaign / "recipients.csv").unlink()
    recipients = request(server, "/api/recipients").json()
    assert recipients["unavailable"] is True and recipients["count"] == 0
    assert message(server)["error"]["reason"] == "file not found"
    assert request(server, "/message.eml").status == 404
