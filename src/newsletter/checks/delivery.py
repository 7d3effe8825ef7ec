"""Campaign-wide checks a single message cannot tell: the largest message against the
relay's limit, and attachments times recipients against its quota."""

from __future__ import annotations

from collections.abc import Iterator

from newsletter.checks.findings import Finding
from newsletter.project import Project
from newsletter.sizes import human_size

# -- delivery: what the relay and the list's size make of the whole message ------------

# Mailbox providers refuse messages over 20-25 MB and many relays over 10 MB; the
# relay's own SIZE, when `newsletter check --smtp` asked for it, replaces this guess.
COMMON_SIZE_LIMIT = 10 * 1024 * 1024
# Attachment bytes through the relay for the whole list above which a link is kinder.
ATTACHMENT_VOLUME = 1024**3


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
            f"the largest message is {size}: many relays refuse messages over 10 MiB and mailbox "
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
