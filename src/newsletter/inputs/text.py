"""The one rule for text that may reach a header or an SMTP command.

A line break in an address, a name, a subject or a setting would start a header
or a command of its own; any other control character is refused too, since mail
software treats them inconsistently. Settings, addresses, headers and the
rendered subject all test against this one pattern.
"""

from __future__ import annotations

import re

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
