"""Rendering an issue once: Jinja2 → MJML → mjml-python → css-inline → HTML, plus a plain-text part.

Per-recipient values never reach the compiler: templates write this render's placeholder tokens
(`model.new_placeholders`, random per render so content cannot forge one), and
`message.CompiledMessage.personalise` fills them in each recipient's message. The Gmail clip
guard (`publisher.clip`) keeps the HTML under budget; teasers come from `publisher.teasers`,
article images from `publisher.images`, and every word the render itself writes (dates, the
summary, bylines, the default subject) from `publisher.i18n` in `site.language`.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

import jinja2
import jinja2.meta

from publisher import i18n
from publisher.clip import Layout, fit
from publisher.config import NewsletterSettings, Settings
from publisher.images import Image, first_image
from publisher.links import article_url
from publisher.model import PLACEHOLDER_KEYS, Article, RenderedIssue, new_placeholders
from publisher.selection import Digest
from publisher.teasers import blocks_html, blocks_text, first_sentences, html_blocks, shorten
from publisher.templates import check_mjml_tags, compile_mjml, environment, render_string, render_template
from publisher.text import header_safe
from publisher.topics import OTHER_NEWS, digest_sections, topic_labels

OVERFLOW_SHOWN = 50
FULL = Layout()  # every article in full, whole teasers
SUBJECT_LIMIT = 78  # characters: longer subjects are cut off in inboxes
PREHEADER_LIMIT = 150  # characters of the lead teaser in the inbox preview line
PREHEADER_PADDING = 90  # invisible characters after it, so the preview line stops there
WORDS_PER_MINUTE = 230
TEXT_WIDTH = 72


# -- the context templates see --------------------------------------------------------------------


def day_month(moment: datetime, *, year: bool = False, language: str = "en") -> str:
    return i18n.day_month(moment, language, year=year)


def long_date(moment: datetime, language: str = "en") -> str:
    return i18n.long_date(moment, language)


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
    authors: tuple[str, ...] = ()
    byline: str = ""  # "By Ada Lovelace and Grace Hopper", translated; "" without authors
    reading_time: str = ""  # "4 min read", translated; "" when only a teaser is known
    image: Image | None = None  # absolute https, with width and alt; None when there is none usable


FIXED_HEADINGS = ("More", OTHER_NEWS)  # headings publisher gives (not the operator's): translated


def byline(authors: tuple[str, ...], language: str) -> str:
    if not authors:
        return ""
    _ = i18n.translations(language).gettext
    names = authors[0] if len(authors) == 1 else ", ".join(authors[:-1]) + _(" and ") + authors[-1]
    return _("By {authors}").format(authors=names)


def reading_time(article: Article, language: str) -> str:
    """ "4 min read" from the article's whole text; "" for a teaser (the rest is elsewhere)."""
    if article.truncated:
        return ""
    words = sum(len(block.text.split()) for block in html_blocks(article.content_html))
    minutes = max(1, round(words / WORDS_PER_MINUTE))
    return i18n.translations(language).ngettext("{n} min read", "{n} min read", minutes).format(n=minutes)


def article_view(
    article: Article, newsletter: NewsletterSettings, limit: int | None, site_url: str, language: str = "en"
) -> ArticleView:
    url = article_url(article, site_url)
    kept, shortened = shorten(html_blocks(article.summary_html, base=url), limit)
    local = article.published.astimezone(newsletter.zone)
    return ArticleView(
        title=article.title,
        url=url,
        date=day_month(local, year=True, language=language),
        published=local,
        tags=article.tags,
        teaser_html=blocks_html(kept),
        teaser_text=blocks_text(kept),
        more=article.truncated or shortened or article.summary_html.strip() != article.content_html.strip(),
        authors=article.authors,
        byline=byline(article.authors, language),
        reading_time=reading_time(article, language),
        image=first_image(article.content_html, article.summary_html, base=url, alt=article.title),
    )


def view_url(settings: Settings, newsletter: str, number: int) -> str:
    return f"{settings.site.url}/archive/{newsletter}/{number}.html"


def summary_line(count: int, since: datetime | None, date: datetime, language: str = "en") -> str:
    ngettext = i18n.translations(language).ngettext
    if since is None:
        return ngettext("{count} new article", "{count} new articles", count).format(count=count)
    when = day_month(since, year=since.year != date.year, language=language)
    return ngettext("{count} new article since {since}", "{count} new articles since {since}", count).format(
        count=count, since=when
    )


def lead_subject(titles: list[str], count: int, language: str = "en") -> str:
    """The lead headline and "+ N more", cut at a word to fit SUBJECT_LIMIT characters."""
    if not titles:
        return ""
    more = count - 1
    ngettext = i18n.translations(language).ngettext
    suffix = " " + ngettext("+ {n} more", "+ {n} more", more).format(n=more) if more > 0 else ""
    room = SUBJECT_LIMIT - len(suffix)
    title = " ".join(titles[0].split())
    if len(title) > room:
        title = title[: room - 1].rsplit(" ", 1)[0].rstrip(",;:–—- ") + "…"
    return title + suffix


def lead_teaser(articles: list[Article]) -> str:
    """The lead article's first sentences: the default inbox preview line."""
    return first_sentences(html_blocks(articles[0].summary_html), PREHEADER_LIMIT) if articles else ""


def context(
    digest: Digest, settings: Settings, newsletter: NewsletterSettings, layout: Layout = FULL
) -> dict[str, object]:
    """Everything the digest templates (email, text, archive, subject) may use."""
    keep = len(digest.articles) if layout.keep is None else layout.keep
    site_url, language = settings.site.url, settings.site.language
    shown = [article_view(a, newsletter, layout.teaser_limit, site_url, language) for a in digest.articles[:keep]]
    overflow = [article_view(a, newsletter, 0, site_url, language) for a in (*digest.articles[keep:], *digest.overflow)]
    if digest.topics:  # under topic headings, an article's meta names its topics, not raw tag slugs
        shown = [
            replace(view, tags=topic_labels(a, digest.topics)) for a, view in zip(digest.articles, shown, strict=False)
        ]
    view_of = {id(article): view for article, view in zip(digest.articles, shown, strict=False)}
    grouped = digest_sections(digest, digest.articles[:keep], newsletter)
    in_order = [article for _, group in grouped for article in group] or list(digest.articles)  # as shown
    gettext = i18n.translations(language).gettext
    date = newsletter.wall_clock(digest.slot)
    since = digest.since.astimezone(newsletter.zone) if digest.since else None
    summary = summary_line(digest.count, since, date, language)
    return {
        "site": settings.site,
        "newsletter": newsletter,
        "language": i18n.code(language),
        "number": digest.number,
        "date": date,
        "date_long": long_date(date, language),
        "count": digest.count,
        "since": day_month(since, year=since.year != date.year, language=language) if since else "",
        "summary": summary,
        "articles": shown,
        "lead": view_of.get(id(in_order[0])) if in_order else None,  # the first article shown
        "lead_subject": lead_subject([a.title for a in in_order], digest.count, language),
        "lead_teaser": lead_teaser(in_order) or summary,
        "sections": [
            {"title": gettext(title) if title in FIXED_HEADINGS else title, "articles": [view_of[id(a)] for a in group]}
            for title, group in grouped
        ],
        "overflow": overflow[:OVERFLOW_SHOWN],
        "overflow_hidden": max(0, len(overflow) - OVERFLOW_SHOWN),
        "view_url": view_url(settings, digest.newsletter, digest.number),
        "archive_url": f"{settings.site.url}/archive/{digest.newsletter}/",
        "subscribe_url": f"{settings.site.url}/subscribe",
        "site_link": newsletter.site_link,
        "preheader_padding": PREHEADER_PADDING,
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


_TOKEN = re.compile(r"@@[A-Z_]+\.[0-9A-F]+@@")  # a placeholder (model.new_placeholders)
TOKEN_WIDTH = 20  # a placeholder is measured as a typical address, whatever the token's own length


def _wrap(line: str) -> list[str]:
    """One line of the text part wrapped at TEXT_WIDTH; words (URLs) are never broken, and a
    placeholder counts as TOKEN_WIDTH characters (the value filled in later, not the token)."""
    tokens = _TOKEN.findall(line)
    stand_ins = [f"\x01{i}".ljust(TOKEN_WIDTH, "\x02") for i in range(len(tokens))]
    for token, stand_in in zip(tokens, stand_ins, strict=True):
        line = line.replace(token, stand_in, 1)
    if len(line) <= TEXT_WIDTH:
        lines = [line]
    else:
        item = re.match(r"(\s*(?:[•*-]|\d+\.) )", line)
        indent = " " * len(item[1]) if item else re.match(r"\s*", line)[0]  # type: ignore[index]
        lines = textwrap.wrap(
            line, TEXT_WIDTH, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
        ) or [line]
    for token, stand_in in zip(tokens, stand_ins, strict=True):
        lines = [part.replace(stand_in, token) for part in lines]
    return lines


def tidy_text(text: str) -> str:
    """The text part: lines wrapped at 72 characters, no trailing spaces but the signature
    separator's ("-- "), no runs of blank lines."""
    lines = []
    for raw in text.splitlines():
        line = raw.rstrip()
        lines.extend(["-- "] if line == "--" else _wrap(line))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def _html(env: jinja2.Environment, name: str, values: Mapping[str, object]) -> str:
    source = render_template(env, name, values)
    check_mjml_tags(env, name, source)
    return compile_mjml(source, name)


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

    def attempt(layout: Layout) -> str:
        return _html(env, html_name, {**context(digest, settings, newsletter, layout), **extra})

    layout, page, trimmed = fit(attempt, [article.title for article in digest.articles])
    values = {**context(digest, settings, newsletter, layout), **extra}
    return RenderedIssue(
        newsletter=digest.newsletter,
        subject=subject,
        preheader=preheader,
        html=page,
        text=tidy_text(render_template(env, text_name, values)),
        view_url=str(base["view_url"]),
        trimmed=tuple(trimmed),
        placeholders=placeholders,
    )
