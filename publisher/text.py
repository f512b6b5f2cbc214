"""Small pure text helpers shared by importers, feeds and rendering."""

from __future__ import annotations

import html
import re
import unicodedata

_APOSTROPHES = re.compile(r"['’‘`]")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
# XML 1.0 forbids C0 controls other than tab, LF and CR, lone surrogates, and U+FFFE/U+FFFF.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_HEADER_UNSAFE = re.compile("[\r\n\x00]")
# Text no database stores and no encoder writes: NUL and unpaired surrogates.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# The only link schemes that may reach a reader: no javascript:, data:, vbscript:, file: …
SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
# Browsers ignore ASCII whitespace and controls inside a scheme ("java\tscript:").
_URL_IGNORED = re.compile("[\x00-\x20\x7f]")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_START_TAG = re.compile(r"<[a-zA-Z][^>]*>")
_LINK_ATTRIBUTE = re.compile(r"""\s(?:href|src)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)


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


def tag_slug(name: str) -> str:
    """A tag's slug, in every script: Latin text slugs as `slugify` does (so existing tag URLs
    stay), the letters and digits of other scripts (Cyrillic, Greek, CJK, Arabic …) are kept,
    lower-cased, with their combining marks. Links percent-encode it (`links.tag_path`)."""
    kept: list[str] = []
    for char in unicodedata.normalize("NFC", _APOSTROPHES.sub("", name)):
        ascii_part = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode().lower()
        if ascii_part or char.isascii():
            kept.append(_NON_ALNUM.sub("-", ascii_part) or "-")
        elif unicodedata.category(char)[0] == "M":
            kept.append(char if kept and kept[-1] != "-" else "")
        elif unicodedata.category(char)[0] in "LN" and not unicodedata.name(char, "").startswith("LATIN"):
            kept.append(char.lower())
        elif unicodedata.category(char)[0] not in "LN":
            kept.append("-")
    slug = re.sub("-+", "-", "".join(kept)).strip("-")
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


def safe_url(url: str) -> str:
    """`url` (trimmed) if it is relative or http, https or mailto; "" for any other scheme."""
    scheme = _SCHEME.match(_URL_IGNORED.sub("", url))
    if scheme and scheme[1].lower() not in SAFE_SCHEMES:
        return ""
    return url.strip()


def safe_links(markup: str) -> str:
    """HTML with every href or src whose URL has another scheme than http, https or mailto removed."""

    def keep_safe(match: re.Match) -> str:
        value = next(group for group in match.groups() if group is not None)
        return match[0] if safe_url(html.unescape(value)) else ""

    return _START_TAG.sub(lambda tag: _LINK_ATTRIBUTE.sub(keep_safe, tag[0]), markup)


def cut(value: str, limit: int = 80) -> str:
    """A value for an error message, cut short: messages stay one line of bounded size."""
    return value if len(value) <= limit else value[:limit] + "…"


def quoted(value: str, limit: int = 80) -> str:
    return repr(cut(value, limit))


MAX_HTML_DEPTH = 200  # sanitisers take super-linear time in nesting depth; no real article nests this deep
_TAG = re.compile(r"<(/?)([A-Za-z][^\s/>]*)[^>]*?(/?)>")
# elements whose end tag may be left out (or that never have one): they never nest by themselves
_VOID = "area base br col embed hr img input link meta source track wbr"
_OPTIONAL_END = "p li dt dd tr td th thead tbody tfoot option optgroup colgroup caption rb rt rtc rp"
_FLAT = frozenset(f"{_VOID} {_OPTIONAL_END}".split())


def too_deep(markup: str, limit: int = MAX_HTML_DEPTH) -> bool:
    """Whether the tags in `markup` nest more than `limit` levels: one linear scan, no parsing."""
    if markup.count("<") <= limit:
        return False
    depth = 0
    for match in _TAG.finditer(markup):
        closing, name, self_closing = match[1], match[2].lower(), match[3]
        if name in _FLAT or self_closing:
            continue
        depth = max(depth - 1, 0) if closing else depth + 1
        if depth > limit:
            return True
    return False


# The largest id or number any table holds (PostgreSQL INTEGER); larger ones are refused as input.
MAX_WHOLE = 2**31 - 1


def whole_number(raw: str | None, *, low: int = 0, high: int = MAX_WHOLE) -> int | None:
    """`raw` as a whole number in `low`..`high`, or None: only ASCII digits count ("²", "١", "+1",
    " 1" and 10,000-digit numbers are refused before `int()` sees them)."""
    if raw is None or not 0 < len(raw) <= len(str(high)) or not (raw.isascii() and raw.isdigit()):
        return None
    value = int(raw)
    return value if low <= value <= high else None
