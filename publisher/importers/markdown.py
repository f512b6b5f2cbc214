"""Markdown files with YAML (`---`) or TOML (`+++`) front matter; `<!--more-->` marks the teaser."""

from __future__ import annotations

import hashlib
import reprlib
import tomllib
from datetime import UTC, date, datetime, time
from pathlib import Path

import nh3
import yaml
from markdown_it import MarkdownIt

from publisher.errors import ContentError
from publisher.importers.textpage import decode
from publisher.model import Draft
from publisher.text import MAX_HTML_DEPTH, SAFE_SCHEMES, slugify, too_deep

MORE = "<!--more-->"
_FENCES = {"---": "yaml", "+++": "toml"}
PATH_KEY = "md:"  # a Markdown article without a `slug` is keyed by its file: "md:" + the path in its folder
_KNOWN_KEYS = {"title", "date", "updated", "tags", "authors", "author", "slug", "summary", "draft"}
_markdown = MarkdownIt("commonmark", {"typographer": False}).enable("table").enable("strikethrough")


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 2, 4, 4


def _shown(value: object) -> str:
    """A value for an error message, cut short: the message stays one line of bounded size."""
    return _REPR.repr(value) if not isinstance(value, str) else _REPR.repr(value.replace("\n", " "))


def _cut(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases: `*name` can expand a few hundred bytes into gigabytes ("billion laughs")."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in front matter", mark)
        return super().compose_node(parent, index)


def render_markdown(text: str) -> str:
    """Markdown to sanitised HTML (scripts, event handlers, unknown tags and links other than
    http, https and mailto removed); ContentError when it nests deeper than MAX_HTML_DEPTH
    levels (the sanitiser's time grows faster than the depth)."""
    markup = _markdown.render(text)
    if too_deep(markup):
        raise ContentError(f"its HTML nests deeper than {MAX_HTML_DEPTH} levels")
    return nh3.clean(markup, url_schemes=set(SAFE_SCHEMES)).strip()


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
        data = yaml.load(raw, Loader=_NoAliasLoader) if _FENCES[fence] == "yaml" else tomllib.loads(raw)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 2 if mark else 1
        raise ContentError(
            f"{where}:{line}: invalid YAML front matter: {_cut(getattr(error, 'problem', None) or str(error))}"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ContentError(f"{where}:1: invalid TOML front matter: {_cut(str(error))}") from None
    except ValueError as error:  # YAML's timestamps: "2025-13-45" parses as a date, then fails
        raise ContentError(f"{where}:2: invalid front matter: {_cut(str(error))}") from None
    except RecursionError:
        raise ContentError(f"{where}:2: invalid front matter: nested too deeply") from None
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
            raise ContentError(f"{where}: front matter {key}: {_shown(value)} is not an ISO-8601 date") from None
    else:
        raise ContentError(f"{where}: front matter {key}: expected a date, got {_shown(value)}")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _string_list(value: object, key: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(item.strip() for item in value if item.strip())
    raise ContentError(f"{where}: front matter {key}: expected a list of strings, got {_shown(value)}")


def _path_key(path: str) -> str:
    """A file's key; a path longer than the store's column is keyed by its hash."""
    key = f"{PATH_KEY}{path}"
    return key if len(key) <= 500 else f"{PATH_KEY}sha256:{hashlib.sha256(path.encode()).hexdigest()}"


def parse_markdown(text: str, *, where: str, now: datetime, source: str = "", path: str = "") -> Draft | None:
    """One Markdown file as a draft; None for a file marked `draft: true`.

    The article is known across imports by its `slug` when the front matter sets one, else by its
    file's `path` (so editing its title updates it in place); without either, by its title's slug."""
    meta, body, _ = _split_front_matter(text, where)
    unknown = sorted(str(key) for key in set(meta) - _KNOWN_KEYS)
    if unknown:
        raise ContentError(
            f"{where}: unknown front matter key {_cut(', '.join(unknown))} (known: {', '.join(sorted(_KNOWN_KEYS))})"
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
        raise ContentError(f"{where}: the title {_shown(title)} gives an empty slug; set `slug` in the front matter")
    teaser, more, _rest = body.partition(MORE)
    try:
        content_html = render_markdown(body.replace(MORE, ""))
        if isinstance(meta.get("summary"), str):
            summary_html = render_markdown(meta["summary"])
        else:
            summary_html = render_markdown(teaser) if more else content_html
    except ContentError as error:
        raise ContentError(f"{where}: {error}") from None
    authors = _string_list(meta.get("authors", meta.get("author")), "authors", where)
    by_path = path and not meta.get("slug")
    return Draft(
        key=_path_key(path) if by_path else slug,
        former_key=slug if by_path else "",
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


def _check_inside(files: list[Path], folder: Path) -> None:
    """Symbolic links are followed only within the folder: one pointing elsewhere (a secret file,
    another site's drafts) is refused rather than published."""
    root = folder.resolve()
    for file in files:
        target = file.resolve()
        if not target.is_relative_to(root):
            raise ContentError(
                f"{file}: a symbolic link to {target}, outside the source folder {folder}; "
                f"copy the file in or remove the link"
            )


def read_markdown(path: Path, *, now: datetime) -> list[Draft]:
    """A .md file, or every .md file under a folder, newest first."""
    files = sorted(path.rglob("*.md")) if path.is_dir() else [path]
    if not files:
        raise ContentError(f"{path}: no .md files in this folder")
    if path.is_dir():
        _check_inside(files, path)
    drafts: list[Draft] = []
    seen: dict[str, Path] = {}
    for file in files:
        try:
            data = file.read_bytes()
        except OSError as error:
            raise ContentError(f"{file}: cannot read: {error.strerror}") from None
        inside = file.relative_to(path).as_posix() if path.is_dir() else file.name
        draft = parse_markdown(decode(data, str(file)), where=str(file), now=now, source=file.name, path=inside)
        if draft is None:
            continue
        if draft.slug in seen:
            raise ContentError(f"{file}: slug {draft.slug!r} is already used by {seen[draft.slug]}")
        seen[draft.slug] = file
        drafts.append(draft)
    return sorted(drafts, key=lambda d: d.published, reverse=True)
