"""The preview of a first issue holding a whole capture, in Debian's Chromium: phone and desktop,
light and dark, for each set of captures (ours; the real seeds when present).

`make screenshots` runs this file; the PNGs land in screenshots/digest/<set>/ (ignored by git, or
under $PUBLISHER_SCREENSHOTS) for a person to look at.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from publisher.config import SourceSettings
from publisher.content import import_sources
from publisher.issues import write_preview
from publisher.store import Store
from tests.helpers import REPO, SCREENSHOTS, SEED_CAPTURES, require

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def shots(captures) -> Path:
    folder = SCREENSHOTS / "digest" / captures.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    require(CHROMIUM.exists(), f"Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def preview_html(make_settings, tmp_path, captures) -> Path:
    early = captures.early
    settings = make_settings(
        {
            "site": {"title": captures.site_title, "language": "en"},
            "newsletters": {"weekly": {"title": "The Weekly Digest", "lookback": "7d"}},
        },
        database_url=f"sqlite:///{tmp_path / 'p.db'}",
    )
    store = Store.open(settings.database.url)
    import_sources(
        store, settings, [SourceSettings(path=str(early.path), format="textpage")], as_of=early.as_of, now=early.as_of
    )
    shown = write_preview(store, settings, "weekly", tmp_path / "preview", early.as_of + timedelta(hours=8))
    store.close()
    return shown.files["html"]


def open_page(browser, html: Path, width: int, scheme: str):
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
    page.route(
        "**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort()
    )  # an email must not need the network to look right
    page.goto(html.as_uri())
    return page


@pytest.mark.parametrize(("width", "scheme"), [(375, "light"), (1200, "light"), (375, "dark"), (1200, "dark")])
def test_the_preview_reads_well_at_phone_and_desktop_widths(browser, preview_html, captures, width, scheme):
    page = open_page(browser, preview_html, width, scheme)
    page.screenshot(path=str(shots(captures) / f"preview-{width}-{scheme}.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scrolling
    first = page.get_by_role("link", name=captures.issue_1[0], exact=True)
    assert first.is_visible() and first.bounding_box()["width"] <= width
    headlines = page.locator(".headline a").all_inner_texts()
    assert headlines == list(captures.issue_1)
    assert page.get_by_role("link", name="Unsubscribe").is_visible()
    background = page.evaluate("getComputedStyle(document.querySelector('.card')).backgroundColor")
    text = page.evaluate("getComputedStyle(document.querySelector('.card .dateline')).color")
    if scheme == "dark":
        assert background == "rgb(28, 32, 38)" and text == "rgb(170, 178, 188)"
    else:
        assert background == "rgb(255, 255, 255)" and text == "rgb(84, 91, 100)"
    page.close()


def test_the_archive_page_and_index_read_well_on_a_phone(browser, make_settings, tmp_path, captures):
    from publisher.archive import write_archive
    from publisher.issues import build_issue

    settings = make_settings(
        {"newsletters": {"weekly": {"title": "The Weekly Digest"}}}, database_url=f"sqlite:///{tmp_path / 'p.db'}"
    )
    store = Store.open(settings.database.url)
    early = captures.early
    import_sources(
        store, settings, [SourceSettings(path=str(early.path), format="textpage")], as_of=early.as_of, now=early.as_of
    )
    issue = build_issue(store, settings, "weekly", early.as_of, early.as_of)
    store.issues.transition("weekly", issue.number, "sending", early.as_of)
    write_archive(store, settings, "weekly")
    store.close()
    for name in ("1", "index"):
        page = open_page(browser, settings.archive.dir / "weekly" / f"{name}.html", 375, "light")
        page.screenshot(path=str(shots(captures) / f"archive-{name}-375.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        title = captures.issue_1[0] if name == "1" else issue.subject
        assert page.get_by_role("link", name=title, exact=True).is_visible()
        page.close()


# --- the digest with images, with and without its style blocks (issue 16) -------------------------

IMAGE_HOST = "https://images.example.org"
IMAGE_WIDTHS = (1600, 1200, 800)  # the first three articles get an image; the fourth a too-small one


def svg_image(label: str, width: int, height: int) -> bytes:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        '<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="#2d6a8f"/>'
        '<stop offset="1" stop-color="#e0a458"/></linearGradient></defs>'
        f'<rect width="{width}" height="{height}" fill="url(#g)"/><text x="50%" y="50%" font-size="{width // 12}" '
        f'text-anchor="middle" fill="#fff" font-family="sans-serif">{label}</text></svg>'
    ).encode()


def with_images(articles):
    """The capture's articles, the first three with an image and authors, the fourth with a tracking pixel."""
    from dataclasses import replace

    changed = []
    for n, article in enumerate(articles):
        extra = ""
        if n < len(IMAGE_WIDTHS):
            size = f'width="{IMAGE_WIDTHS[n]}" height="{IMAGE_WIDTHS[n] * 9 // 16}"'
            extra = f'<p><img src="{IMAGE_HOST}/{n}.svg" alt="Photo {n + 1}" {size}></p>'
        elif n == len(IMAGE_WIDTHS):
            extra = f'<p><img src="{IMAGE_HOST}/pixel.gif" width="1" height="1" alt=""></p>'
        authors = ("Ada Lovelace",) if n < len(IMAGE_WIDTHS) else ()
        changed.append(replace(article, content_html=extra + article.content_html, authors=authors))
    return changed


@pytest.fixture
def digest_with_images(make_settings, tmp_path, captures) -> Path:
    """The first issue of the capture as the reader gets it (the .eml's HTML part), three articles with images."""
    import email
    import email.policy

    from publisher.message import compile_message
    from publisher.render import render_digest
    from publisher.selection import Digest

    early = captures.early
    settings = make_settings(
        {"site": {"title": captures.site_title}, "newsletters": {"weekly": {"title": "The Weekly"}}}
    )
    store = Store.open(f"sqlite:///{tmp_path / 'p.db'}")
    import_sources(
        store, settings, [SourceSettings(path=str(early.path), format="textpage")], as_of=early.as_of, now=early.as_of
    )
    articles = with_images(store.articles.newest(early.count))
    store.close()
    slot = early.as_of + timedelta(hours=8)
    digest = Digest("weekly", 1, slot, tuple(articles), (), None)
    newsletter = settings.newsletter("weekly")
    rendered = render_digest(digest, settings=settings, newsletter=newsletter)
    compiled = compile_message(rendered, settings=settings, newsletter=newsletter, issue_number=1)
    raw = compiled.personalise(
        subscriber_id=1,
        email="reader@example.com",
        unsubscribe_url="https://news.example.org/unsubscribe/x",
        preferences_url="https://news.example.org/preferences/x",
    )
    page = email.message_from_bytes(raw, policy=email.policy.default).get_body(("html",)).get_content()
    path = tmp_path / "digest.html"
    path.write_text(page, encoding="utf-8")
    return path


def open_with_images(browser, html: Path, width: int, scheme: str):
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)

    def answer(route):
        url = route.request.url
        if url.startswith("file:"):
            return route.continue_()
        if url.startswith(IMAGE_HOST) and url.endswith(".svg"):
            n = int(url.rsplit("/", 1)[1].split(".")[0])
            size = IMAGE_WIDTHS[n]
            return route.fulfill(content_type="image/svg+xml", body=svg_image(f"Photo {n + 1}", size, size * 9 // 16))
        return route.abort()  # the tracking pixel, if it were shown, would fail here

    page.route("**/*", answer)
    page.goto(html.as_uri())
    page.wait_for_load_state("networkidle")
    return page


@pytest.mark.parametrize("styles", ["styles", "no-styles"])
@pytest.mark.parametrize(("width", "scheme"), [(375, "light"), (1200, "light"), (375, "dark"), (1200, "dark")])
def test_the_digest_with_images_reads_well_with_and_without_style_blocks(
    browser, digest_with_images, captures, width, scheme, styles
):
    html = digest_with_images
    if styles == "no-styles":  # as clients that drop <style> show it: only the inlined styles are left
        stripped = re.sub(r"<style[^>]*>.*?</style>", "", html.read_text(encoding="utf-8"), flags=re.S)
        html = html.with_name("digest-no-styles.html")
        html.write_text(stripped, encoding="utf-8")
    page = open_with_images(browser, html, width, scheme)
    page.screenshot(path=str(shots(captures) / f"images-{width}-{scheme}-{styles}.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scrolling
    images = page.locator("img").all()
    assert len(images) == len(IMAGE_WIDTHS)  # the tracking pixel is left out, not shown broken
    for image in images:
        box = image.bounding_box()
        assert image.evaluate("i => i.complete && i.naturalWidth > 0")  # loaded, not broken
        assert 0 < box["width"] <= min(width, 576) and image.get_attribute("alt").startswith("Photo ")
    assert page.get_by_text("By Ada Lovelace").first.is_visible()
    assert page.get_by_role("heading", level=1).count() == 1
    assert page.get_by_role("heading", level=2).first.is_visible()
    assert page.get_by_role("link", name="Unsubscribe").is_visible()
    background = page.evaluate("getComputedStyle(document.querySelector('.card')).backgroundColor")
    dark = scheme == "dark" and styles == "styles"
    assert background == ("rgb(28, 32, 38)" if dark else "rgb(255, 255, 255)")
    page.close()


# --- the public site ------------------------------------------------------------------------------

SITE_SHOTS = SCREENSHOTS / "site"
SEED_002, AS_OF_002 = SEED_CAPTURES.early.path, SEED_CAPTURES.early.as_of


@pytest.fixture
def site_url(make_settings, tmp_path):
    """The app under uvicorn over the seed publication (or the bundled sample without the seeds)."""
    import threading
    import time
    from datetime import UTC, datetime

    from publisher.clock import fixed
    from publisher.publication import Publication
    from publisher.web import make_server
    from tests.sink import free_port

    port = free_port()
    seeds = SEED_002.exists()
    sources = [] if seeds else [{"path": str(REPO / "sample" / "content"), "format": "markdown"}]
    settings = make_settings(
        {
            "site": {"url": f"http://127.0.0.1:{port}", "title": "Friends of the East" if seeds else "Field Notes"},
            "sources": sources,
            "newsletters": {"weekly": {"title": "The Weekly Digest"}},
        },
        database_url=f"sqlite:///{tmp_path / 'site.db'}",
    )
    store = Store.open(settings.database.url)
    now = datetime(2026, 11, 28, tzinfo=UTC)
    publication = Publication(settings, store, clock=fixed(now))
    if seeds:
        publication.import_sources([str(SEED_002)], fmt="textpage", as_of=AS_OF_002)
    else:
        publication.import_sources()
    server = make_server(publication, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    first = store.articles.newest(1)[0]
    yield settings.site.url, first
    server.should_exit = True
    thread.join(timeout=10)
    store.close()


@pytest.mark.parametrize(("width", "scheme"), [(375, "light"), (1200, "light"), (375, "dark"), (1200, "dark")])
def test_the_site_home_and_article_pages_fit_phone_and_desktop(browser, site_url, width, scheme):
    base, first = site_url
    SITE_SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
    for name, path in (("home", "/"), ("article", f"/{first.slug}/")):
        assert page.goto(f"{base}{path}").status == 200
        page.screenshot(path=str(SITE_SHOTS / f"{name}-{width}-{scheme}.png"), full_page=True)
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth"), f"{name} scrolls sideways"
        assert page.get_by_role("heading", level=1).first.is_visible()
        assert page.get_by_role("button", name="Subscribe").is_visible()
    assert page.get_by_role("heading", level=1).inner_text() == first.title
    background = page.evaluate("getComputedStyle(document.querySelector('.card')).backgroundColor")
    assert background == ("rgb(28, 32, 38)" if scheme == "dark" else "rgb(255, 255, 255)")
    page.close()
