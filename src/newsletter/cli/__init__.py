"""The `newsletter` command line: parsing, printing and exit codes over `newsletter.run`.

Only this package prints or exits. Exit codes: 0 all delivered, 1 some
recipients failed (listed), 2 bad input or configuration (nothing sent),
130/143 interrupted by SIGINT/SIGTERM (run again to continue). Each command
module adds its commands to `main` when imported.
"""

from __future__ import annotations

from newsletter.cli import check, completion, dkim, login, manage, preview, send, status
from newsletter.cli.base import main

__all__ = ["check", "completion", "dkim", "login", "main", "manage", "preview", "send", "status"]
