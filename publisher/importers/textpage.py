"""The "textpage" format: a plain-text capture of a publication's front page.

Articles are listed newest first. A teaser ends with `Continue reading <Title>`, its title being
the last line above that reads exactly `<Title>`. Text between the previous article and that
title is one full post whose first non-blank line is its title. Lines starting with `•` are list
items. A capture has no dates: article i (0 = newest) is dated `as_of - i minutes`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from publisher.errors import ContentError
from publisher.model import Draft
from publisher.text import cut, quoted, slugify

MARKER = "Continue reading "
BULLET = "•"


@dataclass(frozen=True)
class _Block:
    """An article's lines, with the 1-based line number of its title for error messages."""

    title: str
    title_line: int
    body: list[str]
    truncated: bool


def blocks_to_html(lines: list[str]) -> str:
    """Paragraphs as <p>, runs of `•` lines as one <ul>; typography kept as written."""
    parts: list[str] = []
    items: list[str] = []
    for raw in lines:
        line = raw.strip()
        if line.startswith(BULLET):
            items.append(f"<li>{html.escape(line[len(BULLET) :].strip(), quote=False)}</li>")
            continue
        if items:
            parts.append("<ul>" + "".join(items) + "</ul>")
            items = []
        if line:
            parts.append(f"<p>{html.escape(line, quote=False)}</p>")
    if items:
        parts.append("<ul>" + "".join(items) + "</ul>")
    return "\n".join(parts)


def _full_post(lines: list[str], first_line: int) -> _Block | None:
    for offset, line in enumerate(lines):
        if line.strip():
            return _Block(line.strip(), first_line + offset, lines[offset + 1 :], truncated=False)
    return None


def _split(lines: list[str], where: str) -> list[_Block]:
    blocks: list[_Block] = []
    start = 0  # index of the first line after the previous article
    for index, line in enumerate(lines):
        if not line.strip().startswith(MARKER):
            continue
        title = line.strip()[len(MARKER) :].strip()
        title_index = next((i for i in range(index - 1, start - 1, -1) if lines[i].strip() == title), None)
        if not title or title_index is None:
            raise ContentError(
                f'{where}:{index + 1}: "Continue reading {cut(title)}" closes a teaser, but no line '
                f"above it (after the previous article) is exactly that title"
            )
        if (post := _full_post(lines[start:title_index], start + 1)) is not None:
            blocks.append(post)
        blocks.append(_Block(title, title_index + 1, lines[title_index + 1 : index], truncated=True))
        start = index + 1
    if (post := _full_post(lines[start:], start + 1)) is not None:
        blocks.append(post)
    return blocks


def _summary(block: _Block) -> str:
    if block.truncated:
        return blocks_to_html(block.body)
    first = next((line for line in block.body if line.strip()), "")
    return blocks_to_html([first])


def decode(data: bytes, where: str) -> str:
    if b"\x00" in data:
        raise ContentError(f"{where}:1: binary data (NUL bytes), not a text capture")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ContentError(f"{where}:{line}: not UTF-8 text (byte offset {error.start})") from None


def parse_textpage(text: str, *, where: str, as_of: datetime, source: str = "") -> list[Draft]:
    """Parse a capture into drafts, newest first. Raises ContentError naming file and line."""
    if as_of.tzinfo is None:
        raise ContentError(f"{where}: --as-of needs a time zone offset")
    if not text.strip():
        raise ContentError(f"{where}:1: the capture is empty")
    drafts: list[Draft] = []
    seen: dict[str, int] = {}
    for position, block in enumerate(_split(text.splitlines(), where)):
        slug = slugify(block.title)
        if not slug:
            raise ContentError(
                f"{where}:{block.title_line}: title {quoted(block.title)} has no letters or digits for a slug"
            )
        if slug in seen:
            raise ContentError(
                f"{where}:{block.title_line}: article {quoted(block.title)} appears twice (first at line {seen[slug]})"
            )
        seen[slug] = block.title_line
        drafts.append(
            Draft(
                key=slug,
                slug=slug,
                title=block.title,
                summary_html=_summary(block),
                content_html=blocks_to_html(block.body),
                truncated=block.truncated,
                published=as_of - timedelta(minutes=position),
                source=source or where,
            )
        )
    return drafts


def read_textpage(path: Path, *, as_of: datetime) -> list[Draft]:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ContentError(f"{path}: cannot read: {error.strerror}") from None
    return parse_textpage(decode(data, str(path)), where=str(path), as_of=as_of, source=path.name)
