"""`publisher admin add-user|remove-user|users|token create|token revoke|tokens|audit`.

Whoever runs `publisher` on the server acts as an owner (`cli:USER` in the audit log).
"""

from __future__ import annotations

import getpass
import json
import sys

import click

from publisher.cli.app import App, iso, print_json
from publisher.errors import OperatorError
from publisher.operators import Actor, Permission, Role, cli_actor, parse_role, parse_scope


def shell_actor() -> Actor:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = "unknown"
    return cli_actor(user)


def read_password(from_stdin: bool) -> str:
    """The password from standard input's first line, or asked twice at the terminal."""
    if from_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise OperatorError("--password-stdin: standard input held no password (one line expected)")
        return password
    if not sys.stdin.isatty():
        raise OperatorError("no terminal to ask for the password: pipe it in with --password-stdin")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@click.group("admin")
def admin_group() -> None:
    """Manage the console's operators, the API's tokens, and read the audit log."""


@admin_group.command("add-user")
@click.argument("email")
@click.option(
    "--role",
    type=click.Choice([role.value for role in Role]),
    default=Role.EDITOR.value,
    show_default=True,
    help="viewer: reads; editor: also builds, approves and sends; owner: also manages operators and tokens.",
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input's first line.")
@click.pass_obj
def add_user_command(app: App, email: str, role: str, password_stdin: bool) -> None:
    """Add an operator who logs in to the console at /admin/ (argon2-hashed password).

    For an existing operator, set the role and, with --password-stdin or at the prompt, a new
    password (which unlocks the account and ends its sessions).
    """
    publication = app.publication
    exists = publication.store.operators.get(email.strip().lower()) is not None
    password = "" if exists and not password_stdin else read_password(password_stdin)
    operator, is_new = publication.add_operator(email, parse_role(role), password, actor=shell_actor())
    click.echo(f"{'added' if is_new else 'updated'} {operator.email} ({operator.role})")


@admin_group.command("remove-user")
@click.argument("email")
@click.pass_obj
def remove_user_command(app: App, email: str) -> None:
    """Remove an operator; their console sessions end. The last owner cannot be removed."""
    operator = app.publication.remove_operator(email, actor=shell_actor())
    click.echo(f"removed {operator.email} ({operator.role})")


@admin_group.command("users")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_obj
def users_command(app: App, as_json: bool) -> None:
    """List the operators, their roles and whether they are locked out."""
    now = app.now()
    rows = [
        {
            "email": o.email,
            "role": o.role.value,
            "locked_until": iso(o.locked_until) if o.locked(now) else None,
            "created_at": iso(o.created_at),
        }
        for o in app.publication.operators()
    ]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        locked = f"  locked until {row['locked_until']}" if row["locked_until"] else ""
        click.echo(f"{row['email']:<40} {row['role']:<7}{locked}")


@admin_group.group("token")
def token_group() -> None:
    """Create and revoke API tokens (Authorization: Bearer TOKEN)."""


@token_group.command("create")
@click.argument("name")
@click.option(
    "--scope",
    type=click.Choice([scope.value for scope in Permission]),
    default=Permission.READ.value,
    show_default=True,
    help="read: GET only; write: also change subscribers, articles and issues; admin: everything.",
)
@click.option("--json", "as_json", is_flag=True, help='Print {"name": …, "scope": …, "token": …}.')
@click.pass_obj
def token_create_command(app: App, name: str, scope: str, as_json: bool) -> None:
    """Create an API token. It is shown once, here: only its SHA-256 is stored."""
    token, secret = app.publication.create_token(name, parse_scope(scope), actor=shell_actor())
    if as_json:
        # one line, as the docs show it: easy to pipe into jq or a secrets store
        click.echo(json.dumps({"name": token.name, "scope": token.scope.value, "token": secret}))
        return
    click.echo(secret)
    click.echo(f"token {token.name!r} ({token.scope}) created: copy it now, it is not shown again", err=True)


@token_group.command("revoke")
@click.argument("name")
@click.pass_obj
def token_revoke_command(app: App, name: str) -> None:
    """Revoke an API token: requests carrying it are refused from now on."""
    token = app.publication.revoke_token(name, actor=shell_actor())
    click.echo(f"revoked token {token.name!r} ({token.scope})")


@admin_group.command("tokens")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (never the tokens themselves).")
@click.pass_obj
def tokens_command(app: App, as_json: bool) -> None:
    """List API tokens: name, scope, who created them, last use, revocation."""
    rows = [
        {
            "name": t.name,
            "scope": t.scope.value,
            "created_at": iso(t.created_at),
            "created_by": t.created_by,
            "last_used_at": iso(t.last_used_at),
            "revoked_at": iso(t.revoked_at),
        }
        for t in app.publication.tokens()
    ]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else f"last used {row['last_used_at'] or 'never'}"
        click.echo(f"{row['name']:<24} {row['scope']:<6} {row['created_by']:<32} {state}")


@admin_group.command("audit")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="How many entries.")
@click.option("--actor", "who", default="", help="Only this actor's entries, e.g. operator:ada@example.org.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, newest first.")
@click.pass_obj
def audit_command(app: App, limit: int, who: str, as_json: bool) -> None:
    """Read the audit log, newest first: who did what in the console, the API and here, and when."""
    entries = app.publication.audit_log(shell_actor(), limit=limit, who=who)
    if as_json:
        print_json(
            [{"id": e.id, "at": iso(e.at), "actor": e.actor, "action": e.action, "detail": e.detail} for e in entries]
        )
        return
    for e in entries:
        detail = " ".join(f"{key}={value}" for key, value in e.detail.items())
        click.echo(f"{e.at:%Y-%m-%d %H:%M:%S}  {e.actor:<32} {e.action:<20} {detail}".rstrip())


def register(group: click.Group) -> None:
    group.add_command(admin_group)
