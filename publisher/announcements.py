"""One-off announcements: a Markdown message sent to a newsletter's audience in its design.

An announcement is an issue of kind `announcement`: it takes the newsletter's next issue number,
holds no articles, never moves the watermark, and goes through the same ledger, transports and
archive as a digest. Its file is read here (front matter `subject`, optional `preheader`) and
rendered once with `email/announcement.mjml.j2` and `.txt.j2`, overridable like the digest's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import jinja2

from publisher.config import NewsletterSettings, Settings
from publisher.errors import ContentError
from publisher.model import PLACEHOLDER_KEYS, PlannedIssue, RenderedIssue, new_placeholders
from publisher.render import long_date, tidy_text, view_url
from publisher.templates import check_mjml_tags, compile_mjml, environment, render_template
from publisher.text import header_safe

TEMPLATE = "announcement"
KNOWN_KEYS = frozenset({"subject", "preheader"})


@dataclass(frozen=True)
class Announcement:
    """A message as its file says: subject, preheader and Markdown body."""

    subject: str
    preheader: str
    body: str

    @property
    def key(self) -> str:
        """What makes two runs the same announcement: its words (so a re-run resumes, never repeats)."""
        return hashlib.sha256("\x1f".join((self.subject, self.preheader, self.body)).encode()).hexdigest()


def read_announcement(path: Path) -> Announcement:
    """Read FILE.md: front matter with `subject` (required) and `preheader`, then the Markdown body."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ContentError(f"{path}: cannot read the announcement: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ContentError(f"{path}: the announcement is not UTF-8 text") from None
    from publisher.importers.markdown import split_front_matter  # markdown-it: only when announcing

    meta, body, _ = split_front_matter(text, str(path))
    unknown = sorted(set(meta) - KNOWN_KEYS)
    if unknown:
        raise ContentError(f"{path}: unknown front matter key {', '.join(unknown)} (known: preheader, subject)")
    subject = meta.get("subject")
    if not isinstance(subject, str) or not subject.strip():
        raise ContentError(f"{path}: the front matter needs a subject (---\\nsubject: …\\n---)")
    if not body.strip():
        raise ContentError(f"{path}: the announcement has no text below its front matter")
    return Announcement(header_safe(subject), header_safe(str(meta.get("preheader") or "")), body.strip() + "\n")


def context(issue: PlannedIssue, settings: Settings, newsletter: NewsletterSettings) -> dict[str, object]:
    """Everything the announcement templates (email, text, archive) may use."""
    from publisher.importers.markdown import render_markdown

    date = issue.slot.astimezone(newsletter.zone)
    return {
        "site": settings.site,
        "newsletter": newsletter,
        "number": issue.number,
        "date": date,
        "date_long": long_date(date, settings.site.language),
        "subject": issue.subject,
        "preheader": issue.preheader,
        "body_html": render_markdown(issue.body),
        "body_text": issue.body.strip(),
        "view_url": view_url(settings, issue.newsletter, issue.number),
        "archive_url": f"{settings.site.url}/archive/{issue.newsletter}/",
        "subscribe_url": f"{settings.site.url}/subscribe",
        "recipient": dict.fromkeys(PLACEHOLDER_KEYS, ""),
    }


def render_announcement(
    issue: PlannedIssue, *, settings: Settings, newsletter: NewsletterSettings, env: jinja2.Environment | None = None
) -> RenderedIssue:
    """Compile the announcement once, placeholders left in for each recipient's copy."""
    env = env or environment(settings)
    placeholders = new_placeholders()
    values = {**context(issue, settings, newsletter), "recipient": placeholders}
    html_name, text_name = f"email/{TEMPLATE}.mjml.j2", f"email/{TEMPLATE}.txt.j2"
    source = render_template(env, html_name, values)
    check_mjml_tags(env, html_name, source)
    text = render_template(env, text_name, values)
    return RenderedIssue(
        newsletter=issue.newsletter,
        subject=issue.subject,
        preheader=issue.preheader,
        html=compile_mjml(source, html_name),
        text=tidy_text(text),
        view_url=str(values["view_url"]),
        placeholders=placeholders,
    )
