"""Inline images: `<img src="images/cover.png">` in the HTML becomes an embedded part.

Mail clients block remote images until the reader clicks "load images"; an
image carried inside the message as a `multipart/related` part (RFC 2387),
referenced by `cid:` (RFC 2392), shows at once. The mechanism is the plain HTML
a designer would write anyway: any `<img>` whose `src` is a relative path is a
file of the campaign folder and is embedded; `http(s):`, `cid:` and `data:`
sources are left as they are. The same relative paths work in a browser, so the
preview and the web version only need the files copied beside them.

Each file is read, checked and given its Content-ID once per campaign, however
many recipients and references there are.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from newsletter.errors import TemplateError
from newsletter.inputs.folder import PrivateFiles, read_inside
from newsletter.inputs.safefiles import OutputDir
from newsletter.message.attachments import guess_type

# An <img> start tag, with `>` allowed inside quoted attribute values; then its
# attributes one by one, so `alt="src=x"` is never mistaken for the source.
_IMG_TAG = re.compile(r"""<img\b(?:"[^"]*"|'[^']*'|[^'">])*>""", re.IGNORECASE)
_ATTRIBUTE = re.compile(r"""(\s+)([^\s=/>]+)(?:(\s*=\s*)("[^"]*"|'[^']*'|[^\s'">]+))?""")


@dataclass(frozen=True)
class Image:
    """One embedded file: its bytes, MIME type and the Content-ID the HTML points at."""

    path: Path
    content_type: str
    data: bytes
    cid: str  # without angle brackets, as in a `cid:` URL

    @property
    def filename(self) -> str:
        return self.path.name


def is_local(src: str) -> bool:
    """A relative path such as `images/cover.png`: no scheme, no host."""
    parts = urlsplit(src.strip())
    return bool(parts.path) and not parts.scheme and not parts.netloc


def _sources(markup: str) -> list[tuple[int, int, str]]:
    """(start, end, value) of every `<img src>` value in `markup`, HTML entities decoded.

    `markup` is inlined HTML, serialized by lxml, which writes tag names in lower case
    (`<IMG SRC=...>` in a template arrives as `<img src=...>`): a plain substring test
    settles the common case of no image at all, where the scan would cost ~10 µs a message.
    """
    if "<img" not in markup:
        return []
    found = []
    for tag in _IMG_TAG.finditer(markup):
        for attribute in _ATTRIBUTE.finditer(tag.group(0)):
            if attribute.group(2).lower() == "src" and attribute.group(4) is not None:
                raw = attribute.group(4)
                quoted = raw[:1] in ("'", '"')
                start = tag.start() + attribute.start(4) + (1 if quoted else 0)
                end = tag.start() + attribute.end(4) - (1 if quoted else 0)
                found.append((start, end, html.unescape(markup[start:end])))
                break
    return found


class InlineImages:
    """The campaign folder's images, found in rendered HTML, each loaded once."""

    def __init__(self, folder: Path, *, domain: str, private: PrivateFiles | None = None) -> None:
        """`private`: the files never embedded (default: the folder's, default names)."""
        self.folder = folder.resolve()
        self.domain = domain
        self.private = private
        self._cache: dict[str, Image] = {}

    def local_sources(self, markup: str) -> list[str]:
        return [src for _, _, src in _sources(markup) if is_local(src)]

    def load(self, src: str) -> Image:
        """The image a relative `src` names; TemplateError if it is not an image of the folder."""
        cached = self._cache.get(src)
        if cached is not None:
            return cached
        relative = unquote(urlsplit(src.strip()).path)
        where = f"<img src=\"{src}\">"
        try:
            path, data = read_inside(self.folder, relative, use="embedded", private=self.private)
        except ValueError as exc:
            raise TemplateError(f"{where}: {exc}") from None
        content_type = guess_type(path)
        if not content_type.startswith("image/"):
            raise TemplateError(f"{where}: not an image ({content_type})")
        # Named by content: the same bytes under two names become one part.
        digest = hashlib.sha256(data).hexdigest()[:20]
        image = Image(path, content_type, data, f"img-{digest}@{self.domain}")
        self._cache[src] = image
        return image

    def check(self, markup: str) -> None:
        """Raise TemplateError for the first local image that cannot be embedded."""
        for src in self.local_sources(markup):
            self.load(src)

    def embed(self, markup: str) -> tuple[str, list[Image]]:
        """`markup` with local sources pointing at `cid:` parts, and those parts (no duplicates)."""
        pieces: list[str] = []
        used: dict[str, Image] = {}
        last = 0
        for start, end, src in _sources(markup):
            if not is_local(src):
                continue
            image = self.load(src)
            used.setdefault(image.cid, image)
            pieces += [markup[last:start], "cid:" + image.cid]
            last = end
        if not used:
            return markup, []
        pieces.append(markup[last:])
        return "".join(pieces), list(used.values())

    def copy_beside(self, markup: str, out: OutputDir) -> list[Path]:
        """Copy the local images of `markup` into `out` at the same relative paths.

        For pages opened in a browser (preview, web version), where the HTML
        keeps its relative `src` values. The bytes are those already loaded, and
        written no-follow: a link planted under `preview/` is refused.
        """
        return [
            out.write(image.path.relative_to(self.folder).as_posix(), image.data)
            for image in map(self.load, self.local_sources(markup))
        ]
