"""The web archive: each issue that went out as a static page, an index, and an issues feed.

Pages land in `[archive] dir` as `<newsletter>/<number>.html` (the emails' view-in-browser link,
served at `{site.url}/archive/<newsletter>/<number>.html`) and `<newsletter>/index.html`; the
feed in `[feeds] dir` under `newsletters/<newsletter>/` in every format `publisher.feeds` writes.
An issue is archived once it starts sending, so its view-in-browser link works from the first
message on. Files are replaced atomically and only when their bytes change.
"""

from __future__ import annotations

import html
from dataclasses import replace
from pathlib import Path

from jinja2 import Environment

from publisher.announcements import context as announcement_context
from publisher.config import NewsletterSettings, Settings
from publisher.feedformats import FORMATS, FeedEntry, FeedSpec
from publisher.feeds import make_spec, write_feed_set, write_if_changed
from publisher.issues import load_digest
from publisher.links import article_url
from publisher.model import Issue
from publisher.render import context, long_date, view_url
from publisher.selection import Digest
from publisher.store import Store
from publisher.templates import environment, render_template
from publisher.topics import edition

ARCHIVED_STATES = ("sending", "paused", "sent")
FEEDS_PATH = "newsletters"


def archived_issues(store: Store, newsletter: str) -> list[Issue]:
    """The issues readers may have received, newest first."""
    return list(reversed(store.issues.list(newsletter, states=ARCHIVED_STATES)))


def issues_feed_spec(settings: Settings, newsletter: NewsletterSettings) -> FeedSpec:
    spec = make_spec(
        settings,
        f"{FEEDS_PATH}/{newsletter.name}",
        newsletter.title,
        f"Every issue of {newsletter.title} from {settings.site.title}.",
    )
    return replace(spec, home_url=f"{settings.site.url}/archive/{newsletter.name}/")


def issue_entry(digest: Digest, issue: Issue, guid: str, settings: Settings) -> FeedEntry:
    """One issue as a feed item: its subject, summary and the linked list of its articles."""
    url = view_url(settings, issue.newsletter, issue.number)
    items = "".join(
        f'<li><a href="{html.escape(article_url(a, settings.site.url))}">{html.escape(a.title, quote=False)}</a></li>'
        for a in (*digest.articles, *digest.overflow)
    )
    count = digest.count
    summary = f"{count} article{'' if count == 1 else 's'}"
    return FeedEntry(
        id=guid or url,
        title=issue.subject or f"Issue {issue.number}",
        link=url,
        summary_html=f"<p>{summary}</p>",
        content_html=f"<p>{summary}:</p><ul>{items}</ul>",
        published=issue.slot,
        updated=issue.slot,
        is_permalink=not guid,
    )


def announcement_entry(issue: Issue, guid: str, settings: Settings, body_html: str) -> FeedEntry:
    """One announcement as a feed item: its subject and its whole text."""
    url = view_url(settings, issue.newsletter, issue.number)
    return FeedEntry(
        id=guid or url,
        title=issue.subject,
        link=url,
        summary_html=f"<p>{html.escape(issue.preheader or issue.subject, quote=False)}</p>",
        content_html=body_html,
        published=issue.slot,
        updated=issue.slot,
        is_permalink=not guid,
    )


def _page(
    store: Store, settings: Settings, config: NewsletterSettings, env: Environment, issue: Issue, guid: str
) -> tuple[str, int, FeedEntry]:
    """(page, article count, feed entry) of one archived issue or announcement."""
    if issue.is_announcement:
        values = announcement_context(issue, settings, config)
        page = render_template(env, "archive/announcement.html.j2", values)
        return page, 0, announcement_entry(issue, guid, settings, str(values["body_html"]))
    loaded = load_digest(store, issue, config)
    digest = edition(loaded, (), settings.topics, config) or loaded  # the edition of every topic
    values = {**context(digest, settings, config), "subject": issue.subject}
    page = render_template(env, "archive/issue.html.j2", values)
    return page, digest.count, issue_entry(digest, issue, guid, settings)


def write_archive(store: Store, settings: Settings, newsletter: str) -> list[Path]:
    """(Re)write the newsletter's archive pages, index and issues feed; returns the files changed."""
    config = settings.newsletter(newsletter)
    env = environment(settings)
    folder = settings.archive.dir / newsletter
    guids = store.issues.guids(newsletter)
    changed: list[Path] = []
    listed, entries = [], []
    for issue in archived_issues(store, newsletter):
        page, count, entry = _page(store, settings, config, env, issue, guids.get(issue.number, ""))
        path = folder / f"{issue.number}.html"
        if write_if_changed(path, page.encode("utf-8")):
            changed.append(path)
        listed.append(
            {
                "number": issue.number,
                "kind": issue.kind.value,
                "subject": issue.subject,
                "count": count,
                "date": long_date(config.wall_clock(issue.slot), settings.site.language),
                "url": f"{issue.number}.html",
            }
        )
        entries.append(entry)
    spec = issues_feed_spec(settings, config)
    index = render_template(
        env,
        "archive/index.html.j2",
        {
            "site": settings.site,
            "newsletter": config,
            "issues": listed,
            "feeds": {fmt.filename: spec.url(fmt.filename) for fmt in FORMATS},
            "subscribe_url": f"{settings.site.url}/subscribe",
        },
    )
    if write_if_changed(folder / "index.html", index.encode("utf-8")):
        changed.append(folder / "index.html")
    changed.extend(write_feed_set(spec, entries, settings.feeds))
    return changed
