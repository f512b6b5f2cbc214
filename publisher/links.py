"""Where things live on the public site: every URL is computed here, from `site.url`, when output
is rendered. Nothing stores a link to our own host, so changing `site.url` moves every link.

An article links to its `origin` (the page a feed entry pointed at) when it has one, else to its
page on this site. Guids are not links: they are minted once and never change.
"""

from __future__ import annotations

from urllib.parse import quote

from publisher.model import Article
from publisher.text import safe_url

FEEDS_PATH = "/feeds"
# First path segments the site uses itself: an article slug never takes one (the store skips them).
RESERVED_SLUGS = frozenset(
    {
        "admin",
        "api",
        "archive",
        "confirm",
        "feeds",
        "healthz",
        "page",
        "preferences",
        "static",
        "subscribe",
        "tags",
        "unsubscribe",
        "webhooks",
    }
)


def page_path(slug: str) -> str:
    """The path of an article's page on this site."""
    return f"/{slug}/"


def page_url(site_url: str, slug: str) -> str:
    return f"{site_url}{page_path(slug)}"


def article_url(article: Article, site_url: str) -> str:
    """Where feeds, emails and the JSON listing send a reader: the origin (when it is an http,
    https or mailto link), or our page."""
    return safe_url(article.origin) or page_url(site_url, article.slug)


def tag_path(tag_slug: str, page: int = 1) -> str:
    """A tag page's path, percent-encoded (tag slugs keep the letters of every script)."""
    return f"/tags/{quote(tag_slug)}/" + (f"page/{page}/" if page > 1 else "")


def home_path(page: int = 1) -> str:
    return f"/page/{page}/" if page > 1 else "/"


def feed_path(folder: str, filename: str) -> str:
    """A feed file's path: `folder` is "" for the site feed, `tags/<slug>` for a tag."""
    return f"{FEEDS_PATH}/{quote(folder)}/{filename}" if folder else f"{FEEDS_PATH}/{filename}"
