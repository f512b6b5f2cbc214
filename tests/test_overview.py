"""What the console shows (publisher/overview.py and the store's lookups), on SQLite and PostgreSQL:
the dashboard's figures, the preview with what is held back, searches, one subscriber's history."""

from datetime import UTC, datetime, timedelta

import pytest

from publisher import Publication
from publisher.clock import fixed
from publisher.errors import ConfigError, ContentError, SubscriberError
from publisher.model import Draft, Subscriber
from publisher.transports import MemoryTransport, SendResult
from tests.helpers import three_articles_and_readers

NOW = datetime(2026, 1, 7, 9, 30, tzinfo=UTC)  # a Wednesday


@pytest.fixture
def publication(make_settings, store):
    settings = make_settings(
        {"newsletters": {"weekly": {"title": "Weekly", "lookback": "30d", "schedule": "0 8 * * 1"}}},
        database_url=store.url,
    )
    three_articles_and_readers(store, settings, NOW, readers=3)

    def reply(message):
        return SendResult("failed", 550, "5.1.1", "no such user") if message.recipient.startswith("r2@") else None

    transport = MemoryTransport(reply=lambda m: reply(m) or SendResult("delivered", 250))
    return Publication(settings, store, clock=fixed(NOW), transport=transport)


def future_article(publication, title: str = "Next week's ride") -> None:
    publication.store.articles.ingest(
        [
            Draft(
                key="future",
                slug="next-weeks-ride",
                title=title,
                summary_html="<p>x</p>",
                content_html="<p>x</p>",
                truncated=False,
                published=NOW + timedelta(days=2),
            )
        ],
        site_url=publication.settings.site.url,
        guid_authority="x",
        now=NOW,
        source="t",
    )


def test_the_dashboard_counts_subscribers_growth_slots_issues_and_failures(publication):
    publication.store.subscribers.upsert_many(
        [Subscriber(email="old@example.org", status="confirmed", newsletters=("weekly",))], NOW - timedelta(days=20)
    )
    publication.store.subscribers.upsert_many(
        [Subscriber(email="p@example.org", status="pending", newsletters=("weekly",))], NOW
    )
    outcome = publication.send("weekly")
    board = publication.dashboard()
    [weekly] = board.newsletters
    assert weekly.audience == {"confirmed": 3, "bounced": 1, "pending": 1}  # r2 bounced (550)
    assert (weekly.joined_week, weekly.joined_month) == (2, 3)  # only confirmed addresses are growth
    assert weekly.next_slots == (
        datetime(2026, 1, 12, 8, 0, tzinfo=UTC),
        datetime(2026, 1, 19, 8, 0, tzinfo=UTC),
        datetime(2026, 1, 26, 8, 0, tzinfo=UTC),
    )
    [last] = weekly.last_issues
    assert last.issue.number == outcome.issue.number and {k: v for k, v in last.counts.items() if v} == {
        "delivered": 3,
        "failed": 1,
    }
    assert [(f["email"], f["last_code"]) for f in board.failures] == [("r2@example.org", 550)]
    assert (board.subscribers, board.articles, board.unfinished) == (5, 3, ())


def test_the_preview_shows_the_issue_its_text_and_what_is_held_back(publication):
    future_article(publication)
    shown = publication.preview_issue("weekly")
    assert shown.state == "planned" and shown.number == 1
    assert "Article 0" in shown.html and "Article 0" in shown.text and "<html" in shown.html.lower()
    assert [v.article.title for v in shown.included] == ["Article 0", "Article 1", "Article 2"]
    assert [(v.article.title, v.reason) for v in shown.held_back] == [("Next week's ride", "future-dated")]
    publication.build("weekly")
    assert publication.preview_issue("weekly").state == "approved"  # the stored issue, not a new plan


def test_subscriber_search_is_by_address_or_name_and_takes_wildcards_literally(publication):
    publication.add_subscriber("Ann.Lee@example.com", name="Ann Lee")
    publication.add_subscriber("percent%sign@example.com")
    found, total = publication.find_subscribers("ann")
    assert [p.email for p in found] == ["ann.lee@example.com"] and total == 1
    assert publication.find_subscribers("LEE")[1] == 1  # names too, any case
    assert [p.email for p in publication.find_subscribers("%")[0]] == ["percent%sign@example.com"]
    assert publication.find_subscribers("_")[1] == 0
    assert publication.find_subscribers(status="confirmed", newsletter="weekly")[1] == 3
    page, total = publication.find_subscribers(limit=2, offset=4)
    assert total == 5 and len(page) == 1


def test_a_subscribers_history_lists_what_was_sent_and_how_it_went(publication):
    publication.send("weekly")
    history = publication.subscriber_history("R2@example.org")
    [received] = history.received
    assert (received["newsletter"], received["number"], received["state"], received["last_code"]) == (
        "weekly",
        1,
        "failed",
        550,
    )
    assert publication.subscriber_history("r0@example.org").received[0]["state"] == "delivered"
    with pytest.raises(SubscriberError, match=r"nobody@example\.org is not a subscriber"):
        publication.subscriber_history("nobody@example.org")


def test_changing_newsletters_leaves_out_the_dropped_ones(make_settings, store):
    settings = make_settings({"newsletters": {"weekly": {}, "daily": {}}}, database_url=store.url)
    publication = Publication(settings, store, clock=fixed(NOW))
    publication.add_subscriber("a@example.org", newsletters=["weekly", "daily"], confirmed=True)
    assert publication.set_newsletters("a@example.org", ["daily"]).newsletters == ("daily",)
    with pytest.raises(ConfigError, match=r"no \[newsletters\.monthly\]"):
        publication.set_newsletters("a@example.org", ["monthly"])


def test_articles_are_searched_and_show_the_issues_they_went_into(publication):
    publication.send("weekly")
    found, total = publication.find_articles("article 1")
    assert [a.title for a in found] == ["Article 1"] and total == 1
    article, issues = publication.article(found[0].slug)
    assert article.title == "Article 1"
    assert [(i["newsletter"], i["number"], i["state"]) for i in issues] == [("weekly", 1, "sent")]
    with pytest.raises(ContentError, match="no article 'nope'"):
        publication.article("nope")
