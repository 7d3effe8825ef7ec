"""Content checks: what a finished message would get wrong in inboxes, as findings.

Each check is a small function over one rendered `Sample`; add a check by writing
one and listing it in `MESSAGE_CHECKS`. Findings never stop a send on their own:
what must stop it (invalid rows, template errors) is the pre-send check's job
(`newsletter.checks.preflight`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser
from itertools import islice

from newsletter.checks.findings import Finding, Level, relative
from newsletter.checks.rows import SCAN_FAILURES, SCAN_ROWS, scan_recipients
from newsletter.errors import InputError
from newsletter.inputs.campaign import unused_fields
from newsletter.inputs.folder import files_under
from newsletter.inputs.recipients import Recipient
from newsletter.message.builder import Outgoing
from newsletter.project import Project
from newsletter.render.renderer import Rendered
from newsletter.sizes import human_size

# Gmail hides everything after the first ~102 KiB of a message's HTML behind
# "[Message clipped]", including the footer with the unsubscribe link.
GMAIL_CLIP_BYTES = 102 * 1024
GMAIL_NEAR_BYTES = 90 * 1024
# RFC 5322's recommended line length; longer subjects are cut off in most inbox lists.
SUBJECT_CHARS = 78


# -- where a piece of the output came from -------------------------------------------


class Sources:
    """The campaign's own text files, read once, to point a finding at a file and line."""

    def __init__(self, project: Project) -> None:
        self.folder = project.folder
        files = [project.campaign.path, *files_under(project.campaign.templates_dir)]
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
    style: str = ""  # its inline style, after CSS inlining


@dataclass
class ImageTag:
    src: str | None
    has_alt: bool


class _HtmlFacts(HTMLParser):
    """Links and images of the final HTML; the checks need nothing else from it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[Link] = []
        self.images: list[ImageTag] = []
        self.styles: list[str] = []  # every inline style outside comments (Outlook's own blocks)
        self._open: list[Link] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("style"):
            self.styles.append(attributes["style"] or "")
        if tag == "a" and "href" in attributes:
            link = Link(attributes["href"] or "", style=attributes.get("style") or "")
            self.links.append(link)
            self._open.append(link)
        elif tag == "img":
            self.images.append(ImageTag(attributes.get("src"), "alt" in attributes))

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
    images: list[ImageTag] = field(default_factory=list)
    styles: list[str] = field(default_factory=list)

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
            styles=facts.styles,
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
            f"the HTML is {human_size(size)}: Gmail clips messages over 102 KiB and hides "
            "the rest, the unsubscribe link included",
        )
    elif size > GMAIL_NEAR_BYTES:
        yield sample.finding(
            "warning",
            "gmail-clipping-near",
            f"the HTML is {human_size(size)}, close to the 102 KiB at which Gmail clips messages",
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


def text_alternative(sample: Sample) -> Iterator[Finding]:
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
            "unsubscribes; use e.g. https://example.org/unsubscribe?address={email}&token={token}",
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
    if url and re.search(r"[?&]email=\{email\}", url, re.I):
        yield Finding(
            "info",
            "unsubscribe-email-param",
            "NEWSLETTER_UNSUBSCRIBE_URL puts the address after 'email=': spam filters score links "
            "that carry the recipient's address that way (SpamAssassin's GB_CUSTOM_HTM_URI, a "
            "phishing pattern); name the parameter otherwise, e.g. ?address={email}&token={token}",
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


_TRANSPARENT = re.compile(r"color\s*:\s*transparent", re.I)
_DISPLAY_NONE = re.compile(r"display\s*:\s*none", re.I)
_MSO_HIDE = re.compile(r"mso-hide\s*:\s*all", re.I)
_PADDED = re.compile(r"(?:^|;)\s*padding(?:-[a-z]+)?\s*:\s*[^;]*[1-9]", re.I)
_FILLED = re.compile(r"(?:^|;)\s*(?:background(?:-color)?|border)\s*:", re.I)
_VML_BUTTON = re.compile(r"<!--\[if mso\]>.*?<v:(?:roundrect|rect)\b.*?<!\[endif\]-->", re.I | re.S)


def hidden_text(sample: Sample) -> Iterator[Finding]:
    """Text hidden in ways that spam filters score or Outlook for Windows ignores."""
    if any(_TRANSPARENT.search(style) for style in sample.styles):
        yield sample.finding(
            "warning",
            "transparent-text",
            "text coloured transparent: spam filters score it as hidden text (SpamAssassin's "
            "HTML_FONT_LOW_CONTRAST); hide a preheader with display:none and mso-hide:all instead",
            _TRANSPARENT,
        )
    if any(_DISPLAY_NONE.search(style) and not _MSO_HIDE.search(style) for style in sample.styles):
        yield sample.finding(
            "warning",
            "hidden-in-outlook",
            "display:none without mso-hide:all: Outlook for Windows shows that element anyway; "
            "add mso-hide:all beside it",
            _DISPLAY_NONE,
        )


def outlook_buttons(sample: Sample) -> Iterator[Finding]:
    """A button drawn by padding and colour on the link itself, with no Outlook fallback.

    Outlook for Windows ignores padding and rounded corners on `<a>`: the button shows
    as a cramped square link. Padding on the table cell, or a VML `v:roundrect` in an
    `<!--[if mso]>` block, draws it there too.
    """
    if _VML_BUTTON.search(sample.rendered.html):
        return
    for link in sample.links:
        if _PADDED.search(link.style) and _FILLED.search(link.style):
            label = f'"{link.text}"' if link.text else (link.href or "")
            yield sample.finding(
                "warning",
                "outlook-button",
                f"the button {label} has its padding on the link, which Outlook for Windows ignores "
                "(it shows a cramped square link): put the padding and colour on its table cell, "
                "or add a VML v:roundrect in an <!--[if mso]> block",
                link.text or link.href or None,
            )
            return


MESSAGE_CHECKS: tuple[MessageCheck, ...] = (
    html_size,
    hidden_text,
    outlook_buttons,
    images_without_alt,
    insecure_links,
    empty_links,
    unsubscribe,
    text_alternative,
    subject_length,
    unsubscribe_signing,
    sender_alignment,
)


def check_message(sample: Sample, checks: Iterable[MessageCheck] = MESSAGE_CHECKS) -> list[Finding]:
    """Every message check over one rendered message."""
    return [finding for check in checks for finding in check(sample)]


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
        [project.find_recipient(email)]
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
