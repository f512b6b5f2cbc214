"""An article's image for the email: the first usable `<img>` of its content (feed enclosures and
media tags are written into the content as an `<img>` on import, `publisher.importers.feed`).

Usable means it can be shown, not shown broken: an absolute https URL (a relative one is resolved
against the article's page first), a size the markup states (a `width` attribute in plain pixels,
`height` optional: an image of unknown size may be a tracking pixel and would be stretched to the
column), and not a tracking pixel, icon or spacer (`width` or `height` below `MIN_SIZE`). A size
that is not a plain number of at most `MAX_DIGITS` digits leaves the image out too. Emails give every
image an explicit width.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

COLUMN_WIDTH = 576  # the email's 640 px body less its 32 px side padding
MIN_SIZE = 120  # px: smaller images are icons, spacers or tracking pixels
MAX_DIGITS = 5  # a size of more digits is not a real one
_PIXELS = re.compile(rf"\s*([0-9]{{1,{MAX_DIGITS}}})(?:px)?\s*")


@dataclass(frozen=True)
class Image:
    src: str  # absolute https
    alt: str
    width: int  # px, at most COLUMN_WIDTH
    height: int | None = None  # px at `width`, when the source said


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.found.append({name: value or "" for name, value in attrs})


def _pixels(value: str) -> int | None:
    """A size attribute in plain pixels ("300", "300px"), or None (absent, "100%", "²", huge)."""
    found = _PIXELS.fullmatch(value)
    return int(found[1]) if found else None


def _usable(attrs: dict[str, str], base: str, fallback_alt: str) -> Image | None:
    src = urljoin(base, attrs.get("src", "").strip()) if base else attrs.get("src", "").strip()
    parts = urlsplit(src)
    if parts.scheme != "https" or not parts.hostname or any(c in src for c in "\"'<> \r\n\t"):
        return None
    width, height = _pixels(attrs.get("width", "")), _pixels(attrs.get("height", ""))
    if width is None or width < MIN_SIZE:
        return None  # no size (maybe a tracking pixel), a forged one, or an icon
    if "height" in attrs and (height is None or height < MIN_SIZE):
        return None
    shown = min(width, COLUMN_WIDTH)
    scaled = round(height * shown / width) if height else None
    alt = " ".join((attrs.get("alt") or fallback_alt).split())
    return Image(src=src, alt=alt, width=shown, height=scaled)


@lru_cache(maxsize=1024)
def first_image(*fragments: str, base: str = "", alt: str = "") -> Image | None:
    """The first usable image in the fragments (content first), or None; `alt` when it has none."""
    for fragment in fragments:
        if "<img" not in fragment.lower():
            continue
        parser = _Images()
        parser.feed(fragment)
        parser.close()
        for attrs in parser.found:
            image = _usable(attrs, base, alt)
            if image is not None:
                return image
    return None
