"""Operators, API tokens and the audit log: roles, passwords, lockout, tokens shown once, who did what."""

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from publisher import Publication
from publisher.errors import AccessError, LoginLocked, OperatorError, RateLimited
from publisher.operators import (
    ACCOUNT_ATTEMPTS,
    LOCK_FOR,
    MAX_FAILED_LOGINS,
    Permission,
    Role,
    audit_detail,
    cli_actor,
    hash_password,
    mint_token,
    operator_actor,
    parse_role,
    parse_scope,
    require,
    token_digest,
    verify_password,
)

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
SHELL = cli_actor("root")
PASSWORD = "correct horse battery staple"


class Clock:
    """A clock the test moves forward."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def publication(make_settings, store, clock):
    return Publication(make_settings(database_url=store.url), store, clock=clock)


# --- the pure module ---------------------------------------------------------------------------


def test_viewers_read_editors_write_owners_administer():
    def can(role: Role) -> set[str]:
        return {p.value for p in Permission if operator_actor_of(role).can(p)}

    assert can(Role.VIEWER) == {"read"}
    assert can(Role.EDITOR) == {"read", "write"}
    assert can(Role.OWNER) == {"read", "write", "admin"}
    with pytest.raises(AccessError, match="needs the write permission"):
        require(operator_actor_of(Role.VIEWER), Permission.WRITE)


def operator_actor_of(role: Role):
    from publisher.operators import Operator

    return operator_actor(Operator(1, "a@example.org", role, "", 0, None, 0, NOW))


def test_unknown_roles_and_scopes_are_one_line_errors():
    assert parse_role(" Owner ") == Role.OWNER and parse_scope("WRITE") == Permission.WRITE
    with pytest.raises(OperatorError, match="unknown role 'boss': use owner, editor or viewer"):
        parse_role("boss")
    with pytest.raises(OperatorError, match="unknown scope 'all'"):
        parse_scope("all")


def test_passwords_are_argon2_hashed_and_checked():
    hashed = hash_password(PASSWORD)
    assert hashed.startswith("$argon2id$") and PASSWORD not in hashed
    assert verify_password(hashed, PASSWORD)
    assert not verify_password(hashed, PASSWORD + "!")
    assert not verify_password(None, PASSWORD)  # an unknown address never matches
    assert not verify_password("not a hash", PASSWORD)
    with pytest.raises(OperatorError, match="too short"):
        hash_password("short")


def test_a_token_is_random_and_only_its_digest_is_kept():
    token, digest = mint_token()
    other, _ = mint_token()
    assert token.startswith("pub_") and len(token) > 40 and token != other
    assert digest == token_digest(token) and token not in digest and len(digest) == 64


def test_the_audit_detail_never_holds_a_secret():
    stored = json.loads(audit_detail({"email": "a@example.org", "password": "x", "nested": {"Token": "t"}}))
    assert stored == {"email": "a@example.org", "nested": {"Token": "***"}, "password": "***"}


# --- operators through Publication (SQLite and PostgreSQL) ------------------------------------


def test_an_added_operator_logs_in_and_the_log_says_who_did_it(publication):
    operator, is_new = publication.add_operator("Ada@Example.org", Role.EDITOR, PASSWORD, actor=SHELL)
    assert is_new and operator.email == "ada@example.org" and operator.role == Role.EDITOR
    assert publication.login("ada@example.org", PASSWORD, ip="192.0.2.1").id == operator.id
    log = publication.audit_log(SHELL)
    assert [(e.actor, e.action) for e in log] == [
        ("operator:ada@example.org", "login"),
        ("cli:root", "operator.add"),
    ]
    assert log[1].detail == {"email": "ada@example.org", "role": "editor"} and log[0].at == NOW
    assert PASSWORD not in json.dumps([e.detail for e in log])


def test_a_wrong_address_and_a_wrong_password_get_the_same_answer(publication):
    publication.add_operator("ada@example.org", Role.EDITOR, PASSWORD, actor=SHELL)
    with pytest.raises(AccessError, match=r"^wrong email address or password$"):
        publication.login("ada@example.org", "wrong password!")
    with pytest.raises(AccessError, match=r"^wrong email address or password$"):
        publication.login("bob@example.org", PASSWORD)
    assert [e.action for e in publication.audit_log(SHELL, limit=2)] == ["login.failed", "login.failed"]


def test_five_wrong_passwords_lock_the_account_for_a_while(publication, clock):
    publication.add_operator("ada@example.org", Role.EDITOR, PASSWORD, actor=SHELL)
    for _ in range(MAX_FAILED_LOGINS - 1):
        with pytest.raises(AccessError, match="wrong email"):
            publication.login("ada@example.org", "wrong password!")
    with pytest.raises(LoginLocked, match=r"^wrong email address or password$") as locked:
        publication.login("ada@example.org", "wrong password!")
    assert locked.value.until == NOW + LOCK_FOR
    assert publication.audit_log(SHELL, limit=1)[0].detail["locked_until"] == (NOW + LOCK_FOR).isoformat()
    with pytest.raises(LoginLocked):  # even the right password, while locked
        publication.login("ada@example.org", PASSWORD)
    clock.moment = NOW + LOCK_FOR + timedelta(seconds=1)
    assert publication.login("ada@example.org", PASSWORD).email == "ada@example.org"


def test_concurrent_wrong_passwords_cannot_outrun_the_lock(publication):
    """19 wrong passwords and the right one at once: at most five are checked, the rest refused,
    and the right one does not clear a lock taken while it was being checked."""
    publication.add_operator("ada@example.org", Role.EDITOR, PASSWORD, actor=SHELL)

    def attempt(number: int) -> str:
        password = PASSWORD if number == 19 else f"wrong password {number}"
        try:
            publication.login("ada@example.org", password, ip=f"10.77.{number}.1")
        except LoginLocked:
            return "locked"
        except AccessError:
            return "wrong"
        return "in"

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(attempt, range(20)))
    checked = outcomes.count("wrong") + outcomes.count("in")  # only these had their password checked
    assert checked <= MAX_FAILED_LOGINS and outcomes.count("locked") >= 20 - MAX_FAILED_LOGINS
    locked = publication.store.operators.get("ada@example.org")
    assert locked is not None and locked.locked(NOW)  # whoever won, the wrong passwords left it locked


def test_one_account_takes_a_bounded_number_of_attempts_from_any_addresses(publication):
    publication.add_operator("ada@example.org", Role.EDITOR, PASSWORD, actor=SHELL)
    for number in range(ACCOUNT_ATTEMPTS):
        with pytest.raises(AccessError):
            publication.login("ada@example.org", f"wrong {number}", ip=f"10.0.{number}.1")
    with pytest.raises(RateLimited):
        publication.login("ada@example.org", PASSWORD, ip="10.1.1.1")


def test_a_right_password_resets_the_count_of_wrong_ones(publication):
    publication.add_operator("ada@example.org", Role.EDITOR, PASSWORD, actor=SHELL)
    for _ in range(MAX_FAILED_LOGINS - 1):
        with pytest.raises(AccessError):
            publication.login("ada@example.org", "wrong password!")
    publication.login("ada@example.org", PASSWORD)
    with pytest.raises(AccessError, match="wrong email"):  # one more wrong one does not lock
        publication.login("ada@example.org", "wrong password!")


def test_logging_out_everywhere_ends_every_session(publication):
    operator, _ = publication.add_operator("ada@example.org", Role.VIEWER, PASSWORD, actor=SHELL)
    assert publication.session_operator(operator.id, operator.session_generation) is not None
    publication.logout_everywhere(operator)
    assert publication.session_operator(operator.id, operator.session_generation) is None
    fresh = publication.login("ada@example.org", PASSWORD)
    assert publication.session_operator(fresh.id, fresh.session_generation) is not None


def test_a_new_password_unlocks_and_ends_sessions_and_a_removed_operator_has_none(publication):
    operator, _ = publication.add_operator("ada@example.org", Role.EDITOR, PASSWORD, actor=SHELL)
    updated, is_new = publication.add_operator("ada@example.org", Role.OWNER, "another long password", actor=SHELL)
    assert not is_new and updated.role == Role.OWNER
    assert publication.session_operator(operator.id, operator.session_generation) is None
    with pytest.raises(AccessError):
        publication.login("ada@example.org", PASSWORD)
    publication.add_operator("bob@example.org", Role.OWNER, PASSWORD, actor=SHELL)
    publication.remove_operator("ada@example.org", actor=SHELL)
    assert publication.session_operator(updated.id, updated.session_generation) is None
    assert [o.email for o in publication.operators()] == ["bob@example.org"]


def test_the_last_owner_stays(publication):
    publication.add_operator("ada@example.org", Role.OWNER, PASSWORD, actor=SHELL)
    with pytest.raises(OperatorError, match="only owner"):
        publication.remove_operator("ada@example.org", actor=SHELL)
    with pytest.raises(OperatorError, match="only owner"):
        publication.add_operator("ada@example.org", Role.VIEWER, actor=SHELL)


def test_only_owners_manage_operators_and_read_the_log(publication):
    editor, _ = publication.add_operator("ed@example.org", Role.EDITOR, PASSWORD, actor=SHELL)
    as_editor = operator_actor(editor)
    with pytest.raises(AccessError, match="needs the admin permission"):
        publication.add_operator("eve@example.org", Role.OWNER, PASSWORD, actor=as_editor)
    with pytest.raises(AccessError):
        publication.audit_log(as_editor)
    with pytest.raises(AccessError):
        publication.create_token("cms", Permission.ADMIN, actor=as_editor)
    assert [o.email for o in publication.operators()] == ["ed@example.org"]


def test_a_token_works_until_it_is_revoked(publication):
    stored, secret = publication.create_token("cms", Permission.WRITE, actor=SHELL)
    assert stored.digest == token_digest(secret)
    actor = publication.token_actor(secret)
    assert actor.label == "token:cms" and actor.can(Permission.WRITE) and not actor.can(Permission.ADMIN)
    assert publication.tokens()[0].last_used_at == NOW
    with pytest.raises(OperatorError, match="exists: revoke it first"):
        publication.create_token("cms", Permission.READ, actor=SHELL)
    publication.revoke_token("cms", actor=SHELL)
    with pytest.raises(AccessError, match="unknown or revoked"):
        publication.token_actor(secret)
    with pytest.raises(AccessError):
        publication.token_actor(secret + "x")
    _, again = publication.create_token("cms", Permission.READ, actor=SHELL)  # the name is free again
    assert publication.token_actor(again).can(Permission.READ)
    log = json.dumps([(e.action, e.detail) for e in publication.audit_log(SHELL)])
    assert "token.revoke" in log and secret not in log and again not in log
    with pytest.raises(OperatorError, match="no active token named 'nope'"):
        publication.revoke_token("nope", actor=SHELL)


def test_removing_an_operator_revokes_the_tokens_they_created(publication):
    owner, _ = publication.add_operator("ada@example.org", Role.OWNER, PASSWORD, actor=SHELL)
    publication.add_operator("bob@example.org", Role.OWNER, PASSWORD, actor=SHELL)
    _, theirs = publication.create_token("cms", Permission.WRITE, actor=operator_actor(owner))
    _, shells = publication.create_token("dashboard", Permission.READ, actor=SHELL)
    publication.remove_operator("ada@example.org", actor=SHELL)
    with pytest.raises(AccessError, match="unknown or revoked"):
        publication.token_actor(theirs)
    assert publication.token_actor(shells).label == "token:dashboard"  # someone else's stays
    revoked = [e for e in publication.audit_log(SHELL) if e.action == "token.revoke"]
    assert [e.detail["name"] for e in revoked] == ["cms"] and "ada@example.org" in revoked[0].detail["because"]


def test_a_console_session_ends_at_logout_after_idling_and_at_its_lifetime(publication, clock):
    from publisher.operators import SESSION_IDLE, SESSION_LIFETIME

    operator, _ = publication.add_operator("ada@example.org", Role.EDITOR, PASSWORD, actor=SHELL)
    first, csrf = publication.start_session(operator)
    second, other_csrf = publication.start_session(operator)
    assert first != second and csrf != other_csrf  # a new id (and CSRF token) at every login
    assert publication.session(first) == (publication.store.operators.get("ada@example.org"), csrf)
    publication.end_session(first, operator)
    assert publication.session(first) is None and publication.session(second) is not None
    clock.moment = NOW + SESSION_IDLE + timedelta(seconds=1)
    assert publication.session(second) is None  # idle too long
    clock.moment = NOW + SESSION_IDLE
    third, _ = publication.start_session(operator)
    for hour in range(1, 13):  # active every hour, but no longer than the lifetime
        clock.moment = NOW + SESSION_IDLE + timedelta(hours=hour)
        alive = publication.session(third) is not None
        assert alive == (timedelta(hours=hour) < SESSION_LIFETIME)
    assert publication.session("") is None and publication.session("made-up") is None


def test_too_many_logins_from_one_address_are_refused_for_a_while(publication, clock, monkeypatch):
    from publisher import operators
    from publisher.errors import RateLimited

    monkeypatch.setattr(operators, "LOGIN_ATTEMPTS", 3)
    publication.add_operator("ada@example.org", Role.EDITOR, PASSWORD, actor=SHELL)
    for email in ("a@example.org", "b@example.org", "c@example.org"):
        with pytest.raises(AccessError, match="wrong email"):
            publication.login(email, PASSWORD, ip="198.51.100.7")
    with pytest.raises(RateLimited, match="too many login attempts"):
        publication.login("ada@example.org", PASSWORD, ip="198.51.100.7")  # even the right one
    assert publication.login("ada@example.org", PASSWORD, ip="198.51.100.8").email == "ada@example.org"
    clock.moment = NOW + operators.LOGIN_WINDOW + timedelta(seconds=1)
    assert publication.login("ada@example.org", PASSWORD, ip="198.51.100.7").email == "ada@example.org"
    assert "login.rate_limited" in [e.action for e in publication.audit_log(SHELL)]
