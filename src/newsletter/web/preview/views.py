"""The preview page's JSON: what the page shows, built from a `State` and a `Rendition`.

Headers are read back from the finished message bytes, decoded the way a mail
client shows them, so the page shows what was built rather than what was meant.
"""

from __future__ import annotations

from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.headerregistry import Address, AddressHeader
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from newsletter.checks.findings import Finding, counts, relative
from newsletter.checks.message import GMAIL_CLIP_BYTES, SUBJECT_CHARS
from newsletter.checks.rows import SCAN_ROWS, template_findings
from newsletter.errors import InputError, RecipientsError, TemplateError
from newsletter.web.preview.live import RecipientIndex, Rendition, State

SEARCH_LIMIT = 200  # the picker shows this many matches; lists may hold 100,000+ rows
SHOWN_HEADERS = (
    "From",
    "To",
    "Reply-To",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Id",
    "Date",
    "Message-ID",
)


def error_payload(exc: InputError, folder: Path) -> dict[str, Any]:
    """An input error as the page's error box shows it: what, which file, which line."""
    return {
        "kind": "template" if isinstance(exc, TemplateError) else "input",
        "message": str(exc),
        "reason": exc.reason,
        "path": relative(exc.path, folder),
        "line": exc.line,
        "recipient": exc.recipient if isinstance(exc, TemplateError) else None,
        "hint": _hint(exc),
    }


def _hint(exc: InputError) -> str | None:
    """What to do, for the one error every new campaign meets first."""
    if isinstance(exc, RecipientsError) and exc.path is not None and not exc.path.exists():
        return (
            f"Create {exc.path.name} (the starter ships recipients.example.csv to copy), or restart "
            "with --recipients FILE. The page picks the file up as soon as it exists."
        )
    return None


def recipient_payload(index: RecipientIndex, position: int) -> dict[str, Any]:
    recipient = index.recipients[position]
    return {
        "position": position,
        "email": recipient.email,
        "name": recipient.name,
        "line": recipient.line,
    }


def recipients_payload(index: RecipientIndex, query: str) -> dict[str, Any]:
    positions, total = index.search(query, limit=SEARCH_LIMIT)
    return {
        "count": len(index.recipients),
        "total": total,
        "matches": [recipient_payload(index, position) for position in positions],
        "truncated": total > len(positions),
        "unavailable": False,
    }


def _mailboxes(header: Any, raw: str | None) -> list[dict[str, str]]:
    if not isinstance(header, AddressHeader):
        return []
    boxes = [{"name": a.display_name, "address": a.addr_spec} for a in header.addresses]
    if len(boxes) == 1 and raw is not None:
        boxes[0]["name"] = _client_name(raw, boxes[0]["name"])
    return boxes


def _client_name(raw: str, parsed: str) -> str:
    """The display name as mail clients decode it: RFC 2047 6.2, white space between encoded words dropped.

    `policy.default` puts a space there inside a display name (CPython gh-128110), so a
    long name split into several encoded words would show with a doubled space.
    """
    phrase = raw.replace("\r", "").replace("\n", "").rpartition("<")[0].strip()
    if "=?" not in phrase:
        return parsed
    try:
        return str(make_header(decode_header(phrase)))
    except (ValueError, LookupError):  # not our own encoding: the parser's reading will do
        return parsed


def headers_payload(data: bytes) -> dict[str, Any]:
    """The headers a client shows, decoded (RFC 2047 names become readable text)."""
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    raw = {name.lower(): str(value) for name, value in message.raw_items()}
    shown = {name: (str(message[name]) if message[name] is not None else None) for name in SHOWN_HEADERS}
    boxes = {name: _mailboxes(message[name], raw.get(name.lower())) for name in ("From", "To", "Reply-To")}
    for name, found in boxes.items():
        if len(found) == 1 and message[name] is not None:
            [box] = found
            username, _, domain = box["address"].rpartition("@")
            shown[name] = str(Address(display_name=box["name"], username=username, domain=domain))
    return {
        "subject": str(message["Subject"] or ""),
        "headers": shown,
        "from": boxes["From"],
        "to": boxes["To"],
    }


def findings_payload(findings: list[Finding]) -> dict[str, Any]:
    ordered = sorted(findings, key=lambda f: ("error", "warning", "info").index(f.level))
    return {"items": [f.as_dict() for f in ordered], "counts": counts(ordered)}


def campaign_payload(state: State) -> dict[str, Any]:
    index = state.index
    project = state.project
    return {
        "id": project.campaign.id if project is not None else None,
        "folder": state.rows.path.parent.name if state.rows is not None else None,
        "recipients": len(index.recipients) if index is not None else 0,
        "invalid": index.invalid_count if index is not None else 0,
        "duplicates": index.duplicate_count if index is not None else 0,
    }


def rendered_payload(rendition: Rendition) -> dict[str, Any]:
    """One recipient's finished message: headers, both parts, the source and its measurements."""
    assert rendition.rendered is not None and rendition.outgoing is not None
    data = rendition.outgoing.data
    html_bytes = len(rendition.rendered.html.encode("utf-8"))
    return {
        **headers_payload(data),
        "text": rendition.rendered.text,
        "source": data.decode("utf-8", "replace"),
        "html_bytes": html_bytes,
        "message_bytes": len(data),
        "stats": {
            "html_bytes": html_bytes,
            "clip_bytes": GMAIL_CLIP_BYTES,
            "subject_chars": len(rendition.rendered.subject),
            "subject_limit": SUBJECT_CHARS,
            "links": rendition.links,
            "images": rendition.images,
        },
    }


def _scan_note(index: RecipientIndex | None) -> str:
    if index is None:
        return ""
    if len(index.recipients) <= SCAN_ROWS:
        return f"Fields checked for all {len(index.recipients)} recipients."
    return f"Fields checked for the first {SCAN_ROWS} recipients; newsletter check renders them all."


def message_payload(
    state: State, rendition: Rendition | None, campaign_findings: list[Finding], folder: Path
) -> dict[str, Any]:
    """Everything the page shows for one recipient; `error` is set when it could not render."""
    index = state.index
    payload: dict[str, Any] = {
        "version": state.version,
        "campaign": campaign_payload(state),
        "recipient": None,
        "previous": None,
        "next": None,
        "error": None,
        "message": None,
        "scan_note": _scan_note(index),
    }
    findings = list(campaign_findings)
    if state.error is not None:
        payload["error"] = error_payload(state.error, folder)
    elif state.index_error is not None:
        payload["error"] = error_payload(state.index_error, folder)
    if index is not None and rendition is not None:
        position = rendition.position
        payload["recipient"] = recipient_payload(index, position)
        if position > 0:
            payload["previous"] = index.recipients[position - 1].email
        if position + 1 < len(index.recipients):
            payload["next"] = index.recipients[position + 1].email
        if rendition.error is not None:
            payload["error"] = error_payload(rendition.error, folder)
        else:
            payload["message"] = rendered_payload(rendition)
            findings = list(rendition.findings) + findings
    elif index is not None and not index.recipients and payload["error"] is None:
        path = state.rows.path if state.rows is not None else None
        payload["error"] = error_payload(InputError("the list has no valid recipient", path=path), folder)
    failure = rendition.error if rendition is not None and rendition.error is not None else state.error
    if isinstance(failure, TemplateError):
        # The error box shows it too; the checks count it, unless the recipients scan already did.
        [finding] = template_findings([failure], folder)
        if not any((f.path, f.line) == (finding.path, finding.line) for f in findings):
            findings.insert(0, finding)
    payload["checks"] = findings_payload(findings)
    return payload
