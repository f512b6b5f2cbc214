"""Operators (console logins), API tokens (their digests) and the audit log, in the store."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import IntegrityError

from publisher.errors import OperatorError
from publisher.operators import ApiToken, AuditEntry, Operator, Permission, Role
from publisher.store.schema import api_tokens, audit_log, inserted_id, operators


def _operator(row: RowMapping) -> Operator:
    return Operator(
        id=row["id"],
        email=row["email"],
        role=Role(row["role"]),
        password_hash=row["password_hash"],
        failed_logins=row["failed_logins"],
        locked_until=row["locked_until"],
        session_generation=row["session_generation"],
        created_at=row["created_at"],
    )


def _token(row: RowMapping | Mapping[str, Any]) -> ApiToken:
    return ApiToken(
        id=row["id"],
        name=row["name"],
        scope=Permission(row["scope"]),
        digest=row["digest"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


def _entry(row: RowMapping) -> AuditEntry:
    try:
        detail = json.loads(row["detail"] or "{}")
    except ValueError:
        detail = {"raw": row["detail"]}
    return AuditEntry(id=row["id"], at=row["at"], actor=row["actor"], action=row["action"], detail=detail)


class OperatorStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, email: str) -> Operator | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(operators).where(operators.c.email == email)).mappings().first()
        return _operator(row) if row else None

    def by_id(self, operator_id: int) -> Operator | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(operators).where(operators.c.id == operator_id)).mappings().first()
        return _operator(row) if row else None

    def all(self) -> list[Operator]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(operators).order_by(operators.c.email)).mappings()
            return [_operator(row) for row in rows]

    def count(self, role: Role | None = None) -> int:
        return sum(1 for operator in self.all() if role is None or operator.role == role)

    def add(self, email: str, role: Role, password_hash: str, now: datetime) -> Operator:
        try:
            with self.engine.begin() as connection:
                new_id = inserted_id(
                    connection.execute(
                        insert(operators).values(
                            email=email,
                            role=role.value,
                            password_hash=password_hash,
                            failed_logins=0,
                            locked_until=None,
                            session_generation=0,
                            created_at=now,
                            updated_at=now,
                        )
                    )
                )
        except IntegrityError:
            raise OperatorError(f"{email} is already an operator") from None
        found = self.by_id(new_id)
        if found is None:
            raise OperatorError(f"{email} was not stored")
        return found

    def update(self, operator_id: int, now: datetime, *, role: Role | None = None, password_hash: str = "") -> None:
        """Change the role and/or the password; a new password unlocks and ends every session."""
        values: dict[str, object] = {"updated_at": now}
        if role is not None:
            values["role"] = role.value
        if password_hash:
            values.update(
                password_hash=password_hash,
                failed_logins=0,
                locked_until=None,
                session_generation=operators.c.session_generation + 1,
            )
        with self.engine.begin() as connection:
            connection.execute(update(operators).where(operators.c.id == operator_id).values(**values))

    def remove(self, email: str) -> bool:
        with self.engine.begin() as connection:
            return connection.execute(delete(operators).where(operators.c.email == email)).rowcount > 0

    def claim_attempt(self, operator_id: int, now: datetime, *, limit: int, lock_for: timedelta) -> bool:
        """Count one login attempt before its password is checked; False when the account is locked.

        The count is raised and read in one UPDATE … RETURNING that skips a locked account, so
        concurrent attempts each get their own number: the one past `limit` locks the account and
        is refused without a password check, and so is every later one until the lock ends.
        """
        unlocked = or_(operators.c.locked_until.is_(None), operators.c.locked_until <= now)
        with self.engine.begin() as connection:
            attempt = connection.scalar(
                update(operators)
                .where(operators.c.id == operator_id, unlocked)
                .values(failed_logins=operators.c.failed_logins + 1, updated_at=now)
                .returning(operators.c.failed_logins)
            )
            if attempt is None:
                return False
            if attempt > limit:
                self._lock(connection, operator_id, now, lock_for)
                return False
        return True

    def login_failed(self, operator_id: int, now: datetime, *, limit: int, lock_for: timedelta) -> bool:
        """A claimed attempt had a wrong password: lock when the count reached `limit`. True when locked."""
        with self.engine.begin() as connection:
            failed = connection.scalar(select(operators.c.failed_logins).where(operators.c.id == operator_id))
            if failed is not None and failed >= limit:
                self._lock(connection, operator_id, now, lock_for)
                return True
        return False

    @staticmethod
    def _lock(connection: Connection, operator_id: int, now: datetime, lock_for: timedelta) -> None:
        connection.execute(
            update(operators)
            .where(operators.c.id == operator_id)
            .values(failed_logins=0, locked_until=now + lock_for, updated_at=now)
        )

    def login_succeeded(self, operator_id: int, now: datetime, password_hash: str = "") -> bool:
        """Reset the count of wrong passwords (and store a rehashed password when the parameters moved),
        unless the account was locked meanwhile by concurrent wrong attempts: then False."""
        values: dict[str, object] = {"failed_logins": 0, "locked_until": None, "updated_at": now}
        if password_hash:
            values["password_hash"] = password_hash
        unlocked = or_(operators.c.locked_until.is_(None), operators.c.locked_until <= now)
        with self.engine.begin() as connection:
            done = connection.scalar(
                update(operators)
                .where(operators.c.id == operator_id, unlocked)
                .values(**values)
                .returning(operators.c.id)
            )
        return done is not None

    def end_sessions(self, operator_id: int, now: datetime) -> None:
        """Log out everywhere: every session signed with the old generation stops working."""
        with self.engine.begin() as connection:
            connection.execute(
                update(operators)
                .where(operators.c.id == operator_id)
                .values(session_generation=operators.c.session_generation + 1, updated_at=now)
            )


class TokenStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, name: str, scope: Permission, digest: str, now: datetime, created_by: str) -> ApiToken:
        with self.engine.begin() as connection:
            active = connection.scalar(
                select(api_tokens.c.id).where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
            )
            if active is not None:
                raise OperatorError(f"a token named {name!r} exists: revoke it first, or choose another name")
            new_id = inserted_id(
                connection.execute(
                    insert(api_tokens).values(
                        name=name, scope=scope.value, digest=digest, created_at=now, created_by=created_by
                    )
                )
            )
            row = connection.execute(select(api_tokens).where(api_tokens.c.id == new_id)).mappings().one()
        return _token(row)

    def by_digest(self, digest: str) -> ApiToken | None:
        """The token with this digest, revoked or not (the caller decides)."""
        with self.engine.connect() as connection:
            row = connection.execute(select(api_tokens).where(api_tokens.c.digest == digest)).mappings().first()
        return _token(row) if row else None

    def used(self, token_id: int, now: datetime) -> None:
        with self.engine.begin() as connection:
            connection.execute(update(api_tokens).where(api_tokens.c.id == token_id).values(last_used_at=now))

    def revoke(self, name: str, now: datetime) -> ApiToken | None:
        """Revoke the active token named `name`; None when there is none."""
        with self.engine.begin() as connection:
            row = (
                connection.execute(
                    select(api_tokens).where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
                )
                .mappings()
                .first()
            )
            if row is None:
                return None
            connection.execute(update(api_tokens).where(api_tokens.c.id == row["id"]).values(revoked_at=now))
        return _token({**row, "revoked_at": now})

    def revoke_created_by(self, created_by: str, now: datetime) -> list[str]:
        """Revoke every active token `created_by` made; returns their names."""
        active = (api_tokens.c.created_by == created_by, api_tokens.c.revoked_at.is_(None))
        with self.engine.begin() as connection:
            names = list(connection.scalars(select(api_tokens.c.name).where(*active).order_by(api_tokens.c.name)))
            connection.execute(update(api_tokens).where(*active).values(revoked_at=now))
        return names

    def all(self) -> list[ApiToken]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(api_tokens).order_by(api_tokens.c.name, api_tokens.c.id)).mappings()
            return [_token(row) for row in rows]


class AuditStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def write(self, at: datetime, actor: str, action: str, detail: str) -> int:
        with self.engine.begin() as connection:
            return inserted_id(
                connection.execute(
                    insert(audit_log).values(at=at, actor=actor[:400], action=action[:64], detail=detail)
                )
            )

    def newest(self, limit: int = 100, *, before: int | None = None, actor: str = "") -> list[AuditEntry]:
        """Entries newest first; `before` (an entry id) pages back; `actor` keeps one actor's."""
        query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if before is not None:
            query = query.where(audit_log.c.id < before)
        if actor:
            query = query.where(audit_log.c.actor == actor)
        with self.engine.connect() as connection:
            return [_entry(row) for row in connection.execute(query).mappings()]
