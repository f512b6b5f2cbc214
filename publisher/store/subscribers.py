"""Subscribers and their newsletters in the store."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    Select,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine, RowMapping

from publisher.model import StoredSubscriber, Subscriber
from publisher.store import bulk
from publisher.store.inbound import Suppression, storable
from publisher.store.schema import (
    bounce_scores,
    deliveries,
    inserted_id,
    opt_outs,
    reconfirmations,
    subscribers,
    subscriptions,
    suppressions,
)

SMTP_BOUNCE = "smtp_bounce"  # a 5xx during the SMTP session: status `bounced`, no inbound message


class Lifted(NamedTuple):
    """What `unsuppress` did: the status the address is back in, its newsletters, and what had
    suppressed it (empty: nothing did, and nothing changed)."""

    email: str
    status: str
    newsletters: tuple[str, ...]
    reasons: tuple[str, ...]


def _subscriber(row: RowMapping, newsletters: Sequence[str]) -> StoredSubscriber:
    return StoredSubscriber(
        id=row["id"],
        email=row["email"],
        name=row["name"],
        status=row["status"],
        newsletters=tuple(sorted(newsletters)),
        topics=tuple(json.loads(row["topics"] or "[]")),
        source=row["source"],
        consent_at=row["consent_at"],
        consent_text=row["consent_text"],
        created_at=row["created_at"],
        bounce_count=row["bounce_count"],
        timezone=row["timezone"],
    )


class _Existing(NamedTuple):
    """What an import needs to know of an address it finds in the store."""

    id: int
    email: str
    name: str
    status: str


_EXISTING = _Existing._fields
_NEW_COLUMNS = (
    "email",
    "name",
    "status",
    "source",
    "consent_at",
    "consent_text",
    "topics",
    "timezone",
    "bounce_count",
    "created_at",
    "updated_at",
    "confirm_nonce",
)


_ACTIVE = ("pending", "confirmed")


class Batched(NamedTuple):
    """What one batch of an import did; counts are of distinct addresses."""

    added: int
    updated: int
    unchanged: int  # existing addresses already as the file has them (suppressed ones not among them)
    suppressed: list[str]  # suppressed addresses the file tried to subscribe: left unchanged, counted apart
    repeated: list[str]  # addresses an earlier batch of this import added (ids above `since_id`): not counted
    statuses: Counter[str]  # the status each counted address has after the batch


def _merged_status(stored: str, asked: str) -> str:
    """An existing address's status after an import row asks for `asked`: a pending one may be
    confirmed, an active one stopped; nothing else changes."""
    if asked == "confirmed" and stored == "pending":
        return "confirmed"
    if asked in ("unsubscribed", "bounced") and stored in _ACTIVE:
        return asked
    return stored


def _held(connection: Connection, found: Iterable[_Existing]) -> set[int]:
    """Ids of the existing addresses that are suppressed: bounced, or with an active suppression."""
    found = list(found)
    held = {row.id for row in found if row.status == "bounced"}
    rows = bulk.select_where_in(
        connection, suppressions, ("subscriber_id", "lifted_at"), "subscriber_id", [row.id for row in found]
    )
    return held | {int(subscriber_id) for subscriber_id, lifted_at in rows if lifted_at is None}


_SUPPRESSION_COLUMNS = ("subscriber_id", "email", "reason", "at", "evidence", "newsletters", "lift_reason")


def _suppress_many(connection: Connection, found: Sequence[Suppression], ids: dict[str, int]) -> None:
    """Put imported suppressions on the suppression list (addresses the batch turned `bounced`)."""
    rows = [(ids[s.email], s.email, s.reason, s.at, s.evidence[:1000], "[]", "") for s in dict.fromkeys(found)]
    bulk.insert_rows(connection, suppressions, _SUPPRESSION_COLUMNS, rows)


class SubscriberStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _newsletters(self, connection: Connection, ids: Sequence[int]) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {i: [] for i in ids}
        if ids:
            rows = connection.execute(
                select(subscriptions.c.subscriber_id, subscriptions.c.newsletter).where(
                    subscriptions.c.subscriber_id.in_(list(ids))
                )
            )
            for subscriber_id, newsletter in rows:
                found[subscriber_id].append(newsletter)
        return found

    def _load(self, connection: Connection, query: Select[Any]) -> list[StoredSubscriber]:
        rows = list(connection.execute(query).mappings())
        newsletters = self._newsletters(connection, [row["id"] for row in rows])
        return [_subscriber(row, newsletters[row["id"]]) for row in rows]

    def get(self, email: str) -> StoredSubscriber | None:
        with self.engine.connect() as connection:
            found = self._load(connection, select(subscribers).where(subscribers.c.email == email.lower()))
        return found[0] if found else None

    def known(self, asked: Mapping[str, str]) -> dict[str, str]:
        """For an import's dry run: of the addresses in `asked` (normalised → the status a row asks
        for) those that are subscribers already, each with the status `import_batch` would leave
        it in, or "suppressed" for a suppressed address the row would subscribe (left unchanged)."""
        with self.engine.connect() as connection:
            existing = [
                _Existing(*row) for row in bulk.select_where_in(connection, subscribers, _EXISTING, "email", asked)
            ]
            held = _held(connection, existing)
        return {
            row.email: "suppressed"
            if row.id in held and asked[row.email] in _ACTIVE
            else row.status
            if row.id in held
            else _merged_status(row.status, asked[row.email])
            for row in existing
        }

    def get_by_id(self, subscriber_id: int) -> StoredSubscriber | None:
        with self.engine.connect() as connection:
            found = self._load(connection, select(subscribers).where(subscribers.c.id == subscriber_id))
        return found[0] if found else None

    def all(self, *, status: str | None = None, newsletter: str | None = None) -> list[StoredSubscriber]:
        query = select(subscribers).order_by(subscribers.c.id)
        if status:
            query = query.where(subscribers.c.status == status)
        if newsletter:
            query = query.where(
                subscribers.c.id.in_(
                    select(subscriptions.c.subscriber_id).where(subscriptions.c.newsletter == newsletter)
                )
            )
        with self.engine.connect() as connection:
            return self._load(connection, query)

    def page(
        self, *, after: int = 0, limit: int = 50, status: str | None = None, newsletter: str | None = None
    ) -> list[StoredSubscriber]:
        """Up to `limit` subscribers whose id is above `after`, in id order (a cursor that stays put
        while others subscribe or leave)."""
        query = select(subscribers).where(subscribers.c.id > after).order_by(subscribers.c.id).limit(limit)
        if status:
            query = query.where(subscribers.c.status == status)
        if newsletter:
            query = query.where(
                subscribers.c.id.in_(
                    select(subscriptions.c.subscriber_id).where(subscriptions.c.newsletter == newsletter)
                )
            )
        with self.engine.connect() as connection:
            return self._load(connection, query)

    def upsert_many(self, people: Iterable[Subscriber], now: datetime) -> tuple[int, int]:
        """Add new subscribers and merge newsletters into existing ones, in one transaction.

        An existing subscriber keeps their status unless the new record confirms them and they
        are pending; an unsubscribed or bounced address is never re-activated by an import.
        Returns (added, updated).
        """
        added = updated = 0
        with self.engine.begin() as connection:
            for person in people:
                if self._upsert(connection, person, now):
                    added += 1
                else:
                    updated += 1
        return added, updated

    def last_id(self) -> int:
        """The highest subscriber id so far (0: none)."""
        with self.engine.connect() as connection:
            return connection.scalar(select(func.max(subscribers.c.id))) or 0

    def import_batch(
        self,
        people: Sequence[Subscriber],
        now: datetime,
        suppressions: Sequence[Suppression] = (),
        since_id: int | None = None,
    ) -> Batched:
        """`upsert_many` for one batch of an import, in a handful of statements and one transaction.

        The same rules: an existing address keeps its status unless a pending one is confirmed;
        unsubscribed and bounced addresses are never re-activated and get no newsletters; opt-outs
        are kept. An export's unsubscribed or suppressed row also stops an active address, and
        each address the batch suppresses gets its entry in `suppressions` on the suppression list.
        A suppressed address (bounced, or with an active suppression: a complainer) is not written
        at all. Later rows for the same address merge into the first. Returns a `Batched`.
        """
        batch: dict[str, Subscriber] = {}
        for person in people:
            first = batch.get(person.email)
            batch[person.email] = (
                person if first is None else replace(first, newsletters=(*first.newsletters, *person.newsletters))
            )
        with self.engine.begin() as connection:
            existing = {
                row[1]: _Existing(*row)
                for row in bulk.select_where_in(connection, subscribers, _EXISTING, "email", batch)
            }
            held = _held(connection, existing.values())
            ids = self._insert_new(connection, [p for e, p in batch.items() if e not in existing], now)
            ids.update({email: row.id for email, row in existing.items()})
            open_ = {email: row for email, row in existing.items() if row.id not in held}
            changed = self._update_existing(connection, [(row, batch[email]) for email, row in open_.items()], now)
            active = {email for email, p in batch.items() if p.status in _ACTIVE}
            active -= {email for email, row in existing.items() if row.status not in _ACTIVE or row.id in held}
            wanted = {ids[email]: batch[email].newsletters for email in active}
            changed |= self._subscribe_many(connection, wanted, [row.id for row in existing.values()], now)
            if suppressions:  # only addresses this batch turns `bounced`: new ones, or active ones
                stopped = {email for email, row in open_.items() if row.status in _ACTIVE}
                stopped |= batch.keys() - existing.keys()
                _suppress_many(connection, [s for s in suppressions if s.email in stopped], ids)
        ours = {row.id for row in existing.values() if since_id is not None and row.id > since_id}
        repeated = [email for email, row in existing.items() if row.id in ours]
        earlier = {email: row for email, row in existing.items() if row.id not in ours}
        suppressed = [email for email, row in earlier.items() if row.id in held and batch[email].status in _ACTIVE]
        statuses: Counter[str] = Counter(p.status for email, p in batch.items() if email not in existing)
        for email, row in earlier.items():
            if email not in suppressed:
                statuses[row.status if row.id in held else _merged_status(row.status, batch[email].status)] += 1
        updated = len({row.id for row in earlier.values()} & changed)
        unchanged = len(earlier) - updated - len(suppressed)
        return Batched(len(batch) - len(existing), updated, unchanged, suppressed, repeated, statuses)

    @staticmethod
    def _insert_new(connection: Connection, people: Sequence[Subscriber], now: datetime) -> dict[str, int]:
        if not people:
            return {}
        rows = [
            (
                person.email,
                person.name,
                person.status,
                person.source,
                person.consent_at,
                person.consent_text,
                json.dumps(list(person.topics)) if person.topics else "[]",
                person.timezone,
                0,
                now,
                now,
                "",
            )
            for person in people
        ]
        return bulk.insert_returning_ids(connection, subscribers, _NEW_COLUMNS, rows)

    @staticmethod
    def _update_existing(
        connection: Connection, pairs: Sequence[tuple[_Existing, Subscriber]], now: datetime
    ) -> set[int]:
        """Names, pending → confirmed, and active → unsubscribed/bounced; one executemany.
        Returns the ids of the subscribers it changed."""
        rows: list[dict[str, Any]] = []
        for row, person in pairs:
            status, consent_at, consent_text, source = _merged_status(row.status, person.status), None, None, None
            if status == "confirmed" and row.status == "pending":
                consent_at, consent_text, source = person.consent_at or now, person.consent_text, person.source
            name = person.name or row.name
            if (status, name) != (row.status, row.name):
                rows.append(
                    {
                        "b_id": row.id,
                        "b_status": status,
                        "b_name": name,
                        "b_consent_at": consent_at,
                        "b_text": consent_text,
                        "b_source": source,
                    }
                )
        if rows:
            connection.execute(
                update(subscribers)
                .where(subscribers.c.id == bindparam("b_id"))
                .values(
                    status=bindparam("b_status"),
                    name=bindparam("b_name"),
                    consent_at=func.coalesce(
                        bindparam("b_consent_at", type_=subscribers.c.consent_at.type), subscribers.c.consent_at
                    ),
                    consent_text=func.coalesce(bindparam("b_text", type_=Text()), subscribers.c.consent_text),
                    source=func.coalesce(bindparam("b_source", type_=Text()), subscribers.c.source),
                    updated_at=now,
                ),
                rows,
            )
        return {int(row["b_id"]) for row in rows}

    @staticmethod
    def _subscribe_many(
        connection: Connection, wanted: dict[int, tuple[str, ...]], existing: list[int], now: datetime
    ) -> set[int]:
        """Add newsletters to many subscribers at once, skipping those they have and their opt-outs
        (only `existing` subscribers can have either: new ones are not looked up). Returns the ids
        of the subscribers that gained a newsletter."""
        ids = [subscriber_id for subscriber_id, names in wanted.items() if names]
        if not ids:
            return set()
        skip: set[tuple[int, str]] = set()
        for table in (subscriptions, opt_outs) if existing else ():
            found = bulk.select_where_in(connection, table, ("subscriber_id", "newsletter"), "subscriber_id", existing)
            skip.update(found)
        rows = [
            (subscriber_id, name, now)
            for subscriber_id in ids
            for name in dict.fromkeys(wanted[subscriber_id])
            if (subscriber_id, name) not in skip
        ]
        if rows:
            bulk.insert_rows(connection, subscriptions, ("subscriber_id", "newsletter", "created_at"), rows)
        return {row[0] for row in rows}

    def add(self, person: Subscriber, now: datetime) -> bool:
        """Add or merge one subscriber; True when the address is new."""
        with self.engine.begin() as connection:
            return self._upsert(connection, person, now)

    def _upsert(self, connection: Connection, person: Subscriber, now: datetime) -> bool:
        email = person.email.lower()
        row = connection.execute(select(subscribers).where(subscribers.c.email == email)).mappings().first()
        if row is None:
            result = connection.execute(
                insert(subscribers).values(
                    email=email,
                    name=person.name,
                    status=person.status,
                    source=person.source,
                    consent_at=person.consent_at,
                    consent_text=person.consent_text,
                    topics=json.dumps(list(person.topics)),
                    timezone=person.timezone,
                    bounce_count=0,
                    created_at=now,
                    updated_at=now,
                    confirm_nonce="",
                )
            )
            subscriber_id = inserted_id(result)
            is_new = True
        else:
            subscriber_id = row["id"]
            values: dict = {"updated_at": now}
            if person.name and person.name != row["name"]:
                values["name"] = person.name
            if person.status == "confirmed" and row["status"] == "pending":
                values.update(status="confirmed", consent_at=person.consent_at or now)
            if person.topics:
                values["topics"] = json.dumps(list(person.topics))
            if person.timezone:
                values["timezone"] = person.timezone
            connection.execute(update(subscribers).where(subscribers.c.id == subscriber_id).values(**values))
            is_new = False
        self._add_newsletters(connection, subscriber_id, person.newsletters, now, explicit=False)
        return is_new

    def _add_newsletters(
        self, connection: Connection, subscriber_id: int, names: Iterable[str], now: datetime, *, explicit: bool = True
    ) -> None:
        """Subscribe to `names`. Only the subscriber's own request (`explicit`) overrides an opt-out;
        an import or an operator's `add` never re-subscribes someone who unsubscribed."""
        names = list(dict.fromkeys(names))
        if explicit and names:
            connection.execute(
                delete(opt_outs).where(opt_outs.c.subscriber_id == subscriber_id, opt_outs.c.newsletter.in_(names))
            )
        else:
            opted_out = set(
                connection.scalars(select(opt_outs.c.newsletter).where(opt_outs.c.subscriber_id == subscriber_id))
            )
            names = [name for name in names if name not in opted_out]
        have = set(
            connection.scalars(select(subscriptions.c.newsletter).where(subscriptions.c.subscriber_id == subscriber_id))
        )
        new = [name for name in names if name not in have]
        if new:
            connection.execute(
                insert(subscriptions),
                [{"subscriber_id": subscriber_id, "newsletter": name, "created_at": now} for name in new],
            )

    def _opt_out(self, connection: Connection, subscriber_id: int, names: Iterable[str], now: datetime) -> None:
        names = list(names)
        if not names:
            return
        connection.execute(
            delete(subscriptions).where(
                subscriptions.c.subscriber_id == subscriber_id, subscriptions.c.newsletter.in_(names)
            )
        )
        connection.execute(
            delete(opt_outs).where(opt_outs.c.subscriber_id == subscriber_id, opt_outs.c.newsletter.in_(names))
        )
        connection.execute(
            insert(opt_outs), [{"subscriber_id": subscriber_id, "newsletter": name, "at": now} for name in names]
        )

    def set_newsletters(self, subscriber_id: int, names: Iterable[str], now: datetime) -> None:
        """The subscriber's own choice (preferences page): dropped newsletters count as opt-outs."""
        names = list(names)
        with self.engine.begin() as connection:
            have = set(
                connection.scalars(
                    select(subscriptions.c.newsletter).where(subscriptions.c.subscriber_id == subscriber_id)
                )
            )
            self._opt_out(connection, subscriber_id, sorted(have - set(names)), now)
            self._add_newsletters(connection, subscriber_id, names, now)

    def update(self, subscriber_id: int, now: datetime, **values: Any) -> None:
        """Change columns of one subscriber (status, name, topics, consent, nonce, bounce_count…)."""
        if "topics" in values:
            values["topics"] = json.dumps(list(values["topics"]))
        with self.engine.begin() as connection:
            connection.execute(
                update(subscribers).where(subscribers.c.id == subscriber_id).values(updated_at=now, **values)
            )

    def remove_newsletter(self, subscriber_id: int, newsletter: str, now: datetime) -> None:
        """Unsubscribe from one newsletter, remembered so that no import subscribes them again."""
        with self.engine.begin() as connection:
            self._opt_out(connection, subscriber_id, [newsletter], now)

    def remove(self, email: str) -> bool:
        """Unsubscribe an address from everything and forget its name (its ledger rows stay)."""
        with self.engine.begin() as connection:
            subscriber_id = connection.scalar(select(subscribers.c.id).where(subscribers.c.email == email.lower()))
            if subscriber_id is None:
                return False
            connection.execute(delete(subscriptions).where(subscriptions.c.subscriber_id == subscriber_id))
            connection.execute(
                update(subscribers)
                .where(subscribers.c.id == subscriber_id)
                .values(status="unsubscribed", name="", updated_at=subscribers.c.updated_at)
            )
        return True

    def purge_unconfirmed(self, source: str, before: datetime) -> int:
        """Delete addresses from `source` still pending, whose last confirmation mail (or creation)
        is older than `before`: nobody confirmed them, so we keep no record of them. A subscriber
        who ever confirmed is never pending again, so never purged."""
        asked = func.coalesce(subscribers.c.confirmation_sent_at, subscribers.c.created_at)
        stale = select(subscribers.c.id).where(
            subscribers.c.status == "pending",
            subscribers.c.source == source,
            subscribers.c.consent_at.is_(None),
            asked < before,
            ~select(deliveries.c.subscriber_id).where(deliveries.c.subscriber_id == subscribers.c.id).exists(),
        )
        with self.engine.begin() as connection:
            ids = list(connection.scalars(stale))
            if ids:
                connection.execute(delete(subscribers).where(subscribers.c.id.in_(ids)))
        return len(ids)

    def zones(self, newsletter: str) -> dict[str, int]:
        """The time zones of a newsletter's confirmed readers ("" for none set), with how many in each."""
        query = (
            select(subscribers.c.timezone, func.count())
            .select_from(subscribers.join(subscriptions, subscriptions.c.subscriber_id == subscribers.c.id))
            .where(subscriptions.c.newsletter == newsletter, subscribers.c.status == "confirmed")
            .group_by(subscribers.c.timezone)
        )
        with self.engine.connect() as connection:
            return {zone or "": int(count) for zone, count in connection.execute(query)}

    def count(self, status: str | None = None) -> int:
        query = select(func.count()).select_from(subscribers)
        if status:
            query = query.where(subscribers.c.status == status)
        with self.engine.connect() as connection:
            return connection.scalar(query) or 0

    def add_newsletters(self, subscriber_id: int, names: Iterable[str], now: datetime) -> None:
        with self.engine.begin() as connection:
            self._add_newsletters(connection, subscriber_id, names, now)

    def claim_confirmation(self, subscriber_id: int, nonce: str, now: datetime, *, not_since: datetime) -> bool:
        """Store a new confirmation nonce unless a confirmation mail went out after `not_since`.

        One conditional UPDATE, so two requests at once cannot both claim the right to send.
        """
        sent = subscribers.c.confirmation_sent_at
        with self.engine.begin() as connection:
            result = connection.execute(
                update(subscribers)
                .where(subscribers.c.id == subscriber_id, (sent.is_(None)) | (sent <= not_since))
                .values(confirm_nonce=nonce, confirmation_sent_at=now, updated_at=now)
            )
        return result.rowcount == 1

    def release_confirmation(self, subscriber_id: int, nonce: str) -> None:
        """Undo a claim whose mail could not be sent, so the subscriber may ask again at once."""
        with self.engine.begin() as connection:
            connection.execute(
                update(subscribers)
                .where(
                    subscribers.c.id == subscriber_id,
                    subscribers.c.confirm_nonce == nonce,
                )
                .values(confirm_nonce="", confirmation_sent_at=None)
            )

    def has_nonce(self, subscriber_id: int, nonce: str) -> bool:
        with self.engine.connect() as connection:
            found = connection.scalar(select(subscribers.c.confirm_nonce).where(subscribers.c.id == subscriber_id))
        return bool(nonce) and found == nonce

    def consume_nonce(
        self,
        subscriber_id: int,
        nonce: str,
        now: datetime,
        *,
        newsletters: Iterable[str] = (),
        exactly: bool = False,
        lift_reason: str = "",
        **values: Any,
    ) -> bool:
        """Clear the nonce, apply `values` and add `newsletters`, only if `nonce` is the current one.
        `exactly`: the newsletters become these (others are dropped); `lift_reason`: an active
        suppression is lifted, recorded with this reason.

        One transaction: a confirmation link works once, and never half-way.
        """
        if not nonce:
            return False
        if "topics" in values:
            values["topics"] = json.dumps(list(values["topics"]))
        with self.engine.begin() as connection:
            result = connection.execute(
                update(subscribers)
                .where(subscribers.c.id == subscriber_id, subscribers.c.confirm_nonce == nonce)
                .values(confirm_nonce="", updated_at=now, **values)
            )
            if result.rowcount != 1:
                return False
            newsletters = list(newsletters)
            if exactly:
                connection.execute(
                    delete(subscriptions).where(
                        subscriptions.c.subscriber_id == subscriber_id, subscriptions.c.newsletter.not_in(newsletters)
                    )
                )
            self._add_newsletters(connection, subscriber_id, newsletters, now)
            if lift_reason:
                self._lift(connection, subscriber_id, lift_reason, now)
        return True

    # --- suppression ------------------------------------------------------------------------

    def suppression(self, subscriber_id: int) -> str | None:
        """Why the subscriber is suppressed (`hard_bounce`, `complaint`, …, `smtp_bounce`), or None."""
        with self.engine.connect() as connection:
            reason = connection.scalar(
                select(suppressions.c.reason)
                .where(suppressions.c.subscriber_id == subscriber_id, suppressions.c.lifted_at.is_(None))
                .order_by(suppressions.c.id)
                .limit(1)
            )
            status = connection.scalar(select(subscribers.c.status).where(subscribers.c.id == subscriber_id))
        return reason or (SMTP_BOUNCE if status == "bounced" else None)

    def lift(self, subscriber_id: int, reason: str, now: datetime) -> list[str]:
        """Lift the subscriber's active suppressions, recorded with `reason`; returns what they were."""
        with self.engine.begin() as connection:
            return self._lift(connection, subscriber_id, reason, now)

    @staticmethod
    def _lift(connection: Connection, subscriber_id: int, reason: str, now: datetime) -> list[str]:
        """Mark the active suppressions lifted; returns their reasons."""
        active = connection.execute(
            select(suppressions.c.reason).where(
                suppressions.c.subscriber_id == subscriber_id, suppressions.c.lifted_at.is_(None)
            )
        ).all()
        if active:
            connection.execute(
                update(suppressions)
                .where(suppressions.c.subscriber_id == subscriber_id, suppressions.c.lifted_at.is_(None))
                .values(lifted_at=now, lift_reason=reason)
            )
        return [row.reason for row in active]

    def unsuppress(self, email: str, reason: str, now: datetime) -> Lifted | None:
        """Lift a suppression and put the address back in the status it had before it: a bounced
        address was pending or confirmed, and only a confirmed one has a consent time (a pending
        one never has, and a confirmed one never goes back to pending), so that status is read
        from `consent_at`; a complaint unsubscribed the address, and it stays unsubscribed. A
        pending address is asked again by the next `confirm-pending` run. None: no such address."""
        email, reason = storable(email.lower(), 320), storable(reason)
        with self.engine.begin() as connection:
            person = connection.execute(select(subscribers).where(subscribers.c.email == email)).mappings().first()
            if person is None:
                return None
            subscriber_id, status = person["id"], person["status"]
            snapshots = connection.scalars(
                select(suppressions.c.newsletters).where(
                    suppressions.c.subscriber_id == subscriber_id, suppressions.c.lifted_at.is_(None)
                )
            ).all()
            reasons = self._lift(connection, subscriber_id, reason, now)
            if not reasons and status == "bounced":
                connection.execute(
                    insert(suppressions).values(
                        subscriber_id=subscriber_id,
                        email=person["email"],
                        reason=SMTP_BOUNCE,
                        at=person["updated_at"],
                        evidence="refused during the SMTP session",
                        newsletters="[]",
                        lifted_at=now,
                        lift_reason=reason,
                    )
                )
                reasons = [SMTP_BOUNCE]
            if reasons:
                if status == "bounced":
                    status = "confirmed" if person["consent_at"] is not None else "pending"
                    names = [name for snapshot in snapshots for name in json.loads(snapshot or "[]")]
                    self._add_newsletters(connection, subscriber_id, names, now, explicit=False)
                connection.execute(
                    update(subscribers)
                    .where(subscribers.c.id == subscriber_id)
                    .values(status=status, bounce_count=0, updated_at=now)
                )
                connection.execute(delete(bounce_scores).where(bounce_scores.c.subscriber_id == subscriber_id))
                if status == "pending":  # asked again by the next confirm-pending run
                    connection.execute(delete(reconfirmations).where(reconfirmations.c.subscriber_id == subscriber_id))
            newsletters = tuple(sorted(self._newsletters(connection, [subscriber_id])[subscriber_id]))
        return Lifted(person["email"], status, newsletters, tuple(reasons))
