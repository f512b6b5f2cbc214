"""The whole life of a subscriber in Debian's Chromium (Playwright), against the app under uvicorn.

Mail goes through the real SMTP transport to aiosmtpd on loopback. Screenshots of every page at
phone (375 px) and desktop (1200 px) widths land in screenshots/web/ (ignored by git; $PUBLISHER_SCREENSHOTS moves it).
"""

from __future__ import annotations

import importlib.util
import re
import threading
import time
from datetime import UTC
from pathlib import Path

import pytest

from publisher import tokens
from publisher.publication import Publication
from publisher.store import Store
from publisher.web import make_server
from tests.helpers import SCREENSHOTS, require
from tests.sink import SinkHandler, free_port, smtp_sink

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = SCREENSHOTS / "web"
WIDTHS = {"phone": 375, "desktop": 1200}
READER = "reader@example.com"

pytestmark = pytest.mark.browser


@pytest.fixture
def chromium_page():
    require(CHROMIUM.exists(), f"Chromium at {CHROMIUM} (apt-get install chromium)")
    require(importlib.util.find_spec("playwright") is not None, "Playwright (pip install -e '.[test]')")
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        # the reader's browser is in Sydney: the subscribe form guesses the time zone from it
        page = browser.new_page(viewport={"width": WIDTHS["desktop"], "height": 900}, timezone_id="Australia/Sydney")
        yield page
        browser.close()


@pytest.fixture
def mailbox():
    handler = SinkHandler()
    with smtp_sink(handler) as port:
        yield handler, port


@pytest.fixture
def site(make_settings, tmp_path, mailbox):
    """The app under uvicorn on a free loopback port, sending through the SMTP sink."""
    _, smtp_port = mailbox
    port = free_port()
    settings = make_settings(
        {
            "site": {"url": f"http://127.0.0.1:{port}", "title": "Field Notes"},
            "newsletters": {"weekly": {"title": "Field Notes Weekly", "from": "Field Notes <news@example.org>"}},
            "web": {"topics": ["python", "email"]},
            "delivery": {"transport": "smtp", "smtp": {"host": "127.0.0.1", "port": smtp_port, "connections": 1}},
        },
        database_url=f"sqlite:///{tmp_path / 'site.db'}",
    )
    store = Store.open(settings.database.url)
    server = make_server(Publication(settings, store), host="127.0.0.1", port=port)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield settings, store
    server.should_exit = True
    thread.join(timeout=10)
    store.close()


def wait_for_mail(handler: SinkHandler, recipient: str, count: int, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = handler.parsed(recipient)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{count} mail(s) for {recipient} did not arrive within {timeout} s")


def shoot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for label, width in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size({"width": WIDTHS["desktop"], "height": 900})


def link(message, pattern: str) -> str:
    return re.search(pattern, message.get_content())[0]


def test_subscribe_confirm_welcome_and_unsubscribe_in_a_real_browser(chromium_page, mailbox, site):
    page, (handler, _), (settings, store) = chromium_page, mailbox, site
    base = settings.site.url

    page.goto(f"{base}/subscribe")
    page.get_by_label("Email address").fill(READER)
    page.get_by_label("Name").fill("Rea Der")
    page.get_by_label("python").check()
    shoot(page, "1-subscribe")
    page.get_by_role("button", name="Subscribe").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", name="Check your inbox").is_visible()
    shoot(page, "2-check-inbox")

    [confirmation] = wait_for_mail(handler, READER, 1)
    assert confirmation["Subject"] == "Confirm your subscription to Field Notes"
    assert store.subscribers.get(READER).status == "pending"
    page.goto(link(confirmation, rf"{re.escape(base)}/confirm/[\w.-]+"))
    assert page.get_by_role("heading", name="Confirm your subscription").is_visible()
    assert store.subscribers.get(READER).status == "pending"  # opening the link confirms nothing
    shoot(page, "3-confirm")
    page.get_by_role("button", name="Yes, subscribe me").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", name="You are subscribed").is_visible()
    shoot(page, "4-confirmed")

    person = store.subscribers.get(READER)
    assert (person.status, person.newsletters, person.topics) == ("confirmed", ("weekly",), ("python",))
    assert person.timezone == "Australia/Sydney"  # guessed by the browser on the form
    welcome = wait_for_mail(handler, READER, 2)[1]
    assert welcome["Subject"] == "Welcome to Field Notes"
    assert "/preferences/" in welcome.get_content()

    # The unsubscribe link a digest carries (tokens.unsubscribe_url, as the digest builds it).
    page.goto(tokens.unsubscribe_url(base, settings.secret_keys, person.id, "weekly"))
    assert page.get_by_role("heading", name="Unsubscribe").is_visible()
    assert store.subscribers.get(READER).status == "confirmed"
    shoot(page, "5-unsubscribe")
    page.get_by_role("button", name="Unsubscribe").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", name="You are unsubscribed").is_visible()
    assert page.get_by_role("button", name="Subscribe again").is_visible()
    shoot(page, "6-unsubscribed")
    assert store.subscribers.get(READER).status == "unsubscribed"
    assert len(handler.parsed(READER)) == 2  # nothing more was sent


def test_preferences_and_errors_render_in_a_real_browser(chromium_page, site):
    page, (settings, store) = chromium_page, site
    from datetime import datetime

    from publisher.model import Subscriber

    now = datetime.now(UTC)
    store.subscribers.add(
        Subscriber(email=READER, name="Rea", status="confirmed", newsletters=("weekly",), consent_at=now), now
    )
    person = store.subscribers.get(READER)
    page.goto(tokens.preferences_url(settings.site.url, settings.secret_keys, person.id))
    page.get_by_label("Name").fill("Rea Der")
    page.get_by_label("email").check()
    page.get_by_role("button", name="Save preferences").click()
    page.wait_for_load_state()
    assert page.get_by_role("status").inner_text().startswith("Saved.")
    shoot(page, "7-preferences")
    assert store.subscribers.get(READER).topics == ("email",)

    answer = page.goto(f"{settings.site.url}/unsubscribe/not-a-real-token")
    assert answer.status == 400
    shoot(page, "8-bad-link")
