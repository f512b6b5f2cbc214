"""Markdown files with YAML (`---`) or TOML (`+++`) front matter; `<!--more-->` marks the teaser."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, time
from pathlib import Path

import nh3
import yaml
from markdown_it import MarkdownIt

from publisher.errors import ContentError
from publisher.importers.textpage import decode
from publisher.model import Draft
from publisher.text import slugify

MORE = "<!--more-->"
_FENCES = {"---": "yaml", "+++": "toml"}
_KNOWN_KEYS = {"title", "date", "updated", "tags", "authors", "author", "slug", "summary", "draft"}
_markdown = MarkdownIt("commonmark", {"typographer": False}).enable("table").enable("strikethrough")


def render_markdown(text: str) -> str:
    """Markdown to sanitised HTML (scripts, event handlers and unknown tags removed)."""
    return nh3.clean(_markdown.render(text)).strip()


def _split_front_matter(text: str, where: str) -> tuple[dict, str, int]:
    """(front matter, body, line number where the body starts)."""
    lines = text.splitlines(keepends=True)
    fence = lines[0].strip() if lines else ""
    if fence not in _FENCES:
        raise ContentError(f"{where}:1: missing front matter: start the file with --- (YAML) or +++ (TOML)")
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == fence), None)
    if end is None:
        raise ContentError(f"{where}:1: front matter opened with {fence} is never closed")
    raw = "".join(lines[1:end])
    try:
        data = yaml.safe_load(raw) if _FENCES[fence] == "yaml" else tomllib.loads(raw)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 2 if mark else 1
        raise ContentError(f"{where}:{line}: invalid YAML front matter: {getattr(error, 'problem', error)}") from None
    except tomllib.TOMLDecodeError as error:
        raise ContentError(f"{where}:1: invalid TOML front matter: {error}") from None
    except ValueError as error:  # YAML's timestamps: "2025-13-45" parses as a date, then fails
        raise ContentError(f"{where}:2: invalid front matter: {error}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ContentError(f"{where}:2: front matter must be a table of keys, got {type(data).__name__}")
    return data, "".join(lines[end + 1 :]), end + 2


split_front_matter = _split_front_matter  # for other Markdown files with front matter (announcements)


def _as_datetime(value: object, key: str, where: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time(0, 0))
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ContentError(f"{where}: front matter {key}: {value!r} is not an ISO-8601 date") from None
    else:
        raise ContentError(f"{where}: front matter {key}: expected a date, got {value!r}")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _string_list(value: object, key: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(item.strip() for item in value if item.strip())
    raise ContentError(f"{where}: front matter {key}: expected a list of strings, got {value!r}")


def parse_markdown(text: str, *, where: str, now: datetime, source: str = "") -> Draft | None:
    """One Markdown file as a draft; None for a file marked `draft: true`."""
    meta, body, _ = _split_front_matter(text, where)
    unknown = sorted(set(meta) - _KNOWN_KEYS)
    if unknown:
        raise ContentError(
            f"{where}: unknown front matter key {', '.join(unknown)} (known: {', '.join(sorted(_KNOWN_KEYS))})"
        )
    if meta.get("draft") is True:
        return None
    title = meta.get("title")
    if not isinstance(title, str) or not title.strip():
        raise ContentError(f"{where}: front matter needs a title")
    published = _as_datetime(meta["date"], "date", where) if "date" in meta else now
    updated = _as_datetime(meta["updated"], "updated", where) if "updated" in meta else published
    slug = slugify(str(meta.get("slug") or title))
    if not slug:
        raise ContentError(f"{where}: the title {title!r} gives an empty slug; set `slug` in the front matter")
    teaser, more, _rest = body.partition(MORE)
    content_html = render_markdown(body.replace(MORE, ""))
    if isinstance(meta.get("summary"), str):
        summary_html = render_markdown(meta["summary"])
    else:
        summary_html = render_markdown(teaser) if more else content_html
    authors = _string_list(meta.get("authors", meta.get("author")), "authors", where)
    return Draft(
        key=slug,
        slug=slug,
        title=title.strip(),
        summary_html=summary_html,
        content_html=content_html,
        truncated=bool(more),
        published=published,
        updated=updated,
        authors=authors,
        tags=_string_list(meta.get("tags"), "tags", where),
        source=source or where,
    )


def read_markdown(path: Path, *, now: datetime) -> list[Draft]:
    """A .md file, or every .md file under a folder, newest first."""
    files = sorted(path.rglob("*.md")) if path.is_dir() else [path]
    if not files:
        raise ContentError(f"{path}: no .md files in this folder")
    drafts: list[Draft] = []
    seen: dict[str, Path] = {}
    for file in files:
        try:
            data = file.read_bytes()
        except OSError as error:
            raise ContentError(f"{file}: cannot read: {error.strerror}") from None
        draft = parse_markdown(decode(data, str(file)), where=str(file), now=now, source=file.name)
        if draft is None:
            continue
        if draft.slug in seen:
            raise ContentError(f"{file}: slug {draft.slug!r} is already used by {seen[draft.slug]}")
        seen[draft.slug] = file
        drafts.append(draft)
    return sorted(drafts, key=lambda d: d.published, reverse=True)
