"""Rendering an issue once: Jinja2 → MJML → mjml-python → css-inline → HTML, plus a plain-text part.

Per-recipient values never reach the compiler: templates write this render's placeholder tokens
(`model.new_placeholders`, random per render so content cannot forge one), and `personalise`
fills them in each recipient's copy at str.replace cost. The Gmail clip guard keeps
the HTML under `HTML_BUDGET` bytes by shortening teasers, then moving articles to the overflow.
"""

from __future__ import annotations

import html
import re
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from html.parser import HTMLParser
from typing import ClassVar

import css_inline
import jinja2
import jinja2.meta
import mjml

from publisher.config import NewsletterSettings, Settings
from publisher.digest import Digest, sections
from publisher.errors import TemplateError
from publisher.model import PLACEHOLDER_KEYS, Article, RenderedIssue, new_placeholders
from publisher.resources import templates_dir
from publisher.text import header_safe, safe_links, safe_url

# Gmail clips an HTML part above 102 KB; keep room for the filled-in links and addresses.
HTML_BUDGET = 96 * 1024
TEASER_LEVELS: tuple[int | None, ...] = (None, 600, 300, 0)  # characters; None = the whole teaser
OVERFLOW_SHOWN = 50
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MJML_TAGS = frozenset(
    {
        "mjml",
        "mj-head",
        "mj-body",
        "mj-attributes",
        "mj-all",
        "mj-class",
        "mj-breakpoint",
        "mj-font",
        "mj-html-attributes",
        "mj-html-attribute",
        "mj-selector",
        "mj-preview",
        "mj-style",
        "mj-title",
        "mj-raw",
        "mj-include",
        "mj-accordion",
        "mj-accordion-element",
        "mj-accordion-title",
        "mj-accordion-text",
        "mj-button",
        "mj-carousel",
        "mj-carousel-image",
        "mj-column",
        "mj-divider",
        "mj-group",
        "mj-hero",
        "mj-image",
        "mj-navbar",
        "mj-navbar-link",
        "mj-section",
        "mj-social",
        "mj-social-element",
        "mj-spacer",
        "mj-table",
        "mj-text",
        "mj-wrapper",
    }
)
_MJ_TAG = re.compile(r"<\s*/?\s*(mj-[A-Za-z0-9_-]+|mjml)\b")


# -- templates ----------------------------------------------------------------------------------


def environment(settings: Settings) -> jinja2.Environment:
    """The operator's template folder first (when set), then the bundled templates."""
    folders = [settings.templates.dir] if settings.templates.dir else []
    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(f)) for f in [*folders, templates_dir()]])
    return jinja2.Environment(
        loader=loader,
        autoescape=jinja2.select_autoescape(["html", "mjml", "html.j2", "mjml.j2"], default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _location(error: Exception, fallback: str) -> str:
    """`file:line` of the template frame an error was raised in (Jinja rewrites tracebacks so)."""
    if isinstance(error, jinja2.TemplateSyntaxError):
        return f"{error.filename or error.name or fallback}:{error.lineno}"
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if frame.filename.endswith(".j2") or frame.filename == "<template>":
            name = fallback if frame.filename == "<template>" else frame.filename
            return f"{name}:{frame.lineno}"
    return fallback


def render_template(env: jinja2.Environment, name: str, context: Mapping[str, object]) -> str:
    """Render one template file, turning any Jinja error into a TemplateError naming file and line."""
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateNotFound as error:
        raise TemplateError(f"template {error.name} not found in {_folders(env)}") from None
    except jinja2.TemplateError as error:
        where = _location(error, name)
        message = error.message if isinstance(error, jinja2.TemplateSyntaxError) else str(error)
        raise TemplateError(f"{where}: {message}") from None


def render_string(source: str, context: Mapping[str, object], where: str) -> str:
    """Render a one-line template from config (subject, preheader), naming the key on errors."""
    env = jinja2.Environment(autoescape=False)  # noqa: S701 - a header line, not HTML
    try:
        return env.from_string(source).render(context)
    except jinja2.TemplateSyntaxError as error:
        raise TemplateError(f"{where}: {error.message} (line {error.lineno})") from None
    except jinja2.TemplateError as error:
        raise TemplateError(f"{where}: {error}") from None


def _folders(env: jinja2.Environment) -> str:
    loaders = getattr(env.loader, "loaders", [env.loader])
    return ", ".join(str(path) for loader in loaders for path in getattr(loader, "searchpath", []))


def _sources(env: jinja2.Environment, name: str) -> list[tuple[str, str]]:
    """(filename, source) of a template and every template it includes, extends or imports."""
    found: list[tuple[str, str]] = []
    pending, seen = [name], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        source, filename, _ = env.loader.get_source(env, current)
        found.append((filename or current, source))
        pending.extend(n for n in jinja2.meta.find_referenced_templates(env.parse(source)) if n)
    return found


def check_mjml_tags(env: jinja2.Environment, name: str, rendered: str) -> None:
    """mjml-python passes unknown mj-* tags through silently; refuse them, naming file and line."""
    unknown = sorted({tag for tag in _MJ_TAG.findall(rendered) if tag.lower() not in MJML_TAGS})
    if not unknown:
        return
    tag = unknown[0]
    for filename, source in _sources(env, name):
        for number, line in enumerate(source.splitlines(), start=1):
            if re.search(rf"<\s*/?\s*{re.escape(tag)}\b", line):
                raise TemplateError(
                    f"{filename}:{number}: unknown MJML tag <{tag}> (check the spelling; "
                    f"see https://documentation.mjml.io for the tags MJML knows)"
                )
    line = rendered[: rendered.find(tag)].count("\n") + 1
    raise TemplateError(f"{name}: unknown MJML tag <{tag}> at line {line} of the rendered MJML")


def compile_mjml(source: str, name: str) -> str:
    """MJML → HTML with every <style> rule also inlined (media queries stay in the <style> tags)."""
    try:
        compiled = mjml.mjml2html(source, disable_comments=True, fonts={})
    except ValueError as error:
        raise TemplateError(f"{name}: the rendered MJML is not valid: {error}") from None
    inliner = css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)
    try:
        return inliner.inline(compiled)
    except css_inline.InlineError as error:
        raise TemplateError(f"{name}: cannot inline its CSS: {error}") from None


# -- HTML teasers to text -------------------------------------------------------------------------


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

    def handle_starttag(self, tag: str, attrs) -> None:
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


# -- the context templates see --------------------------------------------------------------------


def day_month(moment: datetime, *, year: bool = False) -> str:
    text = f"{moment.day} {MONTHS[moment.month - 1]}"
    return f"{text} {moment.year}" if year else text


def long_date(moment: datetime) -> str:
    return f"{DAYS[moment.weekday()]} {day_month(moment, year=True)}"


@dataclass(frozen=True)
class ArticleView:
    """One article as templates show it, its teaser already cut to the current length."""

    title: str
    url: str
    date: str
    published: datetime
    tags: tuple[str, ...]
    teaser_html: str
    teaser_text: str
    more: bool  # "Continue reading →": the teaser is not the whole article


def article_view(article: Article, newsletter: NewsletterSettings, limit: int | None) -> ArticleView:
    kept, shortened = shorten(html_blocks(article.summary_html), limit)
    teaser = safe_links(article.summary_html) if limit is None else blocks_html(kept)
    local = article.published.astimezone(newsletter.zone)
    return ArticleView(
        title=article.title,
        url=safe_url(article.url),
        date=day_month(local, year=True),
        published=local,
        tags=article.tags,
        teaser_html=teaser,
        teaser_text=blocks_text(kept),
        more=article.truncated or shortened or article.summary_html.strip() != article.content_html.strip(),
    )


@dataclass(frozen=True)
class Layout:
    """How much of the digest the clip guard lets through."""

    teaser_limit: int | None = None
    keep: int | None = None  # how many articles stay in full; the rest join the overflow


def view_url(settings: Settings, newsletter: str, number: int) -> str:
    return f"{settings.site.url}/archive/{newsletter}/{number}.html"


def summary_line(count: int, since: datetime | None, date: datetime) -> str:
    noun = "article" if count == 1 else "articles"
    if since is None:
        return f"{count} new {noun}"
    return f"{count} new {noun} since {day_month(since, year=since.year != date.year)}"


def context(
    digest: Digest, settings: Settings, newsletter: NewsletterSettings, layout: Layout = Layout()
) -> dict[str, object]:
    """Everything the digest templates (email, text, archive, subject) may use."""
    keep = len(digest.articles) if layout.keep is None else layout.keep
    shown = [article_view(a, newsletter, layout.teaser_limit) for a in digest.articles[:keep]]
    overflow = [article_view(a, newsletter, 0) for a in (*digest.articles[keep:], *digest.overflow)]
    view_of = {id(article): view for article, view in zip(digest.articles, shown, strict=False)}
    date = digest.slot.astimezone(newsletter.zone)
    since = digest.since.astimezone(newsletter.zone) if digest.since else None
    return {
        "site": settings.site,
        "newsletter": newsletter,
        "number": digest.number,
        "date": date,
        "date_long": long_date(date),
        "count": digest.count,
        "since": day_month(since, year=since.year != date.year) if since else "",
        "summary": summary_line(digest.count, since, date),
        "articles": shown,
        "sections": [
            {"title": title, "articles": [view_of[id(a)] for a in group]}
            for title, group in sections(digest.articles[:keep], newsletter.sections)
        ],
        "overflow": overflow[:OVERFLOW_SHOWN],
        "overflow_hidden": max(0, len(overflow) - OVERFLOW_SHOWN),
        "view_url": view_url(settings, digest.newsletter, digest.number),
        "archive_url": f"{settings.site.url}/archive/{digest.newsletter}/",
        "subscribe_url": f"{settings.site.url}/subscribe",
        "recipient": dict.fromkeys(PLACEHOLDER_KEYS, ""),  # render_digest puts its tokens here
    }


# -- rendering ------------------------------------------------------------------------------------


def render_subject(digest: Digest, settings: Settings, newsletter: NewsletterSettings) -> str:
    values = context(digest, settings, newsletter, Layout(teaser_limit=0))
    where = f"{settings.path}: newsletters.{newsletter.name}.subject"
    return header_safe(render_string(newsletter.subject, values, where))


def render_preheader(values: Mapping[str, object], settings: Settings, newsletter: NewsletterSettings) -> str:
    where = f"{settings.path}: newsletters.{newsletter.name}.preheader"
    return header_safe(render_string(newsletter.preheader, values, where))


def _tidy_text(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def _html(env: jinja2.Environment, name: str, values: Mapping[str, object]) -> str:
    source = render_template(env, name, values)
    check_mjml_tags(env, name, source)
    return compile_mjml(source, name)


def _fits(page: str) -> bool:
    return len(page.encode("utf-8")) <= HTML_BUDGET


def render_digest(
    digest: Digest,
    *,
    settings: Settings,
    newsletter: NewsletterSettings,
    subject: str | None = None,
    env: jinja2.Environment | None = None,
) -> RenderedIssue:
    """Compile the issue once: HTML and text with placeholder tokens left in them for `personalise`.

    Pass an `environment(settings)` to reuse its compiled templates across issues (a long-running
    process); without one, the templates are compiled for this call.
    """
    env = env or environment(settings)
    html_name, text_name = f"email/{newsletter.template}.mjml.j2", f"email/{newsletter.template}.txt.j2"
    subject = subject or render_subject(digest, settings, newsletter)
    base = context(digest, settings, newsletter)
    preheader = render_preheader(base, settings, newsletter)
    placeholders = new_placeholders()
    extra = {"subject": subject, "preheader": preheader, "recipient": placeholders}
    layout, page, trimmed = _guarded(env, html_name, digest, settings, newsletter, extra)
    values = {**context(digest, settings, newsletter, layout), **extra}
    return RenderedIssue(
        newsletter=digest.newsletter,
        subject=subject,
        preheader=preheader,
        html=page,
        text=_tidy_text(render_template(env, text_name, values)),
        view_url=str(base["view_url"]),
        trimmed=tuple(trimmed),
        placeholders=placeholders,
    )


def _guarded(
    env: jinja2.Environment,
    name: str,
    digest: Digest,
    settings: Settings,
    newsletter: NewsletterSettings,
    extra: Mapping[str, object],
) -> tuple[Layout, str, list[str]]:
    """The fullest layout whose HTML fits the budget: shorter teasers first, then fewer articles."""

    def attempt(layout: Layout) -> str:
        return _html(env, name, {**context(digest, settings, newsletter, layout), **extra})

    for limit in TEASER_LEVELS:
        page = attempt(Layout(teaser_limit=limit))
        if _fits(page):
            note = [] if limit is None else [f"teasers shortened to {limit} characters" if limit else "teasers removed"]
            return Layout(teaser_limit=limit), page, note
    low, high = 0, len(digest.articles)  # find the most articles that fit, without teasers
    best = Layout(teaser_limit=0, keep=0)
    while low <= high:
        middle = (low + high) // 2
        if _fits(attempt(Layout(teaser_limit=0, keep=middle))):
            best, low = Layout(teaser_limit=0, keep=middle), middle + 1
        else:
            high = middle - 1
    moved = [a.title for a in digest.articles[best.keep :]]
    return (
        best,
        attempt(best),
        ["teasers removed", f"moved {len(moved)} articles to the overflow list: " + "; ".join(moved)],
    )


# -- per recipient --------------------------------------------------------------------------------


def _token_pattern(placeholders: Mapping[str, str]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(token) for token in placeholders.values()) or r"(?!)")


class Personaliser:
    """A compiled text split once at its placeholders; `fill` joins one recipient's copy."""

    def __init__(self, compiled: str, placeholders: Mapping[str, str], *, is_html: bool = False) -> None:
        self.is_html = is_html
        key_of = {token: key for key, token in placeholders.items()}
        tokens = _token_pattern(placeholders)
        self.parts = tokens.split(compiled)
        self.keys = [key_of[token] for token in tokens.findall(compiled)]

    def fill(self, values: Mapping[str, str]) -> str:
        escape = html.escape if self.is_html else str
        filled = [escape(str(values.get(key, ""))) for key in self.keys]
        out = [self.parts[0]]
        for value, part in zip(filled, self.parts[1:], strict=False):
            out.append(value)
            out.append(part)
        return "".join(out)


def personalise(
    compiled: str, placeholders: Mapping[str, str], values: Mapping[str, str], *, is_html: bool = False
) -> str:
    """Fill this render's placeholder tokens (HTML-escaped when `is_html`); missing values become ""."""
    return Personaliser(compiled, placeholders, is_html=is_html).fill(values)
