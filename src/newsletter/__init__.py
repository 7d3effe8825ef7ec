"""Send one announcement to one mailing list, each recipient exactly once.

The library's whole surface is here: `load` a campaign folder, then `check`,
`preview`, `send`, `send_test` or `status` it (see `newsletter.run`). Nothing
heavy is imported until a name is used, so `newsletter --help` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from newsletter.errors import (
    Cancelled,
    CheckFailed,
    ConfigError,
    DeliveryError,
    InputError,
    NewsletterError,
    SetupError,
    TemplateError,
)

if TYPE_CHECKING:
    from newsletter.delivery.journal import JournalLocked as JournalLocked
    from newsletter.delivery.plan import SendOptions as SendOptions
    from newsletter.delivery.plan import Summary as Summary
    from newsletter.inputs.folder import CampaignFolder as CampaignFolder
    from newsletter.project import Project as Project
    from newsletter.run import (
        CheckResult as CheckResult,
    )
    from newsletter.run import (
        Confirmation as Confirmation,
    )
    from newsletter.run import (
        PreviewFiles as PreviewFiles,
    )
    from newsletter.run import (
        SendResult as SendResult,
    )
    from newsletter.run import (
        Status as Status,
    )
    from newsletter.run import (
        check as check,
    )
    from newsletter.run import (
        load as load,
    )
    from newsletter.run import (
        preview as preview,
    )
    from newsletter.run import (
        send as send,
    )
    from newsletter.run import (
        send_test as send_test,
    )
    from newsletter.run import (
        status as status,
    )

__version__ = "0.1.0"

_LAZY = {
    "CampaignFolder": "newsletter.inputs.folder",
    "CheckResult": "newsletter.run",
    "Confirmation": "newsletter.run",
    "JournalLocked": "newsletter.delivery.journal",
    "PreviewFiles": "newsletter.run",
    "Project": "newsletter.project",
    "SendOptions": "newsletter.delivery.plan",
    "SendResult": "newsletter.run",
    "Status": "newsletter.run",
    "Summary": "newsletter.delivery.plan",
    "check": "newsletter.run",
    "load": "newsletter.run",
    "preview": "newsletter.run",
    "send": "newsletter.run",
    "send_test": "newsletter.run",
    "status": "newsletter.run",
}

__all__ = [
    "Cancelled",
    "CheckFailed",
    "ConfigError",
    "DeliveryError",
    "InputError",
    "NewsletterError",
    "SetupError",
    "TemplateError",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'newsletter' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
