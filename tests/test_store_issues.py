"""The issue store on SQLite and PostgreSQL: one slot, one issue; the ledger; state changes."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from publisher.errors import DigestError
from publisher.issues import approve, build_issue, cancel
from publisher.model import Draft
from publisher.selection import Skipped
from publisher.store import Store

NOW = datetime(2025, 10, 20, 8, 0, tzinfo=UTC)


def add_articles(store: Store, count: int, *, newest: datetime = NOW - timedelta(hours=1), prefix="a") -> None:
    drafts = [
        Draft(
            key=f"{prefix}{i}",
            slug=f"{prefix}{i}",
            title=f"{prefix.upper()} {i}",
            summary_html="<p>Teaser</p>",
            content_html="<p>Body</p>",
            truncated=True,
            published=newest - timedelta(minutes=i),
        )
        for i in range(count)
    ]
    store.articles.ingest(
        drafts, site_url="https://news.example.org", guid_authority="news.example.org", now=NOW, source="test"
    )


@pytest.fixture
def weekly(make_settings, database_url):
    return make_settings({"newsletters": {"weekly": {"title": "Weekly", "max_articles": 3}}}, database_url=database_url)


def test_a_second_build_for_the_same_slot_returns_the_existing_issue(store, weekly):
    add_articles(store, 5)
    first = build_issue(store, weekly, "weekly", NOW, NOW)
    add_articles(store, 2, newest=NOW - timedelta(minutes=1), prefix="late")
    again = build_issue(store, weekly, "weekly", NOW, NOW + timedelta(minutes=5))
    assert again == first
    assert len(store.issues.list("weekly")) == 1
    assert (len(first.article_ids), len(first.overflow_ids)) == (3, 2)
    assert store.issues.sent_ids("weekly") == set(first.article_ids) | set(first.overflow_ids)


@pytest.mark.parametrize("attempt", range(3))
def test_concurrent_builds_for_one_slot_make_one_issue(store, weekly, attempt):
    add_articles(store, 4)
    results, errors = [], []
    start = threading.Barrier(6)

    def run() -> None:
        start.wait()
        try:
            results.append(build_issue(store, weekly, "weekly", NOW, NOW))
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 6 and len({issue.id for issue in results}) == 1  # never a Skipped
    assert [issue.number for issue in store.issues.list("weekly")] == [1]


def test_create_is_keyed_by_newsletter_and_slot(store):
    add_articles(store, 2)
    ids = [a.id for a in store.articles.newest()]
    values = {"slot": NOW, "state": "approved", "overflow_ids": [], "watermark": NOW, "subject": "S", "now": NOW}
    first, created = store.issues.create(newsletter="weekly", article_ids=ids[:1], **values)
    second, created_again = store.issues.create(newsletter="weekly", article_ids=ids[1:], **values)
    other, _ = store.issues.create(newsletter="daily", article_ids=ids[:1], **values)
    assert created and not created_again and second == first
    assert (first.number, other.number) == (1, 1)
    assert store.issues.get("weekly", 1).article_ids == (ids[0],)


def test_the_next_issue_continues_after_the_watermark_with_the_next_number(store, weekly):
    add_articles(store, 2, newest=NOW - timedelta(days=2))
    first = build_issue(store, weekly, "weekly", NOW - timedelta(days=1), NOW - timedelta(days=1))
    add_articles(store, 1, prefix="new")
    second = build_issue(store, weekly, "weekly", NOW, NOW)
    assert second.number == first.number + 1
    assert [a.title for a in store.articles.by_ids(second.article_ids)] == ["NEW 0"]
    assert store.issues.watermark("weekly") == second.watermark
    assert isinstance(build_issue(store, weekly, "weekly", NOW + timedelta(days=7), NOW + timedelta(days=7)), Skipped)


def test_approval_workflow_draft_approved_sending_sent(store, make_settings, database_url):
    settings = make_settings({"newsletters": {"weekly": {"require_approval": True}}}, database_url=database_url)
    add_articles(store, 2)
    issue = build_issue(store, settings, "weekly", NOW, NOW)
    assert issue.state == "draft"
    assert approve(store, "weekly", None, NOW).state == "approved"
    assert store.issues.transition("weekly", 1, "sending", NOW).state == "sending"
    sent = store.issues.transition("weekly", 1, "sent", NOW + timedelta(minutes=3))
    assert sent.state == "sent" and sent.sent_at == NOW + timedelta(minutes=3)
    with pytest.raises(DigestError, match="is sent; it cannot become cancelled"):
        cancel(store, "weekly", 1, NOW)
    with pytest.raises(DigestError, match="no draft issue"):
        approve(store, "weekly", None, NOW)


def test_cancelling_an_unsent_issue_gives_its_articles_back(store, weekly):
    add_articles(store, 2)
    first = build_issue(store, weekly, "weekly", NOW - timedelta(minutes=5), NOW)
    assert cancel(store, "weekly", first.number, NOW).state == "cancelled"
    assert store.issues.sent_ids("weekly") == set()
    assert store.issues.watermark("weekly") is None
    again = build_issue(store, weekly, "weekly", NOW, NOW)
    assert again.number == 2 and again.article_ids == first.article_ids


def test_a_send_cancelled_midway_keeps_its_articles_in_the_ledger(store, weekly):
    add_articles(store, 2)
    issue = build_issue(store, weekly, "weekly", NOW, NOW)
    store.issues.transition("weekly", issue.number, "sending", NOW)
    store.issues.transition("weekly", issue.number, "paused", NOW)
    cancel(store, "weekly", issue.number, NOW)
    assert store.issues.sent_ids("weekly") == set(issue.article_ids)


def test_unknown_issue_or_state_is_a_clear_error(store):
    with pytest.raises(DigestError, match="weekly has no issue 9"):
        store.issues.transition("weekly", 9, "approved", NOW)
    with pytest.raises(DigestError, match="unknown issue state"):
        store.issues.transition("weekly", 1, "shipped", NOW)


def test_migration_9_gives_an_older_issues_table_its_announcement_columns(database_url):
    """A database made before announcements: its issues become digests; a new database is left alone."""
    import sqlalchemy

    from publisher.store.schema import MIGRATIONS

    engine = sqlalchemy.create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("CREATE TABLE issues (id INTEGER PRIMARY KEY, newsletter VARCHAR(64))"))
        connection.execute(sqlalchemy.text("INSERT INTO issues (id, newsletter) VALUES (1, 'weekly')"))
        MIGRATIONS[8](connection)
        MIGRATIONS[8](connection)  # a second run (or a new database) changes nothing
        row = connection.execute(sqlalchemy.text("SELECT kind, preheader, body, content_key FROM issues")).one()
    engine.dispose()
    assert tuple(row) == ("digest", "", "", "")
