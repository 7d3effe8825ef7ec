"""A recipient's states in the journal (see `newsletter.delivery.journal` for what each means).

Kept apart from the journal so that the CLI can name them without loading SQLite.
"""

SENDING, SENT, FAILED, DEFERRED, UNKNOWN = "sending", "sent", "failed", "deferred", "unknown"
PROBLEMS = (FAILED, DEFERRED, UNKNOWN)  # what `status` and the end of a send list
