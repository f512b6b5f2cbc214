"""What operators look up in the console: searches, one subscriber's history, one article's issues,
and the dashboard's figures. Read-only queries over the other concepts' tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.engine import Engine

from publisher.model import Article, StoredSubscriber
from publisher.store.articles import _article
from publisher.store.schema import (
    articles,
    deliveries,
    inbound_messages,
    issue_articles,
    issues,
    subscribers,
    subscriptions,
    suppressions,
)
from publisher.store.subscribers import SubscriberStore


def _like(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, its wildcards taken literally."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _page(query: Select[Any], limit: int, offset: int) -> Select[Any]:
    return query.limit(max(1, min(limit, 500))).offset(max(0, offset))


class LookupStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def subscribers(
        self,
        text: str = "",
        *,
        status: str | None = None,
        newsletter: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[StoredSubscriber], int]:
        """Subscribers whose address or name contains `text`, newest first, and how many match in all."""
        conditions = []
        if text.strip():
            pattern = _like(text.strip())
            conditions.append(
                or_(
                    subscribers.c.email.like(pattern, escape="\\"),
                    func.lower(subscribers.c.name).like(pattern, escape="\\"),
                )
            )
        if status:
            conditions.append(subscribers.c.status == status)
        if newsletter:
            conditions.append(
                subscribers.c.id.in_(
                    select(subscriptions.c.subscriber_id).where(subscriptions.c.newsletter == newsletter)
                )
            )
        query = select(subscribers).where(*conditions).order_by(subscribers.c.id.desc())
        with self.engine.connect() as connection:
            total = connection.scalar(select(func.count()).select_from(subscribers).where(*conditions)) or 0
            found = SubscriberStore(self.engine)._load(connection, _page(query, limit, offset))
        return found, total

    def received(self, subscriber_id: int, limit: int = 100) -> list[dict[str, Any]]:
        """The issues sent (or being sent) to a subscriber, newest first, with each delivery's state."""
        query = (
            select(
                issues.c.newsletter,
                issues.c.number,
                issues.c.subject,
                issues.c.kind,
                deliveries.c.state,
                deliveries.c.attempts,
                deliveries.c.last_code,
                deliveries.c.last_error,
                deliveries.c.queued_at,
                deliveries.c.delivered_at,
            )
            .join(issues, issues.c.id == deliveries.c.issue_id)
            .where(deliveries.c.subscriber_id == subscriber_id)
            .order_by(deliveries.c.queued_at.desc(), issues.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def returned(self, subscriber_id: int, limit: int = 100) -> list[dict[str, Any]]:
        """Mail that came back for a subscriber (bounces, complaints, unsubscribe requests), newest first."""
        query = (
            select(
                inbound_messages.c.received_at,
                inbound_messages.c.kind,
                inbound_messages.c.source,
                inbound_messages.c.status,
                inbound_messages.c.diagnostic,
                inbound_messages.c.action,
            )
            .where(inbound_messages.c.subscriber_id == subscriber_id)
            .order_by(inbound_messages.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def suppressions(self, subscriber_id: int) -> list[dict[str, Any]]:
        query = (
            select(
                suppressions.c.reason,
                suppressions.c.at,
                suppressions.c.evidence,
                suppressions.c.lifted_at,
                suppressions.c.lift_reason,
            )
            .where(suppressions.c.subscriber_id == subscriber_id)
            .order_by(suppressions.c.id.desc())
        )
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def articles(self, text: str = "", *, limit: int = 50, offset: int = 0) -> tuple[list[Article], int]:
        """Articles whose title contains `text` (or whose slug or a tag does), newest first, and the total."""
        conditions = []
        if text.strip():
            pattern = _like(text.strip())
            conditions.append(
                or_(
                    func.lower(articles.c.title).like(pattern, escape="\\"),
                    articles.c.slug.like(pattern, escape="\\"),
                    func.lower(articles.c.tags).like(pattern, escape="\\"),
                )
            )
        query = select(articles).where(*conditions).order_by(articles.c.published.desc(), articles.c.id.desc())
        with self.engine.connect() as connection:
            total = connection.scalar(select(func.count()).select_from(articles).where(*conditions)) or 0
            rows = connection.execute(_page(query, limit, offset)).mappings()
            return [_article(row) for row in rows], total

    def issues_of(self, article_id: int) -> list[dict[str, Any]]:
        """The issues an article went into (or is waiting in), oldest first."""
        query = (
            select(
                issues.c.newsletter,
                issues.c.number,
                issues.c.subject,
                issues.c.state,
                issues.c.slot,
                issues.c.sent_at,
                issue_articles.c.overflow,
            )
            .join(issues, issues.c.id == issue_articles.c.issue_id)
            .where(issue_articles.c.article_id == article_id)
            .order_by(issues.c.slot, issues.c.id)
        )
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def audience(self) -> dict[str, dict[str, int]]:
        """Subscribers per newsletter and status: {newsletter: {status: count}}."""
        query = (
            select(subscriptions.c.newsletter, subscribers.c.status, func.count())
            .join(subscribers, subscribers.c.id == subscriptions.c.subscriber_id)
            .group_by(subscriptions.c.newsletter, subscribers.c.status)
        )
        found: dict[str, dict[str, int]] = {}
        with self.engine.connect() as connection:
            for newsletter, status, count in connection.execute(query):
                found.setdefault(newsletter, {})[status] = count
        return found

    def joined_since(self, since: datetime) -> dict[str, int]:
        """Confirmed subscriptions per newsletter that started after `since` (growth)."""
        query = (
            select(subscriptions.c.newsletter, func.count())
            .join(subscribers, subscribers.c.id == subscriptions.c.subscriber_id)
            .where(subscriptions.c.created_at > since, subscribers.c.status == "confirmed")
            .group_by(subscriptions.c.newsletter)
        )
        with self.engine.connect() as connection:
            return {newsletter: count for newsletter, count in connection.execute(query)}  # noqa: C416 - rows are not pairs to dict()

    def recent_failures(self, since: datetime, limit: int = 20) -> list[dict[str, Any]]:
        """Deliveries that failed since `since`, newest first, with the issue they belong to."""
        query = (
            select(
                issues.c.newsletter,
                issues.c.number,
                deliveries.c.email,
                deliveries.c.last_code,
                deliveries.c.last_error,
                deliveries.c.updated_at,
            )
            .join(issues, issues.c.id == deliveries.c.issue_id)
            .where(deliveries.c.state == "failed", deliveries.c.updated_at > since)
            .order_by(deliveries.c.updated_at.desc())
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]
