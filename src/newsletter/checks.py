"""Content checks: what a finished message would get wrong in inboxes, as structured findings.

`newsletter check` prints these and the preview page shows them in its warnings
panel, so both say the same thing. Each check is a small function over one
rendered `Sample`; add a check by writing one and listing it in `MESSAGE_CHECKS`.
Findings never stop a send on their own: what must stop it (invalid rows, template
errors) is `api.preflight`'s job.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import jinja2

from newsletter.api import Project, find_recipient
from newsletter.campaign import unused_fields
from newsletter.errors import InputError, TemplateError
from newsletter.message import Outgoing
from newsletter.recipients import DuplicateRow, InvalidRow, Recipient
from newsletter.render import Rendered, make_environment, template_location

Level = Literal["error", "warning", "info"]
LEVELS: tuple[Level, ...] = ("error", "warning", "info")

# Gmail hides everything after the first ~102 KB of a message's HTML behind
# "[Message clipped]", including the footer with the unsubscribe link.
GMAIL_CLIP_BYTES = 102 * 1024
GMAIL_NEAR_BYTES = 90 * 1024
# RFC 5322's recommended line length; longer subjects are cut off in most inbox lists.
SUBJECT_CHARS = 78
# The recipients scan renders the templates without CSS inlining, about 0.3 ms a row:
# the first rows find a missing column at once; `newsletter check` renders them all.
SCAN_ROWS = 500
SCAN_FAILURES = 20


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: how bad, a stable code, what to do, and where when that is known."""

    level: Level
    code: str
    message: str
    path: str | None = None
    line: int | None = None
    recipient: str | None = None

    @property
    def location(self) -> str:
        if self.path is None:
            return ""
        return f"{self.path}:{self.line}" if self.line is not None else self.path

    def __str__(self) -> str:
        where = f"{self.location}: " if self.path else ""
        who = f" ({self.recipient})" if self.recipient else ""
        return f"{where}{self.message}{who}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "code": self.code,
            "message": self.message,
            "path": self.path,
            "line": self.line,
            "recipient": self.recipient,
            "location": self.location,
        }


def relative(path: Path | None, folder: Path) -> str | None:
    """A path as the user knows it: relative to the campaign folder when inside it."""
    if path is None:
        return None
    try:
        return path.resolve().relative_to(folder).as_posix()
    except ValueError:
        return path.name if path.is_absolute() else path.as_posix()


def who(recipient: Recipient) -> str:
    return f"{recipient.email}, recipients line {recipient.line}"


# -- where a piece of the output came from -------------------------------------------


class Sources:
    """The campaign's own text files, read once, to point a finding at a file and line."""

    def __init__(self, project: Project) -> None:
        self.folder = project.folder
        files = [project.campaign.path]
        templates = project.campaign.templates_dir
        if templates.is_dir():
            files += sorted(p for p in templates.rglob("*") if p.is_file())
        self._lines: list[tuple[str, list[str]]] = []
        for path in files:
            try:
                text = path.read_text(encoding="utf-8-sig")
            except (OSError, UnicodeDecodeError):
                continue
            self._lines.append((relative(path, self.folder) or path.name, text.splitlines()))

    def find(self, pattern: str | re.Pattern[str]) -> tuple[str | None, int | None]:
        """The first file and line holding `pattern` (a literal string or a regex)."""
        for name, lines in self._lines:
            for number, line in enumerate(lines, start=1):
                if isinstance(pattern, str):
                    if pattern in line:
                        return name, number
                elif pattern.search(line):
                    return name, number
        return None, None


# -- one rendered message, taken apart once ------------------------------------------


@dataclass
class Link:
    href: str | None
    text: str = ""


@dataclass
class Image:
    src: str | None
    has_alt: bool


class _HtmlFacts(HTMLParser):
    """Links and images of the final HTML; the checks need nothing else from it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[Link] = []
        self.images: list[Image] = []
        self._open: list[Link] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "a" and "href" in attributes:
            link = Link(attributes["href"] or "")
            self.links.append(link)
            self._open.append(link)
        elif tag == "img":
            self.images.append(Image(attributes.get("src"), "alt" in attributes))

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for link in self._open:
            link.text = " ".join((link.text + " " + data).split())


@dataclass
class Sample:
    """One recipient's finished message, as the content checks see it.

    `html_bytes` is this message's HTML size unless the caller knows a larger one
    (a full preflight measures every recipient's).
    """

    project: Project
    recipient: Recipient
    rendered: Rendered
    message: EmailMessage
    sources: Sources
    html_bytes: int
    links: list[Link] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        project: Project,
        recipient: Recipient,
        rendered: Rendered,
        outgoing: Outgoing,
        *,
        sources: Sources | None = None,
        largest_html: int = 0,
    ) -> Sample:
        parsed = message_from_bytes(outgoing.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        facts = _HtmlFacts()
        facts.feed(rendered.html)
        facts.close()
        return cls(
            project=project,
            recipient=recipient,
            rendered=rendered,
            message=parsed,
            sources=sources or Sources(project),
            html_bytes=max(len(rendered.html.encode("utf-8")), largest_html),
            links=facts.links,
            images=facts.images,
        )

    def finding(
        self, level: Level, code: str, message: str, where: str | re.Pattern[str] | None = None
    ) -> Finding:
        path, line = self.sources.find(where) if where else (None, None)
        return Finding(level, code, message, path, line)


MessageCheck = Callable[[Sample], Iterable[Finding]]


# -- the message checks --------------------------------------------------------------


def html_size(sample: Sample) -> Iterator[Finding]:
    size = sample.html_bytes
    if size > GMAIL_CLIP_BYTES:
        yield sample.finding(
            "warning",
            "gmail-clipping",
            f"the HTML is {size / 1024:.1f} KB: Gmail clips messages over 102 KB and hides "
            "the rest, the unsubscribe link included",
        )
    elif size > GMAIL_NEAR_BYTES:
        yield sample.finding(
            "warning",
            "gmail-clipping-near",
            f"the HTML is {size / 1024:.1f} KB, close to the 102 KB at which Gmail clips messages",
        )


def images_without_alt(sample: Sample) -> Iterator[Finding]:
    for image in sample.images:
        if not image.has_alt:
            src = image.src or ""
            yield sample.finding(
                "warning",
                "image-alt",
                f"image without alt text ({src or 'no src'}): "
                "clients that block images show nothing in its place",
                src or re.compile(r"<img(?![^>]*\balt=)", re.I),
            )


def insecure_links(sample: Sample) -> Iterator[Finding]:
    seen: set[str] = set()
    for link in sample.links:
        href = (link.href or "").strip()
        if href.lower().startswith("http://") and href not in seen:
            seen.add(href)
            yield sample.finding(
                "warning", "http-link", f"unencrypted http:// link: {href}; use https://", href
            )


_EMPTY_HREF = re.compile(r"""href\s*=\s*(""|''|"\s+"|'\s+')""", re.I)


def empty_links(sample: Sample) -> Iterator[Finding]:
    for link in sample.links:
        if not (link.href or "").strip():
            label = f'"{link.text}"' if link.text else "(no text)"
            yield sample.finding(
                "warning", "empty-href", f"link {label} has an empty href", _EMPTY_HREF
            )


def unsubscribe(sample: Sample) -> Iterator[Finding]:
    if sample.message.get("List-Unsubscribe") is None:
        yield sample.finding(
            "warning",
            "unsubscribe-header",
            "no List-Unsubscribe header, which Gmail and Yahoo expect from bulk senders: set "
            "NEWSLETTER_UNSUBSCRIBE_URL (https gives one-click) or NEWSLETTER_UNSUBSCRIBE_MAILTO",
        )
    url = sample.rendered.unsubscribe_url
    linked = any(
        (link.href or "").strip() and (link.href == url or "unsubscribe" in link.text.lower())
        for link in sample.links
    )
    if linked:
        return
    if url is None:
        yield sample.finding(
            "warning",
            "unsubscribe-link",
            "no unsubscribe link in the HTML: set NEWSLETTER_UNSUBSCRIBE_URL; the templates "
            "link to it as {{ unsubscribe_url }}",
        )
    else:
        yield sample.finding(
            "warning",
            "unsubscribe-link",
            "NEWSLETTER_UNSUBSCRIBE_URL is set but no template links to {{ unsubscribe_url }}",
        )


def text_part(sample: Sample) -> Iterator[Finding]:
    part = sample.message.get_body(("plain",))
    if part is None or not str(part.get_content()).strip():
        yield sample.finding(
            "warning",
            "text-part",
            "the message has no plain-text part; spam filters and text-only readers expect one",
        )
    elif not sample.project.renderer.has_text_template:
        campaign = sample.project.campaign
        yield Finding(
            "info",
            "text-derived",
            f"no templates/{campaign.text_template}: the plain-text part is derived from the HTML",
        )


_SUBJECT_KEY = re.compile(r"^\s*subject\s*=")


def subject_length(sample: Sample) -> Iterator[Finding]:
    length = len(sample.rendered.subject)
    if length > SUBJECT_CHARS:
        yield sample.finding(
            "warning",
            "subject-length",
            f"the subject is {length} characters; inbox lists cut it off after about "
            f"{SUBJECT_CHARS}",
            _SUBJECT_KEY,
        )


# -- delivery: unsubscribe links, sender domain, size (see also `delivery_findings`) ----

SECRET_CHARS = 16  # below this an HMAC key is guessable enough to forge unsubscribe links


def unsubscribe_signing(sample: Sample) -> Iterator[Finding]:
    """An unsubscribe URL that exists but cannot do its job: one-click, or unforgeable."""
    links, settings = sample.project.builder.links, sample.project.settings
    url = links.url or ""
    if url and not url.lower().startswith("https://"):
        yield Finding(
            "warning",
            "unsubscribe-one-click",
            "NEWSLETTER_UNSUBSCRIBE_URL is not https://: Gmail and Yahoo only offer one-click "
            "unsubscribe (List-Unsubscribe-Post, RFC 8058) for an https URL",
        )
    if url and "{email}" not in url:
        yield Finding(
            "warning",
            "unsubscribe-anonymous",
            "NEWSLETTER_UNSUBSCRIBE_URL has no {email}: a one-click request could not say who "
            "unsubscribes; use e.g. https://example.org/unsubscribe?email={email}&token={token}",
        )
    elif url and not links.signed:
        yield Finding(
            "warning",
            "unsubscribe-forgeable",
            "NEWSLETTER_UNSUBSCRIBE_URL has {email} but no {token}: anyone could unsubscribe "
            "anyone; add &token={token} and set NEWSLETTER_SECRET",
        )
    if url and settings.secret is not None and len(settings.secret.reveal()) < SECRET_CHARS:
        yield Finding(
            "warning",
            "unsubscribe-secret",
            f"NEWSLETTER_SECRET is shorter than {SECRET_CHARS} characters; use a long random one, "
            'e.g. python3 -c "import secrets; print(secrets.token_urlsafe(32))"',
        )
    if not url and links.mailto:
        yield Finding(
            "info",
            "unsubscribe-mailto-only",
            "only a mailto: unsubscribe: Gmail and Yahoo expect bulk senders to offer one-click "
            "https unsubscribe too (NEWSLETTER_UNSUBSCRIBE_URL)",
        )


def _same_organization(one: str, other: str) -> bool:
    """Relaxed DMARC alignment, approximately: one domain is the other or a subdomain of it."""
    one, other = one.lower().rstrip("."), other.lower().rstrip(".")
    return one == other or one.endswith("." + other) or other.endswith("." + one)


def sender_alignment(sample: Sample) -> Iterator[Finding]:
    """From's domain against the relay login's: a hint that SPF/DKIM may not align (DMARC)."""
    smtp = sample.project.settings.smtp
    username = smtp.username if smtp is not None else None
    if not username or "@" not in username:
        return  # API-key logins (SES, Postmark...) say nothing about the domain
    login_domain = username.rpartition("@")[2]
    from_domain = sample.project.builder.sender.domain
    if not _same_organization(from_domain, login_domain):
        yield Finding(
            "info",
            "sender-alignment",
            f"From is @{from_domain} but the relay login is @{login_domain}: unless the relay "
            f"signs (DKIM) for {from_domain} and is in its SPF record, DMARC fails and Gmail or "
            "Yahoo may reject or junk the mail; check the relay's domain verification",
        )


MESSAGE_CHECKS: tuple[MessageCheck, ...] = (
    html_size,
    images_without_alt,
    insecure_links,
    empty_links,
    unsubscribe,
    text_part,
    subject_length,
    unsubscribe_signing,
    sender_alignment,
)


def check_message(sample: Sample, checks: Iterable[MessageCheck] = MESSAGE_CHECKS) -> list[Finding]:
    """Every message check over one rendered message."""
    return [finding for check in checks for finding in check(sample)]


# -- recipients whose fields the templates cannot fill --------------------------------


class _Probe:
    """The campaign's templates rendered without CSS inlining: enough to hit every
    undefined field, at a fraction of a full render's cost."""

    def __init__(self, project: Project) -> None:
        campaign = project.campaign
        templates = campaign.templates_dir
        html_env = make_environment(templates, autoescape=True)
        text_env = make_environment(templates, autoescape=False)
        self.templates = templates
        self.renderer = project.renderer
        self.parts = [
            text_env.from_string(campaign.subject),
            html_env.get_template(campaign.html_template),
        ]
        if (templates / campaign.text_template).is_file():
            self.parts.append(text_env.get_template(campaign.text_template))

    def render(self, recipient: Recipient) -> None:
        url = self.renderer.links.url_for(recipient.email)
        context = self.renderer.context(recipient.fields, url)
        for template in self.parts:
            template.render(context)


_NO_ATTRIBUTE = re.compile(r"has no attribute '([^']+)'")


def _reason(
    exc: BaseException, recipient: Recipient, front_matter: Iterable[str]
) -> tuple[str, str]:
    """Jinja's "'dict object' has no attribute 'x'" in the user's terms, when it can be told."""
    if not isinstance(exc, jinja2.UndefinedError):
        return "template-error", f"{type(exc).__name__}: {exc}"
    match = _NO_ATTRIBUTE.search(exc.message or "")
    if match and match.group(1) not in recipient.fields and match.group(1) not in front_matter:
        name = match.group(1)
        return "missing-field", (
            f"undefined value: no field '{name}' (not a column of the recipients CSV, "
            "nor a key of the front matter)"
        )
    return "missing-field", f"undefined value: {exc.message}"


def scan_recipients(
    project: Project, *, rows: int = SCAN_ROWS, failures: int = SCAN_FAILURES
) -> list[Finding]:
    """Render the first `rows` recipients' templates; one finding per cause, naming who.

    Stops after `failures` failing recipients so that a column missing from a
    100,000-row list costs no more than a handful of renders.
    """
    folder = project.folder
    try:
        probe = _Probe(project)
    except jinja2.TemplateError as exc:
        path, line = template_location(exc, project.campaign.templates_dir)
        return [Finding("error", "template-error", str(exc), relative(path, folder), line)]
    causes: dict[tuple[str | None, int | None, str], list[Recipient]] = {}
    codes: dict[tuple[str | None, int | None, str], str] = {}
    failing = 0
    front_matter = set(project.campaign.context())
    for recipient in islice(project.recipients.recipients(), rows):
        try:
            probe.render(recipient)
        except Exception as exc:  # template code raises arbitrary errors
            path, line = template_location(exc, probe.templates)
            code, reason = _reason(exc, recipient, front_matter)
            key = (relative(path, folder), line, reason)
            causes.setdefault(key, []).append(recipient)
            codes[key] = code
            failing += 1
            if failing >= failures:
                break
    findings = []
    for key, recipients in causes.items():
        path_text, line, reason = key
        if failing >= failures:
            reason += f"; at least {len(recipients)} recipients affected"
        elif len(recipients) > 1:
            reason += f"; {len(recipients)} recipients affected"
        findings.append(Finding("error", codes[key], reason, path_text, line, who(recipients[0])))
    return findings


def template_findings(errors: Iterable[TemplateError], folder: Path) -> list[Finding]:
    """Errors a render raised, as findings (the preview page shows its own render's this way)."""
    return [
        Finding(
            "error",
            "missing-field" if error.reason.startswith("undefined value") else "template-error",
            error.reason,
            relative(error.path, folder),
            error.line,
            error.recipient,
        )
        for error in errors
    ]


def row_findings(
    path: Path,
    invalid: Iterable[InvalidRow],
    duplicates: Iterable[DuplicateRow],
    *,
    invalid_count: int,
    duplicate_count: int,
    folder: Path,
    shown: int = 20,
) -> list[Finding]:
    """Rows that will not be sent to (errors) or are sent to once for an earlier line (info)."""
    name = relative(path, folder)
    findings = []
    for row in islice(invalid, shown):
        field_text = f"field '{row.field}': " if row.field else ""
        reason = f"{field_text}{row.reason}"
        findings.append(Finding("error", "invalid-row", reason, name, row.line))
    if invalid_count > shown:
        reason = f"{invalid_count - shown} more invalid rows"
        findings.append(Finding("error", "invalid-row", reason, name))
    for dup in islice(duplicates, shown):
        reason = f"duplicate of line {dup.first_line} ({dup.email}); sent once"
        findings.append(Finding("info", "duplicate-row", reason, name, dup.line))
    if duplicate_count > shown:
        reason = f"{duplicate_count - shown} more duplicate rows"
        findings.append(Finding("info", "duplicate-row", reason, name))
    return findings


# -- everything, for `newsletter check` ---------------------------------------------


def check_campaign(
    project: Project,
    *,
    email: str | None = None,
    largest_html: int = 0,
    scan_rows: int = SCAN_ROWS,
) -> list[Finding]:
    """The message checks on one recipient's message (the first that renders, or `email`),
    plus a scan of the first `scan_rows` recipients for fields the templates cannot fill.

    Pass `scan_rows=0` when a full `api.preflight` has already rendered every row,
    and its `largest_html` so the size check covers the largest message.
    """
    findings = scan_recipients(project, rows=scan_rows) if scan_rows > 0 else []
    findings += [  # a typo in a key the templates never read: a warning, not an error
        Finding("warning", "unused-field", unused.message, unused.path.name, unused.line)
        for unused in unused_fields(project.campaign)
    ]
    candidates: Iterable[Recipient] = (
        [find_recipient(project, email)]
        if email is not None
        else islice(project.recipients.recipients(), SCAN_FAILURES)
    )
    sources = Sources(project)
    for recipient in candidates:
        try:
            rendered, outgoing = project.message(recipient)
        except InputError:
            if email is not None:
                raise
            continue  # reported by the scan or the preflight; the next recipient may render
        sample = Sample.of(
            project, recipient, rendered, outgoing, sources=sources, largest_html=largest_html
        )
        return findings + check_message(sample)
    return findings


def counts(findings: Iterable[Finding]) -> dict[Level, int]:
    """How many findings of each level, every level present."""
    result: dict[Level, int] = dict.fromkeys(LEVELS, 0)
    for finding in findings:
        result[finding.level] += 1
    return result


# -- delivery: what the relay and the list's size make of the whole message ------------

# Mailbox providers refuse messages over 20-25 MB and many relays over 10 MB; the
# relay's own SIZE, when `newsletter check --smtp` asked for it, replaces this guess.
COMMON_SIZE_LIMIT = 10 * 1024 * 1024
# Attachment bytes through the relay for the whole list above which a link is kinder.
ATTACHMENT_VOLUME = 1024**3


def human_size(size: float) -> str:
    """`2.1 MB`, `120.0 KB`, `25 GB`: binary units, one decimal below 10."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            if unit == "bytes":
                return f"{int(size)} bytes"
            return f"{size:.1f} {unit}" if size < 10 else f"{size:.0f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def message_size(*, message_bytes: int, smtp_max_size: int | None) -> Iterator[Finding]:
    """The largest message against the relay's SIZE, or against common provider limits."""
    if not message_bytes:
        return
    size = human_size(message_bytes)
    if smtp_max_size is not None and message_bytes > smtp_max_size:
        yield Finding(
            "error",
            "message-size",
            f"the largest message is {size} ({message_bytes:,} bytes); the relay accepts at most "
            f"{human_size(smtp_max_size)} ({smtp_max_size:,} bytes, its SIZE): send would stop at "
            "the first message; make the attachments or images smaller, or link to them",
        )
    elif smtp_max_size is None and message_bytes > COMMON_SIZE_LIMIT:
        yield Finding(
            "warning",
            "message-size",
            f"the largest message is {size}: many relays refuse messages over 10 MB and mailbox "
            "providers over 20-25 MB; link to large files instead of attaching them "
            "(`newsletter check --smtp` asks your relay for its limit)",
        )


def attachment_volume(project: Project, *, recipients: int) -> Iterator[Finding]:
    """Attachments times recipients: the traffic through the relay, and its quota."""
    attachments = project.builder.attachments
    if not attachments or not recipients:
        return
    each = sum(a.size for a in attachments)
    total = each * recipients
    # base64 turns 3 bytes into 4 and adds a CRLF every 76 characters
    encoded = total * 4 / 3 * 78 / 76
    names = ", ".join(a.filename for a in attachments)
    text = (
        f"attachments ({names}): {human_size(each)} × {recipients:,} recipients = "
        f"{human_size(total)} through your relay ({human_size(encoded)} once encoded)"
    )
    if total >= ATTACHMENT_VOLUME:
        yield Finding("warning", "attachment-volume", f"{text}; consider a download link instead")
    else:
        yield Finding("info", "attachment-volume", text)


def delivery_findings(
    project: Project, *, recipients: int, message_bytes: int, smtp_max_size: int | None = None
) -> list[Finding]:
    """Campaign-wide checks a single message cannot tell: message size, attachment volume.

    `recipients` is how many will be sent to and `message_bytes` the largest
    message (`api.preflight` measures both); `smtp_max_size` is the relay's SIZE
    when it was asked (`api.smtp_size_limit`).
    """
    return [
        *message_size(message_bytes=message_bytes, smtp_max_size=smtp_max_size),
        *attachment_volume(project, recipients=recipients),
    ]
