"""Teasers as blocks: an article's HTML cut to whole paragraphs, list items and headings.

`html_blocks` reads a fragment into (tag, inner HTML) blocks, `shorten` keeps whole blocks up to a
character budget, and `blocks_html` / `blocks_text` write them back as HTML or plain text.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from functools import lru_cache
from html.parser import HTMLParser
from typing import ClassVar


class _Blocks(HTMLParser):
    """Collects the text of block elements: paragraphs, headings and list items."""

    BLOCKS: ClassVar[frozenset[str]] = frozenset(
        {"p", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "div", "tr"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, str]] = []
        self._kind = "p"
        self._text: list[str] = []

    def _flush(self) -> None:
        text = " ".join("".join(self._text).split())
        if text:
            self.blocks.append((self._kind, text))
        self._text = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BLOCKS:
            self._flush()
            self._kind = "li" if tag == "li" else "p"
        elif tag == "br":
            self._text.append(" ")
        elif tag == "img":
            alt = dict(attrs).get("alt") or ""
            self._text.append(f"[{alt}]" if alt else "")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.BLOCKS:
            self._flush()
            self._kind = "p"

    def handle_data(self, data: str) -> None:
        self._text.append(data)

    def close(self) -> None:
        super().close()
        self._flush()


@lru_cache(maxsize=512)
def html_blocks(fragment: str) -> tuple[tuple[str, str], ...]:
    """A fragment of HTML as ("p" | "li", text) blocks, whitespace collapsed (memoised: it is pure)."""
    parser = _Blocks()
    parser.feed(fragment)
    parser.close()
    return tuple(parser.blocks)


def shorten(blocks: Sequence[tuple[str, str]], limit: int | None) -> tuple[list[tuple[str, str]], bool]:
    """The first `limit` characters of the blocks, cut at a word with an ellipsis."""
    if limit is None:
        return list(blocks), False
    kept: list[tuple[str, str]] = []
    left = limit
    for kind, text in blocks:
        if left <= 0:
            return kept, True
        if len(text) <= left:
            kept.append((kind, text))
            left -= len(text)
            continue
        cut = text[:left].rsplit(" ", 1)[0].rstrip(",;:–—- ")
        if cut:
            kept.append((kind, cut + "…"))
        return kept, True
    return kept, False


def blocks_html(blocks: Sequence[tuple[str, str]]) -> str:
    parts: list[str] = []
    items: list[str] = []
    for kind, text in blocks:
        if kind == "li":
            items.append(f"<li>{html.escape(text, quote=False)}</li>")
            continue
        if items:
            parts.append("<ul>" + "".join(items) + "</ul>")
            items = []
        parts.append(f"<p>{html.escape(text, quote=False)}</p>")
    if items:
        parts.append("<ul>" + "".join(items) + "</ul>")
    return "".join(parts)


def blocks_text(blocks: Sequence[tuple[str, str]]) -> str:
    lines: list[str] = []
    for index, (kind, text) in enumerate(blocks):
        previous = blocks[index - 1][0] if index else None
        if lines and not (kind == "li" and previous == "li"):
            lines.append("")
        lines.append(f"  • {text}" if kind == "li" else text)
    return "\n".join(lines)
