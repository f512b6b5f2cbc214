"""`publisher digest preview|build|approve|cancel|issues|archive` (delivery adds `send` and `status`)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path

import click

from publisher.cli.app import WALL_CLOCK, App, iso, plural, print_json
from publisher.config import NewsletterSettings
from publisher.issues import Preview
from publisher.model import Issue
from publisher.publication import slot_words
from publisher.selection import Reason, Verdict


def issue_json(issue: Issue) -> dict:
    return {
        "newsletter": issue.newsletter,
        "number": issue.number,
        "kind": issue.kind.value,
        "state": issue.state,
        "slot": iso(issue.slot),
        "subject": issue.subject,
        "articles": len(issue.article_ids),
        "overflow": len(issue.overflow_ids),
        "watermark": iso(issue.watermark),
        "created_at": iso(issue.created_at),
        "sent_at": iso(issue.sent_at),
    }


def _describe(issue: Issue, newsletter: NewsletterSettings | None = None) -> str:
    if issue.is_announcement:
        return f"issue {issue.number} [{issue.state}] announcement for {issue.slot:%Y-%m-%d %H:%M %Z} — {issue.subject}"
    more = f" (+{len(issue.overflow_ids)} linked)" if issue.overflow_ids else ""
    when = slot_words(issue.slot, newsletter) if newsletter else f"{issue.slot:%Y-%m-%d %H:%M %Z}"
    return (
        f"issue {issue.number} [{issue.state}] for {when}: "
        f"{plural(len(issue.article_ids), 'article')}{more} — {issue.subject}"
    )


@click.group("digest")
def digest_group() -> None:
    """Build, preview, approve and cancel newsletter issues."""


REASON_TEXT = {
    Reason.IN: "in",
    Reason.MORE: 'in "More" (over max_articles)',
    Reason.TOO_OLD: "held back: older than lookback",
    Reason.EXCLUDED_TAG: "held back: tag filters (exclude_tags / include_tags)",
    Reason.FUTURE: "held back: future-dated",
    Reason.ALREADY_SENT: "held back: already sent",
    Reason.NEXT_ISSUE: "held back: imported after this issue was built; goes in the next",
}


def verdict_json(verdict: Verdict) -> dict:
    article = verdict.article
    return {
        "reason": verdict.reason.value,
        "guid": article.guid,
        "title": article.title,
        "published": iso(article.published),
        "first_seen": iso(article.first_seen),
    }


def preview_json(shown: Preview) -> dict:
    digest, rendered = shown.digest, shown.rendered
    return {
        "issue": digest.number if digest else None,
        "subject": rendered.subject if rendered else None,
        "articles": len(digest.articles) if digest else 0,
        "overflow": len(digest.overflow) if digest else 0,
        "files": {kind: str(path) for kind, path in shown.files.items()},
        "skipped": shown.skipped.reason if shown.skipped else None,
        "note": shown.note or None,
        "candidates": [verdict_json(verdict) for verdict in shown.verdicts],
    }


def _show_verdicts(shown: Preview) -> None:
    if not shown.verdicts:
        return
    click.echo("candidates:")
    for verdict in shown.verdicts:
        article = verdict.article
        click.echo(f"  {verdict.reason.value:<13} {article.published:%Y-%m-%d %H:%M}  {article.title}")
    counts = Counter(verdict.reason for verdict in shown.verdicts)
    click.echo("  " + ", ".join(f"{count} {REASON_TEXT[reason]}" for reason, count in counts.items()))


@digest_group.command("preview")
@click.argument("name")
@click.option(
    "--out",
    "out",
    default="preview",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the .html, .txt and .eml files.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, with every candidate and its reason.")
@click.pass_obj
def preview_command(app: App, name: str, out: Path, as_json: bool) -> None:
    """Render the pending draft, or the issue that would be built now, for a sample recipient.

    Writes NAME-NUMBER.html, .txt and a complete .eml; stores nothing. Lists every candidate
    article with its reason: in, in "More", or held back (too old, excluded tag, future-dated,
    already sent).
    """
    shown = app.publication.preview(name, out)
    if as_json:
        print_json(preview_json(shown))
        return
    digest, rendered = shown.digest, shown.rendered
    if digest is None or rendered is None:
        click.echo(shown.note)
    else:
        click.echo(f"subject:  {rendered.subject}")
        click.echo(f"articles: {len(digest.articles)} (+{len(digest.overflow)} linked as more)")
        for kind, path in shown.files.items():
            click.echo(f"{kind + ':':<9} {path} ({path.stat().st_size:,} bytes)")
        for note in rendered.trimmed:
            click.echo(f"trimmed:  {note}")
    _show_verdicts(shown)
    if shown.skipped:
        click.echo(f"note: a scheduled run would skip this issue ({shown.skipped.reason})")


@digest_group.command("build")
@click.argument("name")
@click.option(
    "--slot",
    type=WALL_CLOCK,
    help="The slot to build for: a wall-clock time (2026-11-30T08:00, in the newsletter's zone; for "
    'deliver = "local", in each reader\'s zone) or an instant with an offset. Default: now '
    '(deliver = "local": the next slot of the schedule).',
)
@click.option("--force", is_flag=True, help="Build even with fewer than min_articles (never an empty issue).")
@click.pass_obj
def build_command(app: App, name: str, slot: datetime | None, force: bool) -> None:
    """Create the issue for a slot: a draft if the newsletter requires approval, else approved.

    Building the same slot again shows the issue already built; nothing is sent here.
    """
    result = app.publication.build(name, slot, force=force)
    built = result.issue
    if built is None:
        click.echo(f"{name}: {result.reason}")
        return
    newsletter = app.settings.newsletters.get(name)
    click.echo(f"{name}: {'already built: ' if result.existed else 'built '}{_describe(built, newsletter)}")
    if built.state == "draft":
        click.echo(f"next: publisher digest preview {name}, then publisher digest approve {name} {built.number}")


@digest_group.command("approve")
@click.argument("name")
@click.argument("number", type=int, required=False)
@click.pass_obj
def approve_command(app: App, name: str, number: int | None) -> None:
    """Release a draft issue for sending (default: the newest draft)."""
    approved = app.publication.approve(name, number)
    click.echo(f"{name}: {_describe(approved)}")
    click.echo(app.publication.when_sent(approved))


@digest_group.command("cancel")
@click.argument("name")
@click.argument("number", type=int)
@click.pass_obj
def cancel_command(app: App, name: str, number: int) -> None:
    """Cancel an issue; if it had not started sending, its articles go in the next issue."""
    click.echo(f"{name}: {_describe(app.publication.cancel(name, number))}")


@digest_group.command("issues")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, oldest first.")
@click.pass_obj
def issues_command(app: App, name: str, as_json: bool) -> None:
    """List a newsletter's issues and announcements (one numbering), oldest first."""
    found = app.publication.issues(name)
    if as_json:
        print_json([issue_json(issue) for issue in found])
        return
    for issue in found:
        click.echo(_describe(issue))
    click.echo(plural(len(found), "issue"))


@digest_group.command("archive")
@click.argument("name")
@click.pass_obj
def archive_command(app: App, name: str) -> None:
    """Rewrite the web archive pages and the issues feed of a newsletter."""
    changed = app.publication.write_archive(name)
    click.echo(
        f"{name}: {len(changed)} archive files written under {app.settings.archive.dir / name} "
        f"and {app.settings.feeds.dir / 'newsletters' / name}"
    )


def register(group: click.Group) -> None:
    group.add_command(digest_group)
