"""Small pure text helpers shared by importers, feeds and rendering."""

from __future__ import annotations

import re
import unicodedata

_APOSTROPHES = re.compile(r"['’‘`]")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
# XML 1.0 forbids C0 controls other than tab, LF and CR, lone surrogates, and U+FFFE/U+FFFF.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_HEADER_UNSAFE = re.compile("[\r\n\x00]")
# Text no database stores and no encoder writes: NUL and unpaired surrogates.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


MAX_SLUG = 200  # WordPress's limit; leaves room for a "-2" suffix within the store's 255


def slugify(title: str) -> str:
    """A WordPress-style slug: lower-case ASCII, apostrophes dropped, other runs become '-';
    a very long one is cut at a word boundary."""
    ascii_text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    ascii_text = _APOSTROPHES.sub("", ascii_text.lower())
    slug = _NON_ALNUM.sub("-", ascii_text).strip("-")
    if len(slug) > MAX_SLUG:
        cut = slug[: MAX_SLUG + 1]
        slug = (cut.rsplit("-", 1)[0] if "-" in cut else cut[:MAX_SLUG]).strip("-")
    return slug


def xml_safe(value: str) -> str:
    """Remove the characters XML 1.0 cannot carry, so one bad article never breaks a feed."""
    return _XML_FORBIDDEN.sub("", value)


def storable(value: str) -> str:
    """Drop NUL and lone surrogates, which PostgreSQL and UTF-8 refuse."""
    return _UNSTORABLE.sub("", value)


def header_safe(value: str) -> str:
    """Strip CR, LF and NUL, so a value cannot add headers to a message."""
    return _HEADER_UNSAFE.sub(" ", value).strip()
