"""The public site, pure: every page is a function of a `Snapshot` (what is published) and settings.

`Site(settings, snapshot, env)` answers `render(path)` for one path and `paths()` for every page;
the web app (`publisher.siteweb`) caches what it renders, the static export (`publisher.export`)
writes them all. Nothing here reads the database or the clock: `load_snapshot` in `siteweb` does.

URLs (see docs/site.md): `/` and `/page/N/` (newest articles), `/<slug>/` (an article),
`/tags/<slug>/` (+ `page/N/`), `/archive/` (every newsletter and its issues), `/sitemap.xml`,
`/robots.txt`; the 404 page is `not_found()`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import jinja2

from publisher import i18n, links
from publisher.config import NewsletterSettings, Settings
from publisher.feedformats import FORMATS, plain_text
from publisher.feeds import TAGS_DIR, absolute_links
from publisher.model import Article
from publisher.render import day_month
from publisher.signup import consent_sentence
from publisher.teasers import blocks_html, html_blocks, shorten
from publisher.templates import render_template
from publisher.text import tag_slug

HTML_TYPE = "text/html; charset=utf-8"
XML_TYPE = "application/xml; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
DESCRIPTION_LENGTH = 200
TEASER_LENGTH = 400  # characters of teaser in lists: whole paragraphs, as in the email
_PAGE = re.compile(r"^/page/([1-9][0-9]*)/$")
_TAG = re.compile(r"^/tags/([^/]+)/(?:page/([1-9][0-9]*)/)?$")
_ARTICLE = re.compile(r"^/([a-z0-9][a-z0-9-]*)/$")


@dataclass(frozen=True)
class ArchivedIssue:
    """One issue as the `/archive/` page lists it."""

    number: int
    subject: str
    slot: datetime
    articles: int


@dataclass(frozen=True)
class Snapshot:
    """What the site shows at one moment: published articles newest first, tags, archived issues."""

    articles: tuple[Article, ...]
    tags: dict[str, str]  # slug -> display name, of published articles only
    issues: dict[str, tuple[ArchivedIssue, ...]] = field(default_factory=dict)  # newsletter -> newest first


@dataclass(frozen=True)
class Page:
    body: bytes
    media_type: str = HTML_TYPE


def pages_needed(count: int, size: int) -> int:
    return max(1, -(-count // size))


def export_name(path: str) -> str:
    """Where a URL path lives in a static export: `/x/` is `x/index.html`, `/a.xml` is `a.xml`."""
    relative = unquote(path).lstrip("/")
    return relative + "index.html" if path.endswith("/") else relative


class Site:
    """Every page of the public site over one snapshot."""

    def __init__(self, settings: Settings, snapshot: Snapshot, env: jinja2.Environment) -> None:
        self.settings = settings
        self.snapshot = snapshot
        self.env = env
        self.site_url = settings.site.url
        self.size = settings.site.page_size
        self.zone = ZoneInfo(settings.site.timezone)
        self.gettext = i18n.translations(settings.site.language).gettext  # the templates' `_()` too

    # --- indexes over the snapshot ---------------------------------------------------------

    @cached_property
    def position(self) -> dict[str, int]:
        return {article.slug: index for index, article in enumerate(self.snapshot.articles)}

    @cached_property
    def tagged(self) -> dict[str, list[Article]]:
        """Each tag's articles, newest first (the store slugs tags the same way)."""
        found: dict[str, list[Article]] = {slug: [] for slug in sorted(self.snapshot.tags)}
        for article in self.snapshot.articles:
            for slug in dict.fromkeys(tag_slug(tag) for tag in article.tags):
                if slug in found:
                    found[slug].append(article)
        return found

    def tag_slug(self, name: str) -> str | None:
        slug = tag_slug(name)
        return slug if slug in self.snapshot.tags else None

    # --- routing ---------------------------------------------------------------------------

    def paths(self) -> list[str]:
        """Every page's path (the export writes each; the sitemap lists the canonical ones)."""
        found = [links.home_path(n) for n in range(1, pages_needed(len(self.snapshot.articles), self.size) + 1)]
        found += [links.page_path(article.slug) for article in self.snapshot.articles]
        for slug, articles in self.tagged.items():
            found += [links.tag_path(slug, n) for n in range(1, pages_needed(len(articles), self.size) + 1)]
        return [*found, "/archive/", "/sitemap.xml", "/robots.txt"]

    def render(self, path: str) -> Page | None:
        """The page at `path` (as requested or percent-encoded), or None when there is none (the
        caller answers 404)."""
        path = unquote(path)
        if path == "/":
            return self.home(1)
        if path == "/archive/":
            return self.archive()
        if path == "/sitemap.xml":
            return Page(self.sitemap().encode(), XML_TYPE)
        if path == "/robots.txt":
            return Page(self.robots().encode(), TEXT_TYPE)
        if match := _PAGE.match(path):
            return self.home(int(match[1])) if int(match[1]) > 1 else None
        if match := _TAG.match(path):
            number = int(match[2] or 1)
            return self.tag(match[1], number) if not (match[2] and number == 1) else None
        if (match := _ARTICLE.match(path)) and match[1] in self.position:
            return self.article(match[1])
        return None

    # --- pages -----------------------------------------------------------------------------

    def _page(self, template: str, meta: dict, **values: object) -> Page:
        feeds = values.pop("feeds", None) or self.feeds("")
        context = {
            "site": self.settings.site,
            "meta": meta,
            "feeds": feeds,
            "site_feeds": self.feeds(""),
            "signup": self.signup(),
            **values,
        }
        return Page(render_template(self.env, f"site/{template}.html", context).encode("utf-8"))

    def meta(self, path: str, title: str, description: str, *, kind: str = "website", canonical: str = "") -> dict:
        return {
            "title": title,
            "description": description[:DESCRIPTION_LENGTH],
            "canonical": canonical or f"{self.site_url}{path}",
            "url": f"{self.site_url}{path}",
            "type": kind,
        }

    def feeds(self, folder: str) -> list[dict]:
        return [
            {"href": links.feed_path(folder, fmt.filename), "type": fmt.media_type, "label": fmt.label}
            for fmt in FORMATS
        ]

    def signup(self) -> dict | None:
        newsletters = self.settings.newsletters
        if not newsletters:
            return None
        return {
            "newsletters": [{"name": name, "title": nl.title} for name, nl in newsletters.items()],
            "consent": consent_sentence(self.settings, newsletters),
        }

    def card(self, article: Article) -> dict:
        """An article as lists show it: title, local link, date, teaser, tags."""
        return {
            "title": article.title,
            "path": links.page_path(article.slug),
            "date": day_month(article.published.astimezone(self.zone), year=True, language=self.settings.site.language),
            "iso": article.published.isoformat(),
            "teaser_html": self.teaser(article),
            "tags": self.tag_links(article),
        }

    @staticmethod
    def teaser(article: Article) -> str:
        kept, _ = shorten(html_blocks(article.summary_html or article.content_html), TEASER_LENGTH)
        return blocks_html(kept)

    def tag_links(self, article: Article) -> list[dict]:
        return [
            {"name": tag, "path": links.tag_path(slug)}
            for tag in article.tags
            if (slug := self.tag_slug(tag)) is not None
        ]

    def pager(self, number: int, count: int, path_of: Callable[[int], str]) -> dict[str, object]:
        last = pages_needed(count, self.size)
        return {
            "number": number,
            "last": last,
            "newer": path_of(number - 1) if number > 1 else "",
            "older": path_of(number + 1) if number < last else "",
        }

    def home(self, number: int) -> Page | None:
        articles = self.snapshot.articles
        if number > pages_needed(len(articles), self.size):
            return None
        shown = articles[(number - 1) * self.size : number * self.size]
        site = self.settings.site
        path = links.home_path(number)
        later = self.gettext("%(site)s: page %(number)s") % {"site": site.title, "number": number}
        title = site.title if number == 1 else later
        return self._page(
            "home",
            self.meta(path, title, site.description),
            cards=[self.card(a) for a in shown],
            pager=self.pager(number, len(articles), links.home_path),
            first=number == 1,
        )

    def tag(self, slug: str, number: int) -> Page | None:
        articles = self.tagged.get(slug)
        if not articles or number > pages_needed(len(articles), self.size):
            return None
        name = self.snapshot.tags[slug]
        shown = articles[(number - 1) * self.size : number * self.size]
        path = links.tag_path(slug, number)
        _ = self.gettext
        values = {"name": name, "number": number, "site": self.settings.site.title}
        title = (_("Tagged “%(name)s”: page %(number)s") if number > 1 else _("Tagged “%(name)s”")) % values
        return self._page(
            "tag",
            self.meta(path, title, _("Articles tagged “%(name)s” on %(site)s.") % values),
            feeds=self.feeds(f"{TAGS_DIR}/{slug}"),
            name=name,
            count=len(articles),
            cards=[self.card(a) for a in shown],
            pager=self.pager(number, len(articles), lambda n: links.tag_path(slug, n)),
        )

    def article(self, slug: str) -> Page:
        index = self.position[slug]
        articles = self.snapshot.articles
        article = articles[index]
        url = links.article_url(article, self.site_url)
        body = article.content_html or article.summary_html
        if article.origin:
            body = absolute_links(body, article.origin)
        newer = articles[index - 1] if index > 0 else None
        older = articles[index + 1] if index + 1 < len(articles) else None
        return self._page(
            "article",
            self.meta(
                links.page_path(slug),
                article.title,
                plain_text(article.summary_html or article.content_html),
                kind="article",
                canonical=url,
            ),
            article=self.card(article),
            body_html=body,
            authors=", ".join(article.authors),
            published=article.published,
            updated=article.updated,
            origin=article.origin,
            truncated=article.truncated,
            newer=newer and {"title": newer.title, "path": links.page_path(newer.slug)},
            older=older and {"title": older.title, "path": links.page_path(older.slug)},
        )

    def archive(self) -> Page:
        newsletters = [self.archive_entry(nl) for nl in self.settings.newsletters.values()]
        site = self.settings.site
        return self._page(
            "archive",
            self.meta(
                "/archive/",
                self.gettext("Archive"),
                self.gettext("Every newsletter of %(site)s and every issue sent so far.") % {"site": site.title},
            ),
            newsletters=newsletters,
        )

    def archive_entry(self, newsletter: NewsletterSettings) -> dict:
        zone = newsletter.zone
        issues = self.snapshot.issues.get(newsletter.name, ())
        return {
            "title": newsletter.title,
            "path": f"/archive/{newsletter.name}/" if issues else "",  # written when an issue first goes out
            "feeds": self.feeds(f"newsletters/{newsletter.name}"),
            "issues": [
                {
                    "title": issue.subject or self.gettext("Issue %(number)s") % {"number": issue.number},
                    "path": f"/archive/{newsletter.name}/{issue.number}.html",
                    "number": issue.number,
                    "date": day_month(issue.slot.astimezone(zone), year=True, language=self.settings.site.language),
                    "articles": issue.articles,
                }
                for issue in issues
            ],
        }

    def not_found(self) -> Page:
        """The 404 page, in the site's look (`404.html` in an export)."""
        return self._page(
            "not_found",
            {
                **self.meta("/", self.gettext("Page not found"), self.gettext("There is nothing at this address.")),
                "canonical": "",
                "url": "",
            },
            recent=[self.card(a) for a in self.snapshot.articles[:5]],
        )

    # --- for machines ----------------------------------------------------------------------

    def sitemap(self) -> str:
        """sitemaps.org XML: the home page, every article page, tag page, archive and issue page."""
        rows = [(f"{self.site_url}/", self._newest())]
        rows += [(links.page_url(self.site_url, a.slug), a.updated) for a in self.snapshot.articles]
        rows += [(f"{self.site_url}{links.tag_path(slug)}", arts[0].updated) for slug, arts in self.tagged.items()]
        rows.append((f"{self.site_url}/archive/", None))
        for name, issues in self.snapshot.issues.items():
            if name not in self.settings.newsletters or not issues:
                continue
            rows.append((f"{self.site_url}/archive/{name}/", issues[0].slot))
            rows += [(f"{self.site_url}/archive/{name}/{issue.number}.html", issue.slot) for issue in issues]
        entries = "".join(
            f"  <url><loc>{html.escape(loc)}</loc>"
            + (f"<lastmod>{moment.isoformat(timespec='seconds')}</lastmod>" if moment else "")
            + "</url>\n"
            for loc, moment in rows
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
            f"{entries}</urlset>\n"
        )

    def _newest(self) -> datetime | None:
        return max((a.updated for a in self.snapshot.articles), default=None)

    def robots(self) -> str:
        private = ("/confirm/", "/unsubscribe/", "/preferences/")
        disallowed = "".join(f"Disallow: {path}\n" for path in private)
        return f"User-agent: *\n{disallowed}\nSitemap: {self.site_url}/sitemap.xml\n"
