"""Teasers as blocks: an article's HTML as paragraphs and list items that keep their inline links
and emphasis, cut at a sentence boundary.

`html_blocks` reads a fragment into `Block`s (headings, quotes and the like become paragraphs,
images and other markup are dropped), `shorten` keeps whole blocks up to a character budget and
ends on a sentence, and `blocks_html` / `blocks_text` write them back as HTML or plain text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from html.parser import HTMLParser
from typing import ClassVar
from urllib.parse import urljoin, urlsplit

from publisher.text import safe_url

# (kind, value): ("text", plain text) | ("open", the tag's markup) | ("close", the tag's name)
Piece = tuple[str, str]
INLINE = frozenset({"a", "em", "strong", "b", "i", "code"})
_TAG_NAME = re.compile(r"<([a-z]+)")
_HREF = re.compile(r'href="([^"]*)"')
_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")
# A sentence ends at . ! ? or … (and any closing quotes or brackets) before a space and a capital,
# a digit or an opening quote, or at the end of the block.
_SENTENCE_END = re.compile(r"[.!?…][\"”’')\]]*(?=\s+[\"“‘'(\[]?[A-Z0-9À-ÖØ-Þ]|\s*$)")
# The longest abbreviation is four letters: the window holds it, the character before it (for
# its word boundary) and one more, so a window's own start never makes a false word boundary.
_ABBREVIATION_WINDOW = 6
_ABBREVIATION = re.compile(r"(?:\b[A-Z]|\b(?:Mr|Mrs|Ms|Dr|St|Prof|Gen|Gov|Sen|Rep|Lt|Col|Jr|Sr|No|vs|etc|Inc|Ltd))\.$")


@dataclass(frozen=True)
class Block:
    """A paragraph ("p") or list item ("li") with its inline markup."""

    kind: str
    pieces: tuple[Piece, ...]

    @cached_property
    def text(self) -> str:
        return "".join(value for kind, value in self.pieces if kind == "text")

    @cached_property
    def plain(self) -> str:
        """The text for the plain-text part: each link's URL follows its words, in angle brackets."""
        parts, hrefs = [], []
        for kind, value in self.pieces:
            if kind == "text":
                parts.append(value)
            elif kind == "open" and value.startswith("<a "):
                hrefs.append(html.unescape(_HREF.search(value)[1]))  # type: ignore[index]
            elif value == "</a>" and hrefs:
                href = hrefs.pop()
                parts.append(f" <{href}>" if href.removeprefix("mailto:") not in parts[-1:] else "")
        return "".join(parts)

    @cached_property
    def html(self) -> str:
        parts = []
        for kind, value in self.pieces:
            parts.append(html.escape(value, quote=False) if kind == "text" else value)
        return "".join(parts)

    def cut(self, length: int, ending: str = "") -> Block:
        """The block's first `length` characters of text, its open tags closed, plus `ending`."""
        kept: list[Piece] = []
        left, open_tags = length, []
        for kind, value in self.pieces:
            if kind == "text":
                if left <= 0:
                    break
                kept.append((kind, value[:left]))
                left -= len(value)
                continue
            if left <= 0 and kind == "open":
                break
            kept.append((kind, value))
            if kind == "open":
                open_tags.append(_TAG_NAME.match(value)[1])  # type: ignore[index]
            elif open_tags:
                open_tags.pop()
        kept.extend(("close", f"</{tag}>") for tag in reversed(open_tags))
        if ending:
            kept.append(("text", ending))
        return Block(self.kind, tuple(kept))


class _Blocks(HTMLParser):
    """Collects block elements (paragraphs, headings, list items …) with their inline links and emphasis."""

    BLOCKS: ClassVar[frozenset[str]] = frozenset(
        {"p", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "div", "tr", "figcaption", "dt", "dd"}
    )

    def __init__(self, base: str | None) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base
        self.blocks: list[Block] = []
        self._kind = "p"
        self._pieces: list[Piece] = []
        self._open: list[str] = []

    def _flush(self) -> None:
        for tag in reversed(self._open):
            self._pieces.append(("close", f"</{tag}>"))
        pieces = _tidy(self._pieces)
        if any(kind == "text" for kind, _ in pieces):
            self.blocks.append(Block(self._kind, pieces))
        self._pieces, self._open = [], []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BLOCKS:
            self._flush()
            self._kind = "li" if tag == "li" else "p"
        elif tag == "br":
            self._pieces.append(("text", " "))
        elif tag in INLINE:
            markup = f"<{tag}>"
            if tag == "a":
                href = absolute(safe_url(dict(attrs).get("href") or ""), self.base)
                if not href:
                    return
                markup = f'<a href="{html.escape(href, quote=True)}">'
            self._open.append(tag)
            self._pieces.append(("open", markup))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.BLOCKS:
            self._flush()
            self._kind = "p"
        elif tag in self._open:
            while self._open:
                name = self._open.pop()
                self._pieces.append(("close", f"</{name}>"))
                if name == tag:
                    break

    def handle_data(self, data: str) -> None:
        self._pieces.append(("text", data))

    def close(self) -> None:
        super().close()
        self._flush()


def _tidy(pieces: list[Piece]) -> tuple[Piece, ...]:
    """Whitespace collapsed across the pieces, trimmed at both ends; empty tag pairs dropped."""
    out: list[Piece] = []
    space = True  # a space was just written (or nothing yet): drop leading spaces
    for kind, value in pieces:
        if kind != "text":
            if kind == "close" and out and out[-1][0] == "open":
                out.pop()
            else:
                out.append((kind, value))
            continue
        collapsed = re.sub(r"\s+", " ", value)
        if space:
            collapsed = collapsed.lstrip(" ")
        if collapsed:
            out.append(("text", collapsed))
            space = collapsed.endswith(" ")
    for index in range(len(out) - 1, -1, -1):  # trailing space
        kind, value = out[index]
        if kind == "text":
            out[index] = (kind, value.rstrip(" "))
            break
    return tuple(piece for piece in out if piece != ("text", ""))


def absolute(href: str, base: str | None) -> str:
    """`href` resolved against `base` (the article's URL); a relative link with no base to resolve
    against is "" (it would point nowhere in an email). `base` None keeps links as written."""
    if base is None or not href or _SCHEME.match(href):
        return href
    if urlsplit(base).scheme not in ("http", "https"):
        return ""
    return safe_url(urljoin(base, href))


@lru_cache(maxsize=512)
def html_blocks(fragment: str, base: str | None = None) -> tuple[Block, ...]:
    """A fragment of HTML as blocks, whitespace collapsed (memoised: it is pure). With a `base`,
    relative links are resolved against it ("" drops them); None keeps them as written."""
    parser = _Blocks(base)
    parser.feed(fragment)
    parser.close()
    return tuple(parser.blocks)


def sentence_ends(text: str) -> list[int]:
    """Where the sentences of `text` end (offsets just after their final punctuation).

    Linear in the length of `text`: whether a stop ends an abbreviation is read from the few
    characters before it (`_ABBREVIATION_WINDOW`), never from the whole text up to it."""
    return [match.end() for match in _SENTENCE_END.finditer(text) if not _abbreviation_before(text, match.start())]


def _abbreviation_before(text: str, stop: int) -> bool:
    """Whether the full stop at `stop` ends an abbreviation ("Dr.", "U.S.", "etc.")."""
    return _ABBREVIATION.search(text[max(0, stop - _ABBREVIATION_WINDOW) : stop + 1]) is not None


def shorten(blocks: Sequence[Block], limit: int | None) -> tuple[list[Block], bool]:
    """Whole blocks up to `limit` characters, then the sentences of the next block that fit.

    A teaser ends on a sentence: when not even the first block's first sentence fits, that
    sentence is kept whole if it is under twice the limit, else cut at a word with an ellipsis.
    """
    if limit is None:
        return list(blocks), False
    kept: list[Block] = []
    left = limit
    for block in blocks:
        if left <= 0:
            return kept, True
        if len(block.text) <= left:
            kept.append(block)
            left -= len(block.text)
            continue
        ends = sentence_ends(block.text)
        fitting = [end for end in ends if end <= left]
        if fitting:
            kept.append(block.cut(fitting[-1]))
        elif not kept and ends and ends[0] <= 2 * limit:
            kept.append(block.cut(ends[0]))
        elif not kept and limit:
            words = block.text[:left].rsplit(" ", 1)[0].rstrip(",;:–—- ")
            kept.append(block.cut(len(words), "…"))
        return kept, True
    return kept, False


def blocks_html(blocks: Sequence[Block]) -> str:
    parts: list[str] = []
    items: list[str] = []
    for block in blocks:
        if block.kind == "li":
            items.append(f"<li>{block.html}</li>")
            continue
        if items:
            parts.append("<ul>" + "".join(items) + "</ul>")
            items = []
        parts.append(f"<p>{block.html}</p>")
    if items:
        parts.append("<ul>" + "".join(items) + "</ul>")
    return "".join(parts)


def blocks_text(blocks: Sequence[Block]) -> str:
    lines: list[str] = []
    for index, block in enumerate(blocks):
        previous = blocks[index - 1].kind if index else None
        if lines and not (block.kind == "li" and previous == "li"):
            lines.append("")
        lines.append(f"  • {block.plain}" if block.kind == "li" else block.plain)
    return "\n".join(lines)


def first_sentences(blocks: Sequence[Block], limit: int) -> str:
    """Plain text of the first block's sentences that fit `limit` characters (the inbox preview
    line); a first sentence longer than that is cut at a word with an ellipsis."""
    if not blocks:
        return ""
    text = blocks[0].text
    if len(text) <= limit:
        return text
    fitting = [end for end in sentence_ends(text) if end <= limit]
    if fitting:
        return text[: fitting[-1]]
    return text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:–—- ") + "…"
