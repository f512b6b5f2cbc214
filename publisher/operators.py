"""Who may do what: operators' roles, API tokens' scopes, password hashes, and audit records.

Pure: no store, no clock. The console, the API and the CLI check a request's `Actor` against the
permission an operation needs (`require`); `Publication` keeps the operators, tokens and the audit
log through the store.

A role and a scope grant the same three permissions: `read` (see everything), `write` (build,
approve, send; change subscribers and articles) and `admin` (manage operators and tokens, read
the audit log). Viewers and read tokens read; editors and write tokens also write; owners and
admin tokens do everything.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from publisher.errors import AccessError, OperatorError

# Five wrong passwords in a row lock an account for a while (the audit log says until when; the
# login page answers as for a wrong password, so it tells nobody which addresses are accounts).
MAX_FAILED_LOGINS = 5
WRONG_LOGIN = "wrong email address or password"
LOCK_FOR = timedelta(minutes=15)
# Console sessions end 12 hours after login, or after 2 hours without a request.
SESSION_LIFETIME = timedelta(hours=12)
SESSION_IDLE = timedelta(hours=2)
# Login attempts from one IP address (any accounts) within LOGIN_WINDOW, before 429.
LOGIN_ATTEMPTS = 30
LOGIN_WINDOW = timedelta(minutes=15)
# Login attempts for one address (from any IP addresses) within LOGIN_WINDOW, before 429.
ACCOUNT_ATTEMPTS = 20
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 hashes anything, but a megabyte "password" is a denial of service
TOKEN_PREFIX = "pub_"  # noqa: S105 - a prefix that makes leaked tokens easy to spot, not a secret
# Detail keys whose values never reach the audit log, whatever a caller passes.
SECRET_KEYS = frozenset({"password", "token", "secret", "authorization", "cookie", "csrf"})


class Permission(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


class Role(StrEnum):
    OWNER = "owner"
    EDITOR = "editor"
    VIEWER = "viewer"


Scope = Permission  # a token's scope is the permission level it grants

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.EDITOR: frozenset({Permission.READ, Permission.WRITE}),
    Role.OWNER: frozenset(Permission),
}
SCOPE_PERMISSIONS: dict[Permission, frozenset[Permission]] = {
    Permission.READ: frozenset({Permission.READ}),
    Permission.WRITE: frozenset({Permission.READ, Permission.WRITE}),
    Permission.ADMIN: frozenset(Permission),
}


@dataclass(frozen=True)
class Operator:
    """A person who logs in to the console."""

    id: int
    email: str
    role: Role
    password_hash: str
    failed_logins: int
    locked_until: datetime | None
    session_generation: int  # bumped by "log out everywhere": older sessions stop working
    created_at: datetime

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now


@dataclass(frozen=True)
class ApiToken:
    """A bearer token's stored half: its name, scope and the SHA-256 of the secret (never the secret)."""

    id: int
    name: str
    scope: Permission
    digest: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class Actor:
    """Who is acting: an operator (console), a token (API) or someone at the shell (CLI)."""

    kind: str  # operator | token | cli
    name: str
    permissions: frozenset[Permission]

    @property
    def label(self) -> str:
        """How the audit log names this actor, e.g. `operator:ada@example.org`, `token:cms`."""
        return f"{self.kind}:{self.name}"

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions


def operator_actor(operator: Operator) -> Actor:
    return Actor("operator", operator.email, ROLE_PERMISSIONS[operator.role])


def token_actor(token: ApiToken) -> Actor:
    return Actor("token", token.name, SCOPE_PERMISSIONS[token.scope])


def cli_actor(user: str) -> Actor:
    """The shell user: whoever can run `publisher` on the server can do everything."""
    return Actor("cli", user or "unknown", frozenset(Permission))


def require(actor: Actor, permission: Permission) -> None:
    """Raise AccessError unless `actor` holds `permission`."""
    if not actor.can(permission):
        raise AccessError(f"{actor.label} may not do this: it needs the {permission} permission")


def parse_role(value: str) -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError:
        raise OperatorError(f"unknown role {value!r}: use owner, editor or viewer") from None


def parse_scope(value: str) -> Permission:
    try:
        return Permission(value.strip().lower())
    except ValueError:
        raise OperatorError(f"unknown scope {value!r}: use read, write or admin") from None


# --- passwords -------------------------------------------------------------------------------

_HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters


@cache
def _dummy_hash() -> str:
    """Verified against when the address is unknown, so a wrong address costs as long as a wrong password."""
    return _HASHER.hash(secrets.token_urlsafe(16))


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise OperatorError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise OperatorError(f"the password is too long: use at most {MAX_PASSWORD} characters")


def hash_password(password: str) -> str:
    check_password_strength(password)
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches; with no hash (unknown address) it still takes an argon2 check's time."""
    if len(password) > MAX_PASSWORD:
        return False
    try:
        return _HASHER.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _HASHER.check_needs_rehash(password_hash)


# --- API tokens ------------------------------------------------------------------------------


def mint_token() -> tuple[str, str]:
    """A new bearer token and the digest to store: the token itself is shown once and kept nowhere."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, token_digest(token)


def token_digest(token: str) -> str:
    """SHA-256 of a token (a token has 256 random bits: no salt or slow hash needed to protect it)."""
    return hashlib.sha256(token.strip().encode("utf-8", "replace")).hexdigest()


def mint_session() -> tuple[str, str, str]:
    """A new console session: the cookie's id, its digest (what the store keeps) and the CSRF token."""
    session_id = secrets.token_urlsafe(32)
    return session_id, token_digest(session_id), secrets.token_urlsafe(32)


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def check_token_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned or len(cleaned) > 64 or any(not (c.isalnum() or c in "-_.") for c in cleaned):
        raise OperatorError(f"token name {name!r}: use 1-64 letters, digits, '-', '_' or '.'")
    return cleaned


# --- the audit log ---------------------------------------------------------------------------


# What never reaches an audit entry as itself: line breaks (U+2028/9 too), tabs and every other
# C0/C1 control and DEL, and the bidi controls that reorder what a terminal shows.
_NOT_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c]+")


def one_line(text: str) -> str:
    """`text` as one line for the audit log: each run of control characters becomes a space, so no
    value (an `unsuppress --reason`, a name) can end its entry and forge the next one."""
    return _NOT_ONE_LINE.sub(" ", text)


def audit_detail(detail: Mapping[str, Any]) -> str:
    """The JSON stored with an audit entry; secrets (passwords, tokens) are masked whatever the
    caller passed, and every key and text is one line (`one_line`)."""

    def clean(value: Any, key: str = "") -> Any:
        if key.lower() in SECRET_KEYS:
            return "***"
        if isinstance(value, Mapping):
            return {one_line(str(k)): clean(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [clean(v) for v in value]
        if isinstance(value, str):
            return one_line(value)
        if isinstance(value, int | float | bool) or value is None:
            return value
        return one_line(str(value))

    return json.dumps(clean(dict(detail)), ensure_ascii=False, sort_keys=True)
