"""Send one announcement to one mailing list, each recipient exactly once."""

from newsletter.errors import NewsletterError

__all__ = ["NewsletterError", "__version__"]
__version__ = "0.1.0"
