"""Articles in the store: idempotent upserts from importers, newest-first queries for feeds and digests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy import delete, false, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine, RowMapping

from publisher.errors import StoreError
from publisher.links import RESERVED_SLUGS
from publisher.model import Article, Draft, ImportReport, SourceState
from publisher.store.schema import article_tags, articles, inserted_id, source_state
from publisher.text import safe_url, storable, tag_slug


def content_hash(draft: Draft) -> str:
    """What makes two imports of an article "the same": everything a reader sees."""
    parts = [
        draft.title,
        draft.summary_html,
        draft.content_html,
        str(draft.truncated),
        json.dumps(draft.tags),
        json.dumps(draft.authors),
        draft.url,
    ]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def article_id(article: Article) -> int:
    """The id of an article read from the store; a StoreError for one that never was stored."""
    if article.id is None:
        raise StoreError(f"article {article.slug!r} has no id: it was never stored")
    return article.id


def _article(row: RowMapping) -> Article:
    return Article(
        id=row["id"],
        guid=row["guid"],
        slug=row["slug"],
        title=row["title"],
        origin=row["url"],  # the source's link only; our own links are computed (links.py)
        summary_html=row["summary_html"],
        content_html=row["content_html"],
        truncated=bool(row["truncated"]),
        authors=tuple(json.loads(row["authors"])),
        tags=tuple(json.loads(row["tags"])),
        published=row["published"],
        updated=row["updated"],
        first_seen=row["first_seen"],
        source=row["source"],
        content_hash=row["content_hash"],
    )


def _storable(draft: Draft) -> Draft:
    return replace(
        draft,
        title=storable(draft.title),
        summary_html=storable(draft.summary_html),
        content_html=storable(draft.content_html),
        url=safe_url(storable(draft.url)),  # another scheme gets the site's permalink instead
        tags=tuple(storable(t) for t in draft.tags),
        authors=tuple(storable(a) for a in draft.authors),
    )


def _content(draft: Draft, slug: str, digest: str) -> dict[str, object]:
    """The columns an import writes whether the article is new or changed."""
    return {
        "slug": slug,
        "title": draft.title,
        "url": draft.url,
        "summary_html": draft.summary_html,
        "content_html": draft.content_html,
        "truncated": draft.truncated,
        "authors": json.dumps(list(draft.authors)),
        "tags": json.dumps(list(draft.tags)),
        "source": draft.source,
        "content_hash": digest,
    }


class ArticleStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def ingest(
        self,
        drafts: Sequence[Draft],
        *,
        guid_authority: str,
        now: datetime,
        source: str,
        source_state: SourceState | None = None,
        site_url: str = "",
    ) -> ImportReport:
        """Store parsed drafts in one transaction: new ones get a guid; changed ones keep theirs.
        A feed's validators (`source_state`) are saved in the same transaction, never before.

        Only an origin link is stored (`draft.url`, "" for local pages); it follows the source
        even when nothing a reader sees changed (a `[[sources]] link` setting that changed).
        `site_url` is ignored (links to our host are computed when output is rendered); it stays
        so that callers written before that keep working."""
        del site_url
        report = ImportReport(source=source)
        unchanged = 0
        with self.engine.begin() as connection:
            if source_state is not None:
                self._save_source_state(connection, source_state, now)
            for given in drafts:
                draft = _storable(given)
                existing = self._stored(connection, draft)
                digest = content_hash(draft)
                if existing is None:
                    self._insert(connection, draft, digest, guid_authority, now)
                    report.added.append(draft.title)
                elif existing["content_hash"] != digest:
                    self._update(connection, existing["id"], draft, digest, now)
                    report.updated.append(draft.title)
                else:
                    if existing["url"] != draft.url:
                        connection.execute(
                            update(articles).where(articles.c.id == existing["id"]).values(url=draft.url)
                        )
                    unchanged += 1
        return ImportReport(source, report.added, report.updated, unchanged)

    def _stored(self, connection: Connection, draft: Draft) -> RowMapping | None:
        """The stored row of `draft`: by its key, else by its former key (that row takes the new key)."""
        found = connection.execute(select(articles).where(articles.c.key == draft.key)).mappings().first()
        if found is not None or not draft.former_key:
            return found
        former = connection.execute(select(articles).where(articles.c.key == draft.former_key)).mappings().first()
        if former is not None:
            connection.execute(update(articles).where(articles.c.id == former["id"]).values(key=draft.key))
        return former

    def _unique_slug(self, connection: Connection, slug: str, article_id: int | None = None) -> str:
        candidate, n = slug, 2
        while True:
            query = select(articles.c.id).where(articles.c.slug == candidate)
            found = connection.scalar(query)
            if candidate not in RESERVED_SLUGS and (found is None or found == article_id):
                return candidate
            candidate, n = f"{slug}-{n}", n + 1

    def _insert(self, connection: Connection, draft: Draft, digest: str, guid_authority: str, now: datetime) -> None:
        slug = self._unique_slug(connection, draft.slug)
        guid = draft.guid or f"tag:{guid_authority},{now:%Y-%m-%d}:{slug}"
        result = connection.execute(
            insert(articles).values(
                key=draft.key,
                guid=guid,
                published=draft.published,
                updated=draft.updated or draft.published,
                first_seen=now,
                **_content(draft, slug, digest),
            )
        )
        self._set_tags(connection, inserted_id(result), draft.tags)

    def _update(self, connection: Connection, article_id: int, draft: Draft, digest: str, now: datetime) -> None:
        slug = self._unique_slug(connection, draft.slug, article_id)
        connection.execute(
            update(articles)
            .where(articles.c.id == article_id)
            .values(updated=draft.updated or now, **_content(draft, slug, digest))
        )
        self._set_tags(connection, article_id, draft.tags)

    def set_tags(self, changes: Sequence[tuple[Article, tuple[str, ...], str]]) -> None:
        """New tags (and the content hash that goes with them) for stored articles, in one transaction."""
        with self.engine.begin() as connection:
            for article, tags, digest in changes:
                connection.execute(
                    update(articles)
                    .where(articles.c.id == article_id(article))
                    .values(tags=json.dumps([storable(tag) for tag in tags]), content_hash=digest)
                )
                self._set_tags(connection, article_id(article), tags)

    def _set_tags(self, connection: Connection, article_id: int, tags: Iterable[str]) -> None:
        connection.execute(delete(article_tags).where(article_tags.c.article_id == article_id))
        by_slug = {tag_slug(tag): tag for tag in tags if tag_slug(tag)}
        if by_slug:
            connection.execute(
                insert(article_tags),
                [{"article_id": article_id, "tag_slug": slug, "tag": tag} for slug, tag in by_slug.items()],
            )

    def newest(
        self,
        limit: int | None = None,
        *,
        tag_slug: str | None = None,
        since: datetime | None = None,
        inclusive: bool = False,
        until: datetime | None = None,
    ) -> list[Article]:
        """Articles newest first (ties broken by id, so the order is stable), published after
        `since` (or at it, when `inclusive`) and, given `until`, not after it (scheduled ones wait)."""
        query = select(articles).order_by(articles.c.published.desc(), articles.c.id.desc())
        if until is not None:
            query = query.where(articles.c.published <= until)
        if tag_slug is not None:
            query = query.join(article_tags, article_tags.c.article_id == articles.c.id).where(
                article_tags.c.tag_slug == tag_slug
            )
        if since is not None:
            query = query.where(articles.c.published >= since if inclusive else articles.c.published > since)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            return [_article(row) for row in connection.execute(query).mappings()]

    def new_since(self, watermark: datetime | None, built_at: datetime | None) -> list[Article]:
        """Articles published at or after `watermark` or first imported after `built_at`, newest
        first (every article when there is no watermark: all are new to a first issue)."""
        query = select(articles).order_by(articles.c.published.desc(), articles.c.id.desc())
        if watermark is not None:
            seen_later = articles.c.first_seen > built_at if built_at is not None else false()
            query = query.where(or_(articles.c.published >= watermark, seen_later))
        with self.engine.connect() as connection:
            return [_article(row) for row in connection.execute(query).mappings()]

    def by_ids(self, ids: Sequence[int]) -> list[Article]:
        """The articles with these ids, in the order given."""
        if not ids:
            return []
        with self.engine.connect() as connection:
            rows = connection.execute(select(articles).where(articles.c.id.in_(list(ids)))).mappings()
            found = {row["id"]: _article(row) for row in rows}
        return [found[i] for i in ids if i in found]

    def by_key(self, key: str) -> Article | None:
        """The article an importer (or the API) knows by `key`, whatever slug it was given."""
        with self.engine.connect() as connection:
            row = connection.execute(select(articles).where(articles.c.key == key)).mappings().first()
        return _article(row) if row else None

    def by_slug(self, slug: str) -> Article | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(articles).where(articles.c.slug == slug)).mappings().first()
        return _article(row) if row else None

    def tags(self, until: datetime | None = None) -> dict[str, str]:
        """Every tag in use (by an article published by `until`, when given): slug → display name."""
        query = select(article_tags.c.tag_slug, func.min(article_tags.c.tag)).group_by(article_tags.c.tag_slug)
        if until is not None:
            query = query.join(articles, articles.c.id == article_tags.c.article_id).where(
                articles.c.published <= until
            )
        with self.engine.connect() as connection:
            rows = connection.execute(query)
            return {key: value for key, value in rows}  # noqa: C416 - rows are not pairs to dict()

    def fingerprint(self, until: datetime) -> tuple:
        """Changes whenever what is published by `until` changes: for caches of rendered pages."""
        query = select(
            func.count(), func.max(articles.c.id), func.max(articles.c.updated), func.max(articles.c.first_seen)
        ).where(articles.c.published <= until)
        with self.engine.connect() as connection:
            return tuple(connection.execute(query).one())

    def next_scheduled(self, after: datetime) -> datetime | None:
        """When the next article dated in the future is due, or None."""
        query = select(func.min(articles.c.published)).where(articles.c.published > after)
        with self.engine.connect() as connection:
            return connection.scalar(query)

    def count(self) -> int:
        with self.engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(articles)) or 0

    def source_state(self, source: str) -> tuple[str, str]:
        """The ETag and Last-Modified a feed URL last answered with."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(source_state.c.etag, source_state.c.last_modified).where(source_state.c.source == source)
            ).first()
        return (row[0], row[1]) if row else ("", "")

    def _save_source_state(self, connection: Connection, state: SourceState, now: datetime) -> None:
        connection.execute(delete(source_state).where(source_state.c.source == state.source))
        connection.execute(
            insert(source_state).values(
                source=state.source, etag=state.etag, last_modified=state.last_modified, fetched_at=now
            )
        )
