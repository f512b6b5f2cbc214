"""The one schema, and the ordered migrations that build it.

A migration is appended, never edited once released: each names the tables or columns it adds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection, CursorResult, Dialect
from sqlalchemy.types import TypeDecorator

from publisher.errors import StoreError
from publisher.text import tag_slug


class UTCDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (which forgets offsets) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; attach a time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def inserted_id(result: CursorResult[Any]) -> int:
    """The id the database gave the one row an INSERT added."""
    key = result.inserted_primary_key
    if key is None:
        raise StoreError("the database returned no id for the row just added")
    return int(key[0])


metadata = MetaData()

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", UTCDateTime, nullable=False),
)

articles = Table(
    "articles",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(512), nullable=False, unique=True),
    Column("guid", String(512), nullable=False, unique=True),
    Column("slug", String(255), nullable=False, unique=True),
    Column("title", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("summary_html", Text, nullable=False),
    Column("content_html", Text, nullable=False),
    Column("truncated", Boolean, nullable=False),
    Column("authors", Text, nullable=False),  # JSON list
    Column("tags", Text, nullable=False),  # JSON list, in the author's order
    Column("published", UTCDateTime, nullable=False),
    Column("updated", UTCDateTime, nullable=False),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("source", Text, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Index("ix_articles_published", "published"),
)

article_tags = Table(
    "article_tags",
    metadata,
    Column("article_id", ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_slug", String(255), primary_key=True),
    Column("tag", Text, nullable=False),
    Index("ix_article_tags_slug", "tag_slug"),
)

source_state = Table(
    "source_state",
    metadata,
    Column("source", String(1024), primary_key=True),
    Column("etag", Text, nullable=False, default=""),
    Column("last_modified", Text, nullable=False, default=""),
    Column("fetched_at", UTCDateTime, nullable=True),
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, unique=True),  # stored lower-cased
    Column("name", Text, nullable=False, default=""),
    Column("status", String(16), nullable=False),
    Column("source", Text, nullable=False, default=""),
    Column("consent_at", UTCDateTime, nullable=True),
    Column("consent_text", Text, nullable=False, default=""),
    Column("topics", Text, nullable=False, default="[]"),  # JSON list
    Column("timezone", String(64), nullable=False, default="", server_default=""),  # "": the newsletter's
    Column("bounce_count", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("confirm_nonce", String(64), nullable=False, default=""),
    Column("confirmation_sent_at", UTCDateTime, nullable=True),
    # An id is never handed out twice, even after the newest row is deleted (an unconfirmed
    # sign-up purged): a VERP token minted for the deleted person must not name the next one.
    sqlite_autoincrement=True,
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("subscriber_id", ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    Column("newsletter", String(64), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
)

issues = Table(
    "issues",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("newsletter", String(64), nullable=False),
    Column("number", Integer, nullable=False),
    Column("slot", UTCDateTime, nullable=False),
    Column("state", String(16), nullable=False),
    Column("watermark", UTCDateTime, nullable=True),
    Column("subject", Text, nullable=False, default=""),
    Column("guid", String(512), nullable=False, default=""),  # minted once, for the issues feed
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("sent_at", UTCDateTime, nullable=True),
    # 8: one-off announcements are issues too (kind "announcement"), with their own body
    Column("kind", String(16), nullable=False, server_default="digest"),
    Column("preheader", Text, nullable=False, server_default=""),
    Column("body", Text, nullable=False, server_default=""),  # an announcement's Markdown
    Column("content_key", String(64), nullable=False, server_default=""),  # one file, one announcement
    UniqueConstraint("newsletter", "slot", name="uq_issues_slot"),
    UniqueConstraint("newsletter", "number", name="uq_issues_number"),
)

issue_articles = Table(
    "issue_articles",
    metadata,
    Column("issue_id", ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    Column("article_id", ForeignKey("articles.id"), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("overflow", Boolean, nullable=False, default=False),
)

sent_articles = Table(
    "sent_articles",
    metadata,
    Column("newsletter", String(64), primary_key=True),
    Column("article_id", ForeignKey("articles.id"), primary_key=True),
    Column("issue_id", ForeignKey("issues.id"), nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("issue_id", ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    Column("subscriber_id", ForeignKey("subscribers.id"), primary_key=True),
    Column("email", String(320), nullable=False),
    Column("name", Text, nullable=False, default=""),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("last_code", Integer, nullable=True),
    Column("last_status", String(16), nullable=False, default=""),  # enhanced status, e.g. 5.1.1
    Column("last_error", Text, nullable=False, default=""),
    Column("lease_token", String(32), nullable=False, default=""),  # who holds a "sending" row
    Column("queued_at", UTCDateTime, nullable=False),  # when the audience was frozen (give-up clock)
    Column("updated_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime, nullable=True),
    # The reader's topics when the audience was frozen (their digest variant), and when their
    # wave is due (a local-time newsletter; NULL: at once).
    Column("topics", Text, nullable=False, default="[]", server_default="[]"),
    Column("due_at", UTCDateTime, nullable=True),
    Index("ix_deliveries_state", "issue_id", "state", "next_attempt_at"),
)

web_events = Table(
    "web_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),  # e.g. subscribe-ip, confirm-mail
    Column("subject", String(320), nullable=False),  # an IP address or an email address
    Column("at", UTCDateTime, nullable=False),
    Index("ix_web_events_lookup", "kind", "subject", "at"),
)

slot_runs = Table(
    "slot_runs",
    metadata,
    Column("newsletter", String(64), primary_key=True),
    Column("slot", UTCDateTime, primary_key=True),
    Column("outcome", String(16), nullable=False),  # running | sent | skipped | missed | failed
    Column("detail", Text, nullable=False, default=""),
    Column("at", UTCDateTime, nullable=False),
)

opt_outs = Table(
    "opt_outs",
    metadata,
    Column("subscriber_id", ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    Column("newsletter", String(64), primary_key=True),
    Column("at", UTCDateTime, nullable=False),
)

reconfirmations = Table(
    "reconfirmations",
    metadata,
    # one row per address ever asked by `subscribers confirm-pending`: asked once, never twice
    Column("subscriber_id", ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    Column("email", String(320), nullable=False),
    Column("state", String(16), nullable=False),  # pending | sending | sent | deferred | failed | cancelled
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("lease_token", String(32), nullable=False, default=""),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("last_code", Integer, nullable=True),
    Column("last_error", Text, nullable=False, default=""),
    Column("queued_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    Index("ix_reconfirmations_state", "state", "next_attempt_at"),
)


inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("digest", String(64), nullable=False, unique=True),  # the same message read twice is one
    Column("received_at", UTCDateTime, nullable=False),
    Column("source", String(32), nullable=False),  # smtp | lmtp | file | imap | webhook:<provider>
    Column("kind", String(16), nullable=False),  # bounce | soft_bounce | complaint | unsubscribe | auto_reply | unknown
    Column("format", String(32), nullable=False, default=""),
    Column("recipient", String(320), nullable=False, default=""),
    Column("subscriber_id", Integer, nullable=True),
    Column("issue_id", Integer, nullable=True),
    Column("verified", Boolean, nullable=False, default=False),
    Column("status", String(16), nullable=False, default=""),
    Column("diagnostic", Text, nullable=False, default=""),
    Column("action", Text, nullable=False, default=""),  # what was done, in words
    Column("sender", String(320), nullable=False, default=""),
    Column("subject", Text, nullable=False, default=""),
    Column("raw", Text, nullable=False, default=""),  # kept for an operator
    Index("ix_inbound_kind", "kind", "received_at"),
)

webhook_nonces = Table(
    "webhook_nonces",
    metadata,
    Column("nonce", String(320), primary_key=True),  # provider:token, accepted once
    Column("seen_at", UTCDateTime, nullable=False),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subscriber_id", ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    Column("email", String(320), nullable=False),
    Column("reason", String(32), nullable=False),  # hard_bounce | soft_bounces | complaint
    Column("at", UTCDateTime, nullable=False),
    Column("evidence", Text, nullable=False, default=""),
    Column("newsletters", Text, nullable=False, default="[]"),  # JSON: restored when lifted
    Column("lifted_at", UTCDateTime, nullable=True),
    Column("lift_reason", Text, nullable=False, default=""),
    Index("ix_suppressions_active", "subscriber_id", "lifted_at"),
)

bounce_scores = Table(
    "bounce_scores",
    metadata,
    Column("subscriber_id", ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    Column("score", Float, nullable=False),
    Column("at", UTCDateTime, nullable=False),  # when `score` was last computed
)

operators = Table(
    "operators",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, unique=True),  # stored lower-cased
    Column("role", String(16), nullable=False),  # owner | editor | viewer
    Column("password_hash", Text, nullable=False),  # argon2id
    Column("failed_logins", Integer, nullable=False, default=0),  # wrong passwords in a row
    Column("locked_until", UTCDateTime, nullable=True),
    Column("session_generation", Integer, nullable=False, default=0),  # "log out everywhere" bumps it
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),  # unique among tokens not revoked (checked by the store)
    Column("scope", String(16), nullable=False),  # read | write | admin
    Column("digest", String(64), nullable=False, unique=True),  # SHA-256 of the token; the token is kept nowhere
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", Text, nullable=False, default=""),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("last_used_at", UTCDateTime, nullable=True),
    Index("ix_api_tokens_name", "name"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(400), nullable=False),  # operator:EMAIL | token:NAME | cli:USER
    Column("action", String(64), nullable=False),  # e.g. issue.approve, subscriber.add, login.failed
    Column("detail", Text, nullable=False, default="{}"),  # JSON, secrets masked
    Index("ix_audit_log_at", "at"),
)

console_sessions = Table(
    "console_sessions",
    metadata,
    Column("digest", String(64), primary_key=True),  # SHA-256 of the cookie's session id; the id is kept nowhere
    Column("operator_id", ForeignKey("operators.id", ondelete="CASCADE"), nullable=False),
    Column("generation", Integer, nullable=False),  # the operator's session generation at login
    Column("csrf", String(64), nullable=False),  # the token every form of this session carries
    Column("created_at", UTCDateTime, nullable=False),
    Column("seen_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Index("ix_console_sessions_operator", "operator_id"),
)

# What each kind of run (an import, a feeds build, a scheduler job) has done so far, one row per
# (kind, name): counters that only grow, so /metrics reads them as Prometheus counters from any process.
run_totals = Table(
    "run_totals",
    metadata,
    Column("kind", String(32), primary_key=True),  # import | feeds | job
    Column("name", String(128), primary_key=True),  # "" or the job, e.g. newsletter:weekly
    Column("runs", Integer, nullable=False, default=0),
    Column("failures", Integer, nullable=False, default=0),
    Column("seconds", Float, nullable=False, default=0.0),  # total time spent, all runs
    Column("last_started", UTCDateTime, nullable=True),
    Column("last_seconds", Float, nullable=False, default=0.0),
    Column("last_ok_at", UTCDateTime, nullable=True),  # when the last successful run finished
    Column("last_error", Text, nullable=False, default=""),
)

# Who holds the scheduler's one-active lock (the lock itself is a flock or an advisory lock that
# other processes cannot read): written on taking it, refreshed while held, cleared on release.
lock_holders = Table(
    "lock_holders",
    metadata,
    Column("lock", String(64), primary_key=True),
    Column("holder", Text, nullable=False),  # host:pid
    Column("since", UTCDateTime, nullable=False),
    Column("seen_at", UTCDateTime, nullable=False),
)


def _add_columns(table: Table, *names: str) -> Callable[[Connection], None]:
    """Add columns (as declared on `table`) that an older database lacks; a new one has them already."""

    def migrate(connection: Connection) -> None:
        present = {column["name"] for column in inspect(connection).get_columns(table.name)}
        for name in names:
            if name in present:
                continue
            column = table.c[name]
            kind = column.type.compile(dialect=connection.dialect)
            default = column.server_default.arg if column.server_default is not None else ""  # type: ignore[attr-defined]
            connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind} NOT NULL DEFAULT '{default}'"))

    return migrate


def _add_nullable(table: Table, name: str) -> Callable[[Connection], None]:
    """Add a nullable column (as declared on `table`) that an older database lacks."""

    def migrate(connection: Connection) -> None:
        if name not in {column["name"] for column in inspect(connection).get_columns(table.name)}:
            kind = table.c[name].type.compile(dialect=connection.dialect)
            connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}"))

    return migrate


def _topics_and_waves(connection: Connection) -> None:
    """Issue 16: a reader's time zone; a delivery's frozen topics and the time its wave is due."""
    _add_columns(subscribers, "timezone")(connection)
    _add_columns(deliveries, "topics")(connection)
    _add_nullable(deliveries, "due_at")(connection)


def _create(*tables: Table) -> Callable[[Connection], None]:
    def migrate(connection: Connection) -> None:
        metadata.create_all(connection, tables=list(tables))

    return migrate


def _forget_local_links(connection: Connection) -> None:
    """`articles.url` held our own permalink (`{site.url}/<slug>/`) frozen at import; links to our
    host are now computed when output is rendered, so the column keeps only origin links."""
    connection.execute(articles.update().where(articles.c.url.like("%/" + articles.c.slug + "/")).values(url=""))


def _tag_slugs_in_every_script(connection: Connection) -> None:
    """Tags in other scripts than Latin had no slug (they were left out of `article_tags`, so
    topics and tag pages never saw them): every article's tag rows are written again from its own
    tags with `tag_slug`, which keeps Latin slugs as they were."""
    for article_id, raw in connection.execute(select(articles.c.id, articles.c.tags)).all():
        by_slug = {tag_slug(tag): tag for tag in json.loads(raw or "[]") if isinstance(tag, str) and tag_slug(tag)}
        connection.execute(delete(article_tags).where(article_tags.c.article_id == article_id))
        if by_slug:
            rows = [{"article_id": article_id, "tag_slug": slug, "tag": tag} for slug, tag in by_slug.items()]
            connection.execute(insert(article_tags), rows)


def _subscriber_ids_never_reused(connection: Connection) -> None:
    """Issue 15: on SQLite, `subscribers` is rebuilt with AUTOINCREMENT (SQLite's documented
    twelve-step procedure), so a deleted subscriber's id is never given to the next one.

    `Store.migrate` runs migrations with foreign keys off on SQLite, as the procedure requires:
    dropping the old table then neither cascades nor fails. Every row keeps its id; the table's
    indexes and triggers are created again; every foreign key naming `subscribers` names the
    rebuilt table once it has the old name. PostgreSQL's sequences never reuse an id already.
    """
    if connection.dialect.name != "sqlite":
        return
    created = connection.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'subscribers'"
    ).scalar()
    if "AUTOINCREMENT" in str(created or "").upper():
        return  # a database this version created
    if connection.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise StoreError("rebuilding the subscribers table needs foreign keys off (run by Store.migrate)")
    extras = connection.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'subscribers' AND type IN ('index', 'trigger')"
        " AND sql IS NOT NULL"
    ).scalars()
    recreate = list(extras)
    rebuilt = subscribers.to_metadata(MetaData(), name="subscribers_rebuilt")
    rebuilt.create(connection)
    connection.execute(insert(rebuilt).from_select(list(subscribers.c.keys()), select(*subscribers.c)))
    connection.exec_driver_sql("DROP TABLE subscribers")
    connection.exec_driver_sql("ALTER TABLE subscribers_rebuilt RENAME TO subscribers")
    for statement in recreate:
        connection.exec_driver_sql(statement)
    top = connection.exec_driver_sql("SELECT max(id) FROM subscribers").scalar()
    if top is not None:  # the copy set it already; said here so it never depends on that
        connection.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = 'subscribers'")
        connection.exec_driver_sql("INSERT INTO sqlite_sequence (name, seq) VALUES ('subscribers', ?)", (int(top),))
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise StoreError(f"rebuilding the subscribers table left {len(broken)} rows with a broken foreign key")


MIGRATIONS: list[Callable[[Connection], None]] = [
    _create(articles, article_tags, source_state),  # 1
    _create(subscribers, subscriptions),  # 2
    _create(issues, issue_articles, sent_articles),  # 3
    _create(deliveries),  # 4
    _create(web_events),  # 5
    _create(slot_runs),  # 6
    _create(opt_outs),  # 7: a per-newsletter unsubscribe that imports must not undo
    _create(inbound_messages, suppressions, bounce_scores),  # 8: mail that comes back, and what it did
    _add_columns(issues, "kind", "preheader", "body", "content_key"),  # 9: announcements
    _create(reconfirmations),  # 10: the confirm-pending ledger (imported addresses asked to confirm)
    _forget_local_links,  # 11: articles.url keeps origin links only (the public site, issue 12)
    _create(webhook_nonces),  # 12: signed webhook tokens already used (replays are refused)
    _topics_and_waves,  # 13: readers' time zones; deliveries' topics and due times (issue 16)
    _create(operators, api_tokens, audit_log),  # 14: the console's operators, API tokens, the audit log (issue 17)
    _create(console_sessions),  # 15: the console's sessions (logout ends one, "log out everywhere" all)
    _create(run_totals, lock_holders),  # 16: what /metrics and /healthz read (issue 17)
    _tag_slugs_in_every_script,  # 17: tags in every script get slugs (issue 16)
    _subscriber_ids_never_reused,  # 18: SQLite: subscriber ids are never given out twice (issue 15)
]
