"""The console in Debian's Chromium (Playwright), against the app under uvicorn, sending through the
real SMTP transport to aiosmtpd: an editor previews, builds, approves and sends an issue and
watches its counts reach "sent"; a viewer cannot approve; five wrong passwords lock an account.

`make screenshots` runs this file too: the dashboard, the preview (also scrolled to the mail's
footer) and the issue page at 1200 px, and an owner's dashboard at 1200 and 375 px, land in
screenshots/console/ (ignored by git; $PUBLISHER_SCREENSHOTS moves it).
"""

from __future__ import annotations

import importlib.util
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from publisher.model import Draft, Subscriber
from publisher.operators import Role, cli_actor
from publisher.publication import Publication
from publisher.store import Store
from publisher.web import make_server
from tests.helpers import OURS, SCREENSHOTS, require
from tests.sink import SinkHandler, free_port, smtp_sink

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
SHOTS = SCREENSHOTS / "console"
PASSWORD = "correct horse battery staple"
READERS = 40

pytestmark = pytest.mark.browser


@pytest.fixture
def browser():
    require(CHROMIUM.exists(), f"Chromium at {CHROMIUM} (apt-get install chromium)")
    require(importlib.util.find_spec("playwright") is not None, "Playwright (pip install -e '.[test]')")
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def mailbox():
    handler = SinkHandler(delay=0.03)  # slow enough to see a send in progress
    with smtp_sink(handler) as port:
        yield handler, port


@pytest.fixture
def console_site(make_settings, tmp_path, mailbox):
    """The app under uvicorn with a publication's articles, readers and three operators."""
    _, smtp_port = mailbox
    port = free_port()
    settings = make_settings(
        {
            "site": {"url": f"http://127.0.0.1:{port}", "title": OURS.site_title},
            "newsletters": {
                "weekly": {
                    "title": "The Weekly Ride",
                    "from": "Alderbrook Wheelers <news@example.org>",
                    "lookback": "3650d",
                    "max_articles": 8,
                    "require_approval": True,
                }
            },
            "delivery": {"transport": "smtp", "smtp": {"host": "127.0.0.1", "port": smtp_port, "connections": 1}},
        },
        database_url=f"sqlite:///{tmp_path / 'console.db'}",
    )
    store = Store.open(settings.database.url)
    publication = Publication(settings, store)
    publication.import_sources([str(OURS.early.path)], fmt="textpage", as_of=OURS.early.as_of)
    now = datetime.now(UTC)
    store.articles.ingest(  # waits for its time: the preview says it is held back, and why
        [
            Draft(
                key="ride-report",
                slug="saturday-ride-report",
                title="Saturday ride report",
                summary_html="<p>Soon.</p>",
                content_html="<p>Soon.</p>",
                truncated=False,
                published=now + timedelta(days=2),
            )
        ],
        site_url=settings.site.url,
        guid_authority="example.org",
        now=now,
        source="console-test",
    )
    store.subscribers.upsert_many(
        [
            Subscriber(email=f"rider{i}@example.org", status="confirmed", newsletters=("weekly",))
            for i in range(READERS)
        ],
        now - timedelta(days=3),
    )
    store.subscribers.upsert_many(
        [Subscriber(email=f"new{i}@example.org", status="pending", newsletters=("weekly",)) for i in range(5)], now
    )
    shell = cli_actor("root")
    for role in Role:
        publication.add_operator(f"{role.value}@example.org", role, PASSWORD, actor=shell)
    server = make_server(publication, host="127.0.0.1", port=port, access_log=False)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield settings.site.url, publication
    server.should_exit = True
    thread.join(timeout=10)
    store.close()


def log_in(page, base: str, email: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/admin/")
    assert page.url.startswith(f"{base}/admin/login")  # no page without a session
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def shoot(page, name: str) -> None:
    """The whole page at 1200 px. The viewport is made as tall as the page (rather than a full-page
    screenshot, which lays the sandboxed preview frames out again mid-capture and squeezes them)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": 1200, "height": height})
    page.wait_for_timeout(500)  # the sandboxed frames paint in a process of their own
    page.screenshot(path=str(SHOTS / f"{name}-1200.png"))
    page.set_viewport_size({"width": 1200, "height": 900})


def test_an_editor_previews_approves_sends_and_watches_it_reach_sent(browser, console_site, mailbox):
    from playwright.sync_api import expect

    base, publication = console_site
    handler, _ = mailbox
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    log_in(page, base, "editor@example.org")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.locator(".figures").first).to_contain_text(str(READERS))

    page.get_by_role("link", name="Issues", exact=True).click()
    page.get_by_role("link", name="The Weekly Ride").first.click()
    expect(page.get_by_role("heading", name="The next issue (not built yet)")).to_be_visible()
    newest = OURS.issue_1[0]
    phone = page.frame_locator("iframe[title='The issue at phone width']")
    expect(phone.locator("body")).to_contain_text(newest)
    expect(page.frame_locator("iframe[title='The issue at desktop width']").locator("body")).to_contain_text(newest)
    page.get_by_text("Text part").click()
    expect(page.locator(".text-part pre")).to_contain_text(newest)
    expect(page.locator(".held-back")).to_contain_text("Saturday ride report")
    expect(page.locator(".held-back")).to_contain_text("future-dated")
    shoot(page, "preview")

    page.get_by_role("button", name="Build now").click()
    expect(page.locator("#issue-state")).to_have_text("draft")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("#issue-state")).to_have_text("approved")
    expect(page.get_by_role("status")).to_contain_text("approved")
    page.get_by_role("button", name="Send now").click()
    expect(page.get_by_role("heading", name="Send issue 1 now?")).to_be_visible()  # asked first
    page.get_by_role("button", name="Yes, send issue 1 now").click()
    expect(page.get_by_role("status")).to_contain_text("Sending issue 1")
    expect(page.locator("#issue-state")).to_have_text("sent", timeout=60_000)  # the page refreshes itself
    expect(page.locator("#delivered")).to_have_text(str(READERS))
    expect(page.locator("#recipients")).to_have_text(str(READERS))
    shoot(page, "issue")
    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator(".counts, table.list").first).to_contain_text(f"{READERS} / {READERS}")
    shoot(page, "dashboard")
    assert len({recipient for recipient, _ in handler.messages}) == READERS
    assert publication.issue("weekly", 1).state == "sent"
    assert {"issue.build", "issue.approve", "issue.send"} <= {e.action for e in publication.audit_log(cli_actor("t"))}


def test_a_viewer_has_no_approve_button_and_its_post_is_refused(browser, console_site):
    base, publication = console_site
    built = publication.build("weekly")
    assert built.issue is not None and built.issue.state == "draft"
    page = browser.new_page()
    log_in(page, base, "viewer@example.org")
    page.goto(f"{base}/admin/issues/weekly/{built.issue.number}")
    assert page.locator("#issue-state").text_content() == "draft"
    assert page.get_by_role("button", name="Approve").count() == 0
    assert page.get_by_role("button", name="Send now").count() == 0
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    refused = page.request.post(
        f"{base}/admin/issues/weekly/approve", form={"number": str(built.issue.number), "csrf": csrf or ""}
    )
    assert refused.status == 403 and "may not do this" in refused.text()
    assert publication.issue("weekly", built.issue.number).state == "draft"


def test_five_wrong_passwords_lock_the_account_for_a_while(browser, console_site):
    base, _ = console_site
    page = browser.new_page()
    for attempt in range(5):
        log_in(page, base, "editor@example.org", f"wrong password {attempt}")
    assert "wrong email address or password" in page.locator("[role=alert]").inner_text()
    log_in(page, base, "editor@example.org")  # the right password, too soon: the same answer
    assert "wrong email address or password" in page.locator("[role=alert]").inner_text()
    assert page.url.startswith(f"{base}/admin/login")


NAV = ("Dashboard", "Issues", "Subscribers", "Articles", "Access", "Audit log")
FOOTER = "1 Sample Street"  # the mail's last line: the postal address under the unsubscribe links


def boxes(page, selector: str) -> list[dict]:
    found: list[dict] = page.evaluate(
        f"[...document.querySelectorAll({selector!r})].map(e => e.getBoundingClientRect().toJSON())"
    )
    return found


def test_an_owners_nav_is_one_line_at_1200_px_and_usable_at_375(browser, console_site):
    from playwright.sync_api import expect

    base, _ = console_site
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    log_in(page, base, "owner@example.org")
    links = boxes(page, ".console-nav a")
    assert len(links) == len(NAV) and len({round(box["top"]) for box in links}) == 1  # one row of links
    bar = boxes(page, ".console-bar > *")
    assert max(box["bottom"] for box in bar) - min(box["top"] for box in bar) < 60  # and one line in all
    shoot(page, "dashboard-owner")
    page.get_by_text("owner@example.org").click()  # the account menu holds the log-out buttons
    expect(page.get_by_role("button", name="Log out everywhere")).to_be_visible()

    small = browser.new_page(viewport={"width": 375, "height": 800})
    log_in(small, base, "owner@example.org")
    assert small.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways scrolling
    for box in boxes(small, ".console-nav a"):
        assert box["left"] >= 0 and box["right"] <= 375 and box["height"] >= 24  # each link in view, tappable
    small.get_by_text("owner@example.org").click()
    logout = small.get_by_role("button", name="Log out", exact=True)
    expect(logout).to_be_visible()
    assert logout.bounding_box()["x"] >= 0 and small.evaluate("document.documentElement.scrollWidth") <= 375
    SHOTS.mkdir(parents=True, exist_ok=True)
    small.screenshot(path=str(SHOTS / "dashboard-owner-375.png"), full_page=True)
    small.get_by_role("link", name="Issues", exact=True).click()
    expect(small.get_by_role("heading", name="Issues")).to_be_visible()


def test_the_preview_frames_show_a_screenful_and_scroll_to_the_mails_footer(browser, console_site):
    from playwright.sync_api import expect

    base, _ = console_site
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    log_in(page, base, "editor@example.org")
    page.goto(f"{base}/admin/issues/weekly/")
    for width, title in ((375, "phone"), (600, "desktop")):
        frame = page.locator(f"iframe[title='The issue at {title} width']")
        box = frame.bounding_box()
        assert box is not None and round(box["width"]) == width and box["height"] >= 800  # a phone's screen
        inside = page.frame_locator(f"iframe[title='The issue at {title} width']")
        footer = inside.get_by_text(FOOTER)
        footer.scroll_into_view_if_needed()  # scrolling inside the frame reaches the footer...
        seen, shown = footer.bounding_box(), frame.bounding_box()
        assert seen is not None and shown is not None
        assert shown["x"] <= seen["x"] and seen["x"] + seen["width"] <= shown["x"] + shown["width"]
        assert shown["y"] <= seen["y"] and seen["y"] + seen["height"] <= shown["y"] + shown["height"]  # ...whole
    shoot(page, "preview-end")  # both frames scrolled to the footer
    with page.context.expect_page() as opened:
        page.get_by_role("link", name="open the whole mail").click()
    whole = opened.value
    whole.wait_for_load_state()
    expect(whole.get_by_text(FOOTER)).to_be_attached()
