"""Rendering an issue once: Jinja2 → MJML → mjml-python → css-inline → HTML, plus a plain-text part.

Per-recipient values never reach the compiler: templates write this render's placeholder tokens
(`model.new_placeholders`, random per render so content cannot forge one), and
`message.CompiledMessage.personalise` fills them in each recipient's message. The Gmail clip
guard (`publisher.clip`) keeps the HTML under budget; teasers come from `publisher.teasers`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import jinja2
import jinja2.meta

from publisher.clip import Layout, fit
from publisher.config import NewsletterSettings, Settings
from publisher.links import article_url
from publisher.model import PLACEHOLDER_KEYS, Article, RenderedIssue, new_placeholders
from publisher.selection import Digest
from publisher.teasers import blocks_html, blocks_text, html_blocks, shorten
from publisher.templates import check_mjml_tags, compile_mjml, environment, render_string, render_template
from publisher.text import header_safe, safe_links
from publisher.topics import digest_sections

OVERFLOW_SHOWN = 50
FULL = Layout()  # every article in full, whole teasers
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


def article_view(article: Article, newsletter: NewsletterSettings, limit: int | None, site_url: str) -> ArticleView:
    kept, shortened = shorten(html_blocks(article.summary_html), limit)
    teaser = safe_links(article.summary_html) if limit is None else blocks_html(kept)
    local = article.published.astimezone(newsletter.zone)
    return ArticleView(
        title=article.title,
        url=article_url(article, site_url),
        date=day_month(local, year=True),
        published=local,
        tags=article.tags,
        teaser_html=teaser,
        teaser_text=blocks_text(kept),
        more=article.truncated or shortened or article.summary_html.strip() != article.content_html.strip(),
    )


def view_url(settings: Settings, newsletter: str, number: int) -> str:
    return f"{settings.site.url}/archive/{newsletter}/{number}.html"


def summary_line(count: int, since: datetime | None, date: datetime) -> str:
    noun = "article" if count == 1 else "articles"
    if since is None:
        return f"{count} new {noun}"
    return f"{count} new {noun} since {day_month(since, year=since.year != date.year)}"


def context(
    digest: Digest, settings: Settings, newsletter: NewsletterSettings, layout: Layout = FULL
) -> dict[str, object]:
    """Everything the digest templates (email, text, archive, subject) may use."""
    keep = len(digest.articles) if layout.keep is None else layout.keep
    site_url = settings.site.url
    shown = [article_view(a, newsletter, layout.teaser_limit, site_url) for a in digest.articles[:keep]]
    overflow = [article_view(a, newsletter, 0, site_url) for a in (*digest.articles[keep:], *digest.overflow)]
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
            for title, group in digest_sections(digest, digest.articles[:keep], newsletter)
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
        text=_tidy_text(render_template(env, text_name, values)),
        view_url=str(base["view_url"]),
        trimmed=tuple(trimmed),
        placeholders=placeholders,
    )
