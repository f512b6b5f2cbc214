"""Issues in the store: one issue per (newsletter, slot), created atomically with its ledger rows.

The ledger (`sent_articles`) records, per newsletter, every article an issue has taken, so no
article is ever put in two issues of one newsletter. Cancelling an issue before it starts sending
gives its articles back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from publisher.errors import DigestError, IssueConflict
from publisher.model import ISSUE_TRANSITIONS, UNSTARTED_STATES, Issue, IssueKind, IssueState
from publisher.store.schema import inserted_id, issue_articles, issues, sent_articles

_DIGEST = issues.c.kind == IssueKind.DIGEST.value


class IssueStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- creating -------------------------------------------------------------------------------

    def create(
        self,
        *,
        newsletter: str,
        slot: datetime,
        state: str,
        article_ids: Sequence[int],
        overflow_ids: Sequence[int],
        watermark: datetime | None,
        subject: str,
        now: datetime,
        guid_authority: str = "localhost",
    ) -> tuple[Issue, bool]:
        """Store a new issue and its ledger rows in one transaction; returns (issue, created).

        The issue's guid (for the issues feed) is minted here, once, from `guid_authority`, the
        date and the number. If the slot already has an issue, it is returned with created=False.
        If another writer raced us to the number or to an article, raises IssueConflict.
        """
        if existing := self.by_slot(newsletter, slot):
            return existing, False
        try:
            with self.engine.begin() as connection:
                issue_id = self._insert(connection, newsletter, slot, state, watermark, subject, now, guid_authority)
                self._insert_articles(connection, issue_id, newsletter, article_ids, overflow_ids)
        except IntegrityError:
            if existing := self.by_slot(newsletter, slot):
                return existing, False
            raise IssueConflict(f"{newsletter}: another issue was created at the same time") from None
        issue = self.by_slot(newsletter, slot)
        if issue is None:  # pragma: no cover - we just committed it
            raise DigestError(f"{newsletter}: the issue for {slot.isoformat()} vanished after creation")
        return issue, True

    def create_announcement(
        self,
        *,
        newsletter: str,
        at: datetime,
        subject: str,
        preheader: str,
        body: str,
        content_key: str,
        now: datetime,
        guid_authority: str = "localhost",
    ) -> Issue:
        """Store an approved announcement for `at`, taking the newsletter's next issue number.

        Its slot is `at`, moved a microsecond earlier off the whole second (where digests' slots
        fall) and off any issue already there, so it never takes a digest's slot and is due at `at`.
        """
        slot = at if at.microsecond else at - timedelta(microseconds=1)
        for _ in range(20):
            try:
                with self.engine.begin() as connection:
                    issue_id = self._insert(
                        connection, newsletter, slot, IssueState.APPROVED, None, subject, now, guid_authority
                    )
                    connection.execute(
                        update(issues)
                        .where(issues.c.id == issue_id)
                        .values(
                            kind=IssueKind.ANNOUNCEMENT.value, preheader=preheader, body=body, content_key=content_key
                        )
                    )
            except IntegrityError:
                slot = slot - timedelta(microseconds=1)
                continue
            return self._query(issues.c.id == issue_id)[0]
        raise IssueConflict(f"{newsletter}: other issues kept taking the announcement's number; try again")

    def announcement(self, newsletter: str, content_key: str) -> Issue | None:
        """The newest announcement of these words that was not cancelled."""
        found = self._query(
            issues.c.newsletter == newsletter,
            issues.c.kind == IssueKind.ANNOUNCEMENT.value,
            issues.c.content_key == content_key,
            issues.c.state != IssueState.CANCELLED.value,
            order=[issues.c.number.desc()],
            limit=1,
        )
        return found[0] if found else None

    def _insert(
        self,
        connection: Connection,
        newsletter: str,
        slot: datetime,
        state: str,
        watermark: datetime | None,
        subject: str,
        now: datetime,
        guid_authority: str,
    ) -> int:
        number = (
            connection.scalar(select(func.max(issues.c.number)).where(issues.c.newsletter == newsletter)) or 0
        ) + 1
        guid = f"tag:{guid_authority},{now:%Y-%m-%d}:newsletters/{newsletter}/{number}"
        result = connection.execute(
            insert(issues).values(
                newsletter=newsletter,
                number=number,
                slot=slot,
                state=state,
                watermark=watermark,
                subject=subject,
                guid=guid,
                created_at=now,
            )
        )
        return inserted_id(result)

    @staticmethod
    def _insert_articles(
        connection: Connection, issue_id: int, newsletter: str, article_ids: Sequence[int], overflow_ids: Sequence[int]
    ) -> None:
        rows = [(article_id, False) for article_id in article_ids]
        rows += [(article_id, True) for article_id in overflow_ids]
        connection.execute(
            insert(issue_articles),
            [
                {"issue_id": issue_id, "article_id": article_id, "position": position, "overflow": overflow}
                for position, (article_id, overflow) in enumerate(rows)
            ],
        )
        connection.execute(
            insert(sent_articles),
            [{"newsletter": newsletter, "article_id": article_id, "issue_id": issue_id} for article_id, _ in rows],
        )

    # -- reading --------------------------------------------------------------------------------

    def _load(self, connection: Connection, rows: Sequence[RowMapping]) -> list[Issue]:
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        members = (
            connection.execute(
                select(issue_articles)
                .where(issue_articles.c.issue_id.in_(ids))
                .order_by(issue_articles.c.issue_id, issue_articles.c.position)
            )
            .mappings()
            .all()
        )
        chosen: dict[int, tuple[list[int], list[int]]] = {i: ([], []) for i in ids}
        for member in members:
            chosen[member["issue_id"]][1 if member["overflow"] else 0].append(member["article_id"])
        return [_issue(row, *chosen[row["id"]]) for row in rows]

    def _query(
        self, *conditions: ColumnElement[bool], order: Sequence[ColumnElement[Any]] = (), limit: int | None = None
    ) -> list[Issue]:
        query = select(issues).where(*conditions).order_by(*(order or [issues.c.number]))
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            return self._load(connection, connection.execute(query).mappings().all())

    def next_approved_slot(self, now: datetime) -> datetime | None:
        """The earliest time an approved issue or announcement is waiting for, still ahead of `now`."""
        query = select(func.min(issues.c.slot)).where(issues.c.state == IssueState.APPROVED, issues.c.slot > now)
        with self.engine.connect() as connection:
            moment: datetime | None = connection.scalar(query)
        return moment

    def by_slot(self, newsletter: str, slot: datetime) -> Issue | None:
        """The digest built for a slot (announcements are never a slot's issue)."""
        found = self._query(issues.c.newsletter == newsletter, issues.c.slot == slot, _DIGEST)
        return found[0] if found else None

    def get(self, newsletter: str, number: int) -> Issue | None:
        found = self._query(issues.c.newsletter == newsletter, issues.c.number == number)
        return found[0] if found else None

    def list(self, newsletter: str, *, states: Sequence[str] | None = None, kind: str | None = None) -> list[Issue]:
        """The newsletter's issues (of one kind, if given), oldest first."""
        return self._query(*_filters(newsletter, states, kind))

    def latest(self, newsletter: str, *, states: Sequence[str] | None = None, kind: str | None = None) -> Issue | None:
        found = self._query(*_filters(newsletter, states, kind), order=[issues.c.number.desc()], limit=1)
        return found[0] if found else None

    def previous(self, newsletter: str, *, before: int | None = None) -> tuple[datetime, datetime] | None:
        """(watermark, built at) of the latest digest not cancelled (before issue number `before`)."""
        conditions = [issues.c.newsletter == newsletter, issues.c.state != "cancelled", _DIGEST]
        if before is not None:
            conditions.append(issues.c.number < before)
        query = select(issues.c.watermark, issues.c.created_at).where(*conditions)
        with self.engine.connect() as connection:
            row = connection.execute(query.order_by(issues.c.number.desc()).limit(1)).first()
        return (row.watermark, row.created_at) if row is not None and row.watermark is not None else None

    def watermark(self, newsletter: str, *, before: int | None = None) -> datetime | None:
        """The watermark of the latest digest not cancelled (before issue number `before`, if given)."""
        found = self.previous(newsletter, before=before)
        return found[0] if found else None

    def sent_ids(self, newsletter: str) -> set[int]:
        """The ledger: every article any issue of this newsletter has taken."""
        with self.engine.connect() as connection:
            return set(
                connection.scalars(select(sent_articles.c.article_id).where(sent_articles.c.newsletter == newsletter))
            )

    def returned_ids(self, newsletter: str) -> set[int]:
        """Articles given back by issues cancelled before they started, and not taken since."""
        taken = select(sent_articles.c.article_id).where(sent_articles.c.newsletter == newsletter)
        query = (
            select(issue_articles.c.article_id)
            .join(issues, issues.c.id == issue_articles.c.issue_id)
            .where(
                issues.c.newsletter == newsletter,
                issues.c.state == "cancelled",
                issues.c.started_at.is_(None),
                issue_articles.c.article_id.not_in(taken),
            )
        )
        with self.engine.connect() as connection:
            return set(connection.scalars(query))

    def guids(self, newsletter: str) -> dict[int, str]:
        """Issue number → the guid minted when it was created (ids in the issues feed)."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(issues.c.number, issues.c.guid).where(issues.c.newsletter == newsletter))
            return {key: value for key, value in rows}  # noqa: C416 - rows are not pairs to dict()

    def next_number(self, newsletter: str) -> int:
        with self.engine.connect() as connection:
            return (
                connection.scalar(select(func.max(issues.c.number)).where(issues.c.newsletter == newsletter)) or 0
            ) + 1

    # -- changing state -------------------------------------------------------------------------

    def transition(self, newsletter: str, number: int, to: str, now: datetime) -> Issue:
        """Move an issue to state `to` if its current state allows it (compare-and-set)."""
        if to not in ISSUE_TRANSITIONS:
            raise DigestError(f"unknown issue state {to!r}")
        where = (issues.c.newsletter == newsletter, issues.c.number == number)
        with self.engine.begin() as connection:
            row = connection.execute(select(issues.c.id, issues.c.state).where(*where)).first()
            if row is None:
                raise DigestError(f"{newsletter} has no issue {number}")
            if to not in ISSUE_TRANSITIONS[IssueState(row.state)]:
                allowed = ", ".join(ISSUE_TRANSITIONS[IssueState(row.state)]) or "nothing: it is final"
                raise DigestError(
                    f"{newsletter} issue {number} is {row.state}; it cannot become {to} "
                    f"(from {row.state} it can become {allowed})"
                )
            changed = connection.execute(
                update(issues).where(*where, issues.c.state == row.state).values(**_stamps(to, now))
            ).rowcount
            if not changed:
                raise DigestError(f"{newsletter} issue {number} changed state meanwhile; try again")
            if to == "cancelled" and row.state in UNSTARTED_STATES:
                connection.execute(delete(sent_articles).where(sent_articles.c.issue_id == row.id))
        return self._query(*where)[0]


def _filters(newsletter: str, states: Sequence[str] | None, kind: str | None) -> list:
    conditions = [issues.c.newsletter == newsletter]
    if states:
        conditions.append(issues.c.state.in_(list(states)))
    if kind:
        conditions.append(issues.c.kind == kind)
    return conditions


def _stamps(state: str, now: datetime) -> dict[str, object]:
    values: dict[str, object] = {"state": state}
    if state == "sending":
        values["started_at"] = func.coalesce(issues.c.started_at, now)
    if state == "sent":
        values["sent_at"] = now
    return values


def _issue(row: RowMapping, article_ids: list[int], overflow_ids: list[int]) -> Issue:
    return Issue(
        id=row["id"],
        newsletter=row["newsletter"],
        number=row["number"],
        slot=row["slot"],
        state=IssueState(row["state"]),
        article_ids=tuple(article_ids),
        overflow_ids=tuple(overflow_ids),
        watermark=row["watermark"],
        subject=row["subject"],
        created_at=row["created_at"],
        sent_at=row["sent_at"],
        kind=IssueKind(row["kind"]),
        preheader=row["preheader"],
        body=row["body"],
    )
