"""An article's image for the email: the first usable `<img>` of its content (feed enclosures and
media tags are written into the content as an `<img>` on import, `publisher.importers.feed`).

Usable means it can be shown, not shown broken: an absolute https URL (a relative one is resolved
against the article's page first), and not a tracking pixel, icon or spacer (an image whose
`width` or `height` attribute is below `MIN_SIZE`). Emails give every image an explicit width.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

COLUMN_WIDTH = 576  # the email's 640 px body less its 32 px side padding
MIN_SIZE = 120  # px: smaller images are icons, spacers or tracking pixels


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
    digits = value.strip().removesuffix("px")
    return int(digits) if digits.isdigit() else None


def _usable(attrs: dict[str, str], base: str, fallback_alt: str) -> Image | None:
    src = urljoin(base, attrs.get("src", "").strip()) if base else attrs.get("src", "").strip()
    parts = urlsplit(src)
    if parts.scheme != "https" or not parts.hostname or any(c in src for c in "\"'<> \r\n\t"):
        return None
    width, height = _pixels(attrs.get("width", "")), _pixels(attrs.get("height", ""))
    if (width is not None and width < MIN_SIZE) or (height is not None and height < MIN_SIZE):
        return None
    shown = min(width or COLUMN_WIDTH, COLUMN_WIDTH)
    scaled = round(height * shown / width) if width and height else None
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
