"""The public site (publisher/site.py, siteweb.py, export.py): every link resolves, links follow
`site.url`, scheduled articles wait for their time, the export holds the app's bytes.

The link check builds a publication (the bundled Markdown sample, and the seed captures when they
are there), sends two issues, then collects every URL in every feed file, every sent email
(HTML and text parts, the https links of its headers), every archive file and every page
reachable from `/`, and asks the app for each one on our host.
"""

from __future__ import annotations

import email
import email.policy
import html
import json
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import lxml.etree
import lxml.html
import pytest

from publisher.clock import fixed
from publisher.config import Settings
from publisher.feedformats import FORMATS
from publisher.publication import Publication
from publisher.site import export_name
from publisher.store import Store
from publisher.transports import MemoryTransport
from publisher.web import create_app
from tests.helpers import REPO, SEED_CAPTURES, require

SEED_002, AS_OF_002 = SEED_CAPTURES.early.path, SEED_CAPTURES.early.as_of
SEED_000, AS_OF_000 = SEED_CAPTURES.late.path, SEED_CAPTURES.late.as_of

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from starlette.testclient import TestClient

SITE = "https://news.example.org"
SAMPLE = REPO / "sample" / "content"
# Pages only the running app can answer (the export documents routing these to it).
DYNAMIC = ("/subscribe", "/confirm/", "/unsubscribe/", "/preferences/", "/healthz")
URL_IN_TEXT = re.compile(r"https?://[^\s<>\"')\]]+")
# Format boilerplate in feed files, not links a reader follows: XML namespaces and RSS's <docs>.
FORMAT_URIS = ("http://www.rssboard.org/rss-specification", "https://jsonfeed.org/version/1.1")


# --- the publication under test ---------------------------------------------------------------


def make_publication(make_settings, tmp_path: Path, sources: list[dict], **site: object) -> tuple[Settings, Store]:
    settings = make_settings(
        {
            "site": {"url": SITE, "title": "Field Notes", **site},
            "sources": sources,
            "newsletters": {"weekly": {"title": "Field Notes Weekly", "lookback": "30d"}},
        },
        database_url=f"sqlite:///{tmp_path / 'site.db'}",
    )
    return settings, Store.open(settings.database.url)


def at(settings: Settings, store: Store, moment: datetime, outbox: MemoryTransport | None = None) -> Publication:
    return Publication(settings, store, clock=fixed(moment), transport=outbox or MemoryTransport())


def send_issue(settings: Settings, store: Store, moment: datetime, outbox: MemoryTransport) -> None:
    outcome = at(settings, store, moment, outbox).send("weekly")
    assert outcome.status == "sent", outcome.reason


@pytest.fixture
def sample_site(make_settings, tmp_path):
    """The bundled Markdown sample: issue 1 with the first three articles, issue 2 with the rest."""
    settings, store = make_publication(make_settings, tmp_path, [{"path": str(SAMPLE), "format": "markdown"}])
    outbox = MemoryTransport()
    first, second = datetime(2026, 11, 17, 8, tzinfo=UTC), datetime(2026, 11, 23, 8, tzinfo=UTC)
    at(settings, store, first).import_sources()
    at(settings, store, first).add_subscriber("reader@example.com", confirmed=True)
    send_issue(settings, store, first, outbox)
    send_issue(settings, store, second, outbox)
    yield settings, store, outbox, second + timedelta(hours=1)
    store.close()


@pytest.fixture
def seed_site(make_settings, tmp_path):
    """The seed publication: both captures imported, two issues sent."""
    require(SEED_002.exists() and SEED_000.exists(), f"the seed captures in {SEED_002.parent}")
    settings, store = make_publication(make_settings, tmp_path, [])
    outbox = MemoryTransport()
    first, second = datetime(2025, 10, 6, 8, tzinfo=UTC), datetime(2025, 10, 20, 8, tzinfo=UTC)
    at(settings, store, AS_OF_002).import_sources([str(SEED_002)], fmt="textpage", as_of=AS_OF_002)
    at(settings, store, AS_OF_002).add_subscriber("reader@example.com", confirmed=True)
    send_issue(settings, store, first, outbox)
    at(settings, store, AS_OF_000).import_sources([str(SEED_000)], fmt="textpage", as_of=AS_OF_000)
    send_issue(settings, store, second, outbox)
    yield settings, store, outbox, second + timedelta(hours=1)
    store.close()


# --- collecting links ---------------------------------------------------------------------------


def html_links(markup: str, base: str) -> Iterator[str]:
    """Every link of an HTML document or fragment (href, src, action, og:url), made absolute."""
    if not markup.strip():
        return
    document = lxml.html.fromstring(markup)
    for _element, _attribute, link, _pos in document.iterlinks():
        yield urljoin(base, link.strip())
    for meta in document.iter("meta"):
        if meta.get("property") == "og:url":
            yield meta.get("content", "")


def feed_links(path: Path, base: str) -> Iterator[str]:
    """Links of an RSS, Atom or JSON feed file: its own, its entries', and those in entry HTML."""
    if path.suffix == ".json":
        document = json.loads(path.read_text(encoding="utf-8"))
        yield from (document[key] for key in ("home_page_url", "feed_url") if key in document)
        for item in document["items"]:
            yield from (item[key] for key in ("url", "external_url") if key in item)
            yield from html_links(item.get("content_html", ""), item.get("url", base))
        return
    for element in lxml.etree.parse(str(path)).iter():
        name = lxml.etree.QName(element).localname if isinstance(element.tag, str) else ""
        if name == "link":
            yield element.get("href") or (element.text or "").strip()
        elif name == "guid" and element.get("isPermaLink") != "false":
            yield (element.text or "").strip()
        elif name in ("description", "encoded", "content", "summary") and element.text:
            yield from html_links(element.text, base)


def mail_links(message: bytes) -> Iterator[str]:
    """Links of a sent email: its HTML and text parts and the https URIs of its headers."""
    parsed = email.message_from_bytes(message, policy=email.policy.default)
    for header in ("List-Unsubscribe", "List-Archive", "List-Subscribe", "List-Help"):
        yield from re.findall(r"<(https?://[^>]+)>", str(parsed.get(header, "")))
    for part in parsed.walk():
        if part.get_content_type() == "text/html":
            yield from html_links(part.get_content(), SITE)
        elif part.get_content_type() == "text/plain":
            yield from (url.rstrip(".,;:") for url in URL_IN_TEXT.findall(part.get_content()))


def file_links(root: Path, url_base: str) -> Iterator[str]:
    for path in sorted(root.rglob("*")):
        base = f"{url_base}/{path.relative_to(root).as_posix()}"
        if path.name in {fmt.filename for fmt in FORMATS}:
            yield from feed_links(path, base)
        elif path.suffix == ".html":
            yield from html_links(path.read_text(encoding="utf-8"), base)


def crawl(client: TestClient, start: str, links: set[str]) -> dict[str, int]:
    """Every URL collected, plus every page reachable from `start`: URL -> status (ours only)."""
    queue, seen, statuses = [start, *sorted(links)], set(), {}
    while queue:
        url = queue.pop(0).split("#")[0]
        if url in seen or not url:
            continue
        seen.add(url)
        if urlsplit(url).hostname != urlsplit(SITE).hostname:
            continue
        answer = client.get(url, follow_redirects=False)
        statuses[url] = answer.status_code
        if answer.status_code == 200 and answer.headers["content-type"].startswith("text/html"):
            queue += [link for link in html_links(answer.text, url) if not link.startswith("mailto:")]
        elif url.endswith("sitemap.xml") and answer.status_code == 200:
            queue += re.findall(r"<loc>([^<]+)</loc>", answer.text)
    return statuses


def collected(settings: Settings, outbox: MemoryTransport) -> set[str]:
    links: set[str] = set()
    links.update(file_links(settings.feeds.dir, f"{SITE}/feeds"))
    links.update(file_links(settings.archive.dir, f"{SITE}/archive"))
    for message in outbox.sent:
        links.update(mail_links(message.data))
    return {html.unescape(link) for link in links if link and not link.startswith("mailto:")}


def content_links(store: Store) -> set[str]:
    """URLs that are part of the articles themselves (the only other hosts allowed)."""
    found: set[str] = set()
    for article in store.articles.newest():
        found.update(URL_IN_TEXT.findall(html.unescape(article.content_html + article.summary_html)))
        found.add(article.origin)
    return found


def check_every_link(settings: Settings, store: Store, outbox: MemoryTransport, now: datetime, export: Path) -> int:
    publication = at(settings, store, now, outbox)
    publication.export_site(export)
    links = collected(settings, outbox)
    assert len(outbox.sent) == 2 and links
    with TestClient(create_app(publication), base_url=SITE) as client:
        statuses = crawl(client, f"{SITE}/", links)
        dead = {url: status for url, status in statuses.items() if status != 200}
        assert dead == {}, f"{len(dead)} dead links"
        paths = {urlsplit(url).path or "/" for url in statuses}
        static = sorted(path for path in paths if not path.startswith(DYNAMIC))
        missing = [path for path in static if not (export / export_name(path)).is_file()]
        assert missing == [], "not in the static export"
        for path in static:  # the pages the app renders: the export holds the very same bytes
            if path.endswith("/") or path == "/sitemap.xml":
                assert client.get(path).content == (export / export_name(path)).read_bytes(), path
    foreign = {link for link in links if urlsplit(link).hostname != urlsplit(SITE).hostname}
    assert foreign <= content_links(store) - {""}
    return len(statuses)


def test_every_link_on_the_sample_site_answers_200_and_is_in_the_export(sample_site, tmp_path):
    settings, store, outbox, now = sample_site
    checked = check_every_link(settings, store, outbox, now, tmp_path / "export")
    assert checked > 30


def test_every_link_of_the_seed_publication_answers_200_and_is_in_the_export(seed_site, tmp_path):
    settings, store, outbox, now = seed_site
    checked = check_every_link(settings, store, outbox, now, tmp_path / "export")
    assert checked > 50


# --- links follow site.url; guids stay ----------------------------------------------------------


def test_changing_site_url_moves_every_link_and_keeps_every_guid(sample_site, make_settings, tmp_path):
    settings, store, outbox, now = sample_site
    at(settings, store, now).build_site()
    before = json.loads((settings.feeds.dir / "feed.json").read_text(encoding="utf-8"))
    moved = make_settings(
        {
            "site": {"url": "https://moved.example.net", "title": "Field Notes"},
            "sources": [{"path": str(SAMPLE), "format": "markdown"}],
            "newsletters": {"weekly": {"title": "Field Notes Weekly", "lookback": "30d"}},
        },
        database_url=settings.database.url,
    )
    publication = at(moved, store, now, outbox)
    assert publication.import_sources().changed is False  # nothing a reader sees is stored differently
    publication.export_site(tmp_path / "export")
    after = json.loads((moved.feeds.dir / "feed.json").read_text(encoding="utf-8"))
    assert [item["id"] for item in after["items"]] == [item["id"] for item in before["items"]]
    assert all(item["url"].startswith("https://moved.example.net/") for item in after["items"])
    links = {
        *file_links(moved.feeds.dir, "https://moved.example.net/feeds"),
        *file_links(moved.archive.dir, "https://moved.example.net/archive"),
        *file_links(tmp_path / "export", "https://moved.example.net"),
    }
    assert len(links) > 30 and {urlsplit(link).hostname for link in links} == {"moved.example.net"}
    with TestClient(create_app(publication), base_url="https://moved.example.net") as client:
        page = client.get("/welcome-to-the-publisher-sample/").text
        assert '<link rel="canonical" href="https://moved.example.net/welcome-to-the-publisher-sample/">' in page
    # the next digest links to the new host too
    store.articles.ingest([_draft("after-the-move", now)], guid_authority="news.example.org", now=now, source="t")
    sent = MemoryTransport()
    at(moved, store, now + timedelta(days=1)).add_subscriber("late@example.com", confirmed=True)
    assert at(moved, store, now + timedelta(days=1), sent).send("weekly").status == "sent"
    body = sent.sent[0].data.decode("utf-8", "replace")
    assert "https://moved.example.net/after-the-move/" in body and "news.example.org" not in body
    assert store.articles.by_slug("welcome-to-the-publisher-sample").guid == before["items"][-1]["id"]


def _draft(slug: str, published: datetime):
    from publisher.model import Draft

    return Draft(
        key=slug,
        slug=slug,
        title=slug.replace("-", " ").title(),
        summary_html="<p>Short.</p>",
        content_html="<p>Short.</p>",
        truncated=False,
        published=published,
    )


# --- scheduled articles -------------------------------------------------------------------------


def outputs(settings: Settings, store: Store, now: datetime, export: Path) -> Iterable[str]:
    """Everything a reader could see at `now`: feed files, pages, sitemap, export, a digest preview."""
    publication = at(settings, store, now)
    publication.publish_due()
    publication.export_site(export)
    yield from (path.read_text(encoding="utf-8") for path in settings.feeds.dir.rglob("*.*"))
    yield from (path.read_text(encoding="utf-8") for path in export.rglob("*.*") if path.suffix != ".css")
    with TestClient(create_app(publication), base_url=SITE) as client:
        for path in ("/", "/sitemap.xml", "/tags/later/", "/next-week/"):
            yield client.get(path).text
    preview = publication.preview("weekly", export.parent / "preview")
    yield from (path.read_text(encoding="utf-8") for path in preview.files.values())


def test_a_future_article_appears_nowhere_until_its_time_then_everywhere(make_settings, tmp_path):
    settings, store = make_publication(make_settings, tmp_path, [])
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    store.articles.ingest([_draft("today", now - timedelta(hours=1))], guid_authority="x", now=now, source="t")
    later = _draft("next-week", now + timedelta(days=7))
    store.articles.ingest([replace(later, tags=("Later",))], guid_authority="x", now=now, source="t")
    before = "\n".join(outputs(settings, store, now, tmp_path / "a" / "export"))
    assert "Today" in before and "next-week" not in before and "Next Week" not in before
    assert "/tags/later/" not in before
    after = "\n".join(outputs(settings, store, now + timedelta(days=7, minutes=1), tmp_path / "b" / "export"))
    assert f"{SITE}/next-week/" in after and "Next Week" in after and f"{SITE}/tags/later/" in after


# --- pages --------------------------------------------------------------------------------------


def test_pages_carry_meta_and_answer_304(sample_site):
    settings, store, _outbox, now = sample_site
    with TestClient(create_app(at(settings, store, now)), base_url=SITE) as client:
        home = client.get("/")
        for needle in (
            f'<link rel="canonical" href="{SITE}/">',
            f'<link rel="alternate" type="application/rss+xml" title="Field Notes (RSS)" href="{SITE}/feeds/rss.xml">',
            '<meta property="og:title"',
            '<meta name="twitter:card" content="summary">',
            '<form method="post" action="/subscribe">',
        ):
            assert needle in home.text
        again = client.get("/", headers={"if-none-match": home.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == home.headers["etag"] and again.headers["x-frame-options"] == "DENY"
        since = client.get("/", headers={"if-modified-since": home.headers["last-modified"]})
        assert since.status_code == 304
        article = client.get("/sending-to-everyone-once/")
        assert article.status_code == 200 and "<h1>Sending to everyone, once</h1>" in article.text
        assert 'rel="prev"' in article.text and 'rel="next"' in article.text
        missing = client.get("/no-such-article/")
        assert (
            missing.status_code == 404
            and "Page not found" in missing.text
            and 'href="/static/site.css"' in missing.text
        )
        assert "Sitemap: https://news.example.org/sitemap.xml" in client.get("/robots.txt").text


def test_a_small_page_size_paginates_home_and_tags(make_settings, tmp_path):
    settings, store = make_publication(make_settings, tmp_path, [{"path": str(SAMPLE)}], page_size=2)
    now = datetime(2026, 11, 28, tzinfo=UTC)
    at(settings, store, now).import_sources()
    with TestClient(create_app(at(settings, store, now)), base_url=SITE) as client:
        assert client.get("/page/3/").status_code == 200 and client.get("/page/4/").status_code == 404
        assert 'href="/page/2/"' in client.get("/").text
        assert client.get("/page/1/").status_code == 404  # the first page is /


def test_an_origin_linked_feed_article_still_has_its_own_page(make_settings, tmp_path):
    feed = tmp_path / "origin.xml"
    feed.write_text(
        '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:t</id>'
        '<updated>2026-11-20T09:00:00Z</updated><link href="https://blog.example.net/"/>'
        '<entry><title>Elsewhere</title><link href="https://blog.example.net/posts/1"/><id>urn:e1</id>'
        "<published>2026-11-20T09:00:00Z</published><updated>2026-11-20T09:00:00Z</updated>"
        '<summary type="html">&lt;p&gt;Hi&lt;/p&gt;</summary></entry></feed>',
        encoding="utf-8",
    )
    settings, store = make_publication(make_settings, tmp_path, [{"path": str(feed), "format": "feed"}])
    now = datetime(2026, 11, 28, tzinfo=UTC)
    publication = at(settings, store, now)
    publication.import_sources()
    assert (
        json.loads((settings.feeds.dir / "feed.json").read_text())["items"][0]["url"]
        == "https://blog.example.net/posts/1"
    )
    with TestClient(create_app(publication), base_url=SITE) as client:
        page = client.get("/elsewhere/").text
        assert '<link rel="canonical" href="https://blog.example.net/posts/1">' in page
    local = make_settings(
        {"site": {"url": SITE}, "sources": [{"path": str(feed), "format": "feed", "link": "local"}]},
        database_url=settings.database.url,
    )
    at(local, store, now).import_sources()
    assert json.loads((local.feeds.dir / "feed.json").read_text())["items"][0]["url"] == f"{SITE}/elsewhere/"


def test_an_unchanged_export_writes_no_file(sample_site, tmp_path):
    settings, store, _outbox, now = sample_site
    publication = at(settings, store, now)
    first = publication.export_site(tmp_path / "export").export
    second = publication.export_site(tmp_path / "export").export
    assert first.written and second.written == [] and second.removed == [] and second.unchanged == first.files


def test_the_timetable_plans_a_feeds_job_for_the_next_scheduled_article(make_settings, tmp_path):
    from publisher.scheduler import NEXT_ARTICLE_JOB, Scheduler

    settings, store = make_publication(make_settings, tmp_path, [])
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    due = now + timedelta(days=2, hours=3)
    store.articles.ingest([_draft("soon", due)], guid_authority="x", now=now, source="t")
    timetable = Scheduler(settings, store, clock=fixed(now))
    scheduler = timetable._make_scheduler()
    scheduler.start(paused=True)
    try:
        assert timetable.plan_next_article(scheduler) == due
        job = scheduler.get_job(NEXT_ARTICLE_JOB)
        assert job.next_run_time == due and job.args[2:] == ("feeds", "")
        assert Scheduler(settings, store, clock=fixed(due)).plan_next_article(scheduler) is None
        assert scheduler.get_job(NEXT_ARTICLE_JOB) is None  # nothing left to wait for
    finally:
        scheduler.shutdown(wait=False)
        store.close()


def test_import_keeps_the_export_dir_fresh_and_site_build_prints_what_it_wrote(make_settings, tmp_path):
    from click.testing import CliRunner

    from publisher.cli import cli

    settings, store = make_publication(
        make_settings, tmp_path, [{"path": str(SAMPLE)}], export_dir=str(tmp_path / "public")
    )
    store.close()
    (tmp_path / "config.toml").write_text(
        f'[site]\nurl = "{SITE}"\nexport_dir = "public"\n[database]\nurl = "{settings.database.url}"\n'
        f'[[sources]]\npath = "{SAMPLE}"\n',
        encoding="utf-8",
    )
    runner = CliRunner()
    imported = runner.invoke(cli, ["--config", str(tmp_path / "config.toml"), "import"])
    assert imported.exit_code == 0, imported.output
    assert (tmp_path / "public" / "welcome-to-the-publisher-sample" / "index.html").is_file()
    assert (tmp_path / "public" / "feeds" / "rss.xml").is_file() and (tmp_path / "public" / "404.html").is_file()
    built = runner.invoke(cli, ["--config", str(tmp_path / "config.toml"), "site", "build"])
    assert built.exit_code == 0 and " 0 written, " in built.output and "0 removed" in built.output
    elsewhere = runner.invoke(cli, ["--config", str(tmp_path / "config.toml"), "site", "build", "--out", "/proc/x"])
    assert elsewhere.exit_code == 1 and elsewhere.output.count("\n") == 1
    assert elsewhere.output.startswith("error: cannot write the site export")


def test_article_pages_may_show_remote_images_but_run_no_script(sample_site):
    settings, store, _outbox, now = sample_site
    with TestClient(create_app(at(settings, store, now)), base_url=SITE) as client:
        csp = client.get("/welcome-to-the-publisher-sample/").headers["content-security-policy"]
        assert "img-src 'self' https: data:" in csp and "script-src" not in csp and "default-src 'none'" in csp


# --- the store's part (SQLite and PostgreSQL) ---------------------------------------------------


def test_the_store_holds_back_scheduled_articles_and_keeps_only_origin_links(store):
    from sqlalchemy import select, update

    from publisher.store.schema import _forget_local_links, articles

    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    soon = now + timedelta(hours=5)
    drafts = [
        replace(_draft("past", now - timedelta(hours=1)), tags=("Old",)),
        replace(_draft("future", soon), tags=("New",)),
        replace(_draft("archive", now - timedelta(hours=2)), url="https://blog.example.net/archive/"),
    ]
    store.articles.ingest(drafts, guid_authority="x", now=now, source="t")
    assert [a.slug for a in store.articles.newest(until=now)] == ["past", "archive-2"]  # a reserved slug moves
    assert store.articles.tags(until=now) == {"old": "Old"} and set(store.articles.tags()) == {"old", "new"}
    assert store.articles.next_scheduled(now) == soon and store.articles.next_scheduled(soon) is None
    before = store.articles.fingerprint(now)
    assert store.articles.fingerprint(now) == before != store.articles.fingerprint(soon)
    # rows written before links were computed held our own permalink: migration 8 forgets it
    with store.engine.begin() as connection:
        connection.execute(
            update(articles).where(articles.c.slug == "past").values(url="https://old.example.org/past/")
        )
        _forget_local_links(connection)
        urls = dict(connection.execute(select(articles.c.slug, articles.c.url)).all())
    assert urls == {"past": "", "future": "", "archive-2": "https://blog.example.net/archive/"}
    # an origin the migration took for a permalink (it ends in /<slug>/) comes back on the next import
    with store.engine.begin() as connection:
        connection.execute(update(articles).where(articles.c.slug == "archive-2").values(url=""))
    report = store.articles.ingest([drafts[2]], guid_authority="x", now=now, source="t")
    assert report.unchanged == 1 and store.articles.by_slug("archive-2").origin == "https://blog.example.net/archive/"


def test_tags_in_any_script_get_their_own_page_and_feed_at_percent_encoded_urls(make_settings, tmp_path):
    content = tmp_path / "content"
    content.mkdir()
    (content / "rubl.md").write_text(
        "---\ntitle: Rouble holds\ndate: 2026-11-20T08:00:00+00:00\ntags: [Экономика, 中国经济]\n---\nText.\n"
    )
    (content / "other.md").write_text(
        "---\ntitle: Other\ndate: 2026-11-21T08:00:00+00:00\ntags: [design]\n---\nMore.\n"
    )
    settings, store = make_publication(make_settings, tmp_path, [{"path": str(content), "format": "markdown"}])
    now = datetime(2026, 11, 28, tzinfo=UTC)
    publication = at(settings, store, now)
    publication.import_sources()
    publication.export_site(tmp_path / "export")
    encoded = "/tags/%D1%8D%D0%BA%D0%BE%D0%BD%D0%BE%D0%BC%D0%B8%D0%BA%D0%B0/"
    with TestClient(create_app(publication), base_url=SITE) as client:
        article = client.get("/rouble-holds/").text
        assert f'href="{encoded}"' in article and 'href="/tags/%E4%B8%AD%E5%9B%BD%E7%BB%8F%E6%B5%8E/"' in article
        page = client.get(encoded)
        assert page.status_code == 200 and "Rouble holds" in page.text and "Other" not in page.text
        feed_links = re.findall(r'href="(/feeds/tags/[^"]+)"', page.text)
        assert feed_links and all(client.get(link).status_code == 200 for link in feed_links)
        atom = client.get(f"/feeds{encoded}atom.xml").text  # its own links percent-encoded too
        assert f'href="{SITE}/feeds{encoded}atom.xml"' in atom and f'href="{SITE}{encoded}"' in atom
        assert f"{SITE}{encoded}" in client.get("/sitemap.xml").text
    assert (tmp_path / "export" / "tags" / "экономика" / "index.html").is_file()
