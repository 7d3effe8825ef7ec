"""Every default a user can change, in one place: the CLI's help, the settings and the library agree.

Why these numbers: two connections is what most relays (Microsoft 365, Google,
small Postfix setups) accept from one client without throttling; three tries
over a doubling delay from 30 s ride out a greylisting relay; a reply that takes
longer than 30 s is a relay that is not coming back.
"""

from __future__ import annotations

from typing import Literal

Security = Literal["starttls", "tls", "none"]
SECURITY_CHOICES: tuple[Security, ...] = ("starttls", "tls", "none")
DEFAULT_SECURITY: Security = "starttls"
DEFAULT_PORTS: dict[Security, int] = {"starttls": 587, "tls": 465, "none": 25}
SMTP_TIMEOUT = 30.0  # seconds to wait for a reply
DEFAULT_CONNECTIONS = 2
MAX_CONNECTIONS = 100
MAX_ATTEMPTS = 3  # tries per recipient and run for temporary (4xx) refusals
RETRY_DELAY = 30.0  # seconds before the first retry; doubles each time
RETRY_WINDOW = 900.0  # no retry later than this after a recipient's first 4xx
RECONNECT_ATTEMPTS = 5  # per message: connections that broke before its data went
RECONNECT_DELAY = 1.0  # first back-off between reconnects; doubles, capped at RECONNECT_DELAY_MAX
RECONNECT_DELAY_MAX = 60.0
RECONNECT_FOR = 300.0  # seconds a run keeps trying to reach a relay that went away
REFUSAL_STREAK = 5  # this many refusals in a row with the same permanent reply: the relay, not the list
POLICY_STREAK = 2  # the same for a reply about login, relay access or policy, before any success
PREVIEW_PORT = 8025
UNSUBSCRIBE_HOST, UNSUBSCRIBE_PORT = "127.0.0.1", 8090
MAX_TEMPLATE_ERRORS = 20  # the check stops rendering after this many failing recipients
