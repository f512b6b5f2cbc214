"""An issue's editions: one compiled message per distinct set of articles its readers get.

Each delivery row keeps the reader's topics as they were when the audience was frozen. `Editions`
maps those topics to the edition they give (`topics.edition`), renders and compiles each distinct
edition once, and hands the delivery engine the message for a row, or None when none of the
issue's articles is in the reader's topics (the row is then marked `skipped`, and counted).
"""

from __future__ import annotations

from collections.abc import Callable

from publisher.config import NewsletterSettings, Settings
from publisher.errors import DigestError
from publisher.message import CompiledMessage, Signer, compile_message
from publisher.model import PlannedIssue, RenderedIssue
from publisher.render import render_digest
from publisher.selection import Digest
from publisher.store import Store
from publisher.templates import environment
from publisher.topics import EditionKey, edition, edition_key, parse_topics


class Editions:
    """Compiled messages per edition, made on first use; `renders` counts the renders done."""

    def __init__(
        self,
        digest: Digest | None,
        settings: Settings,
        newsletter: NewsletterSettings,
        compile_edition: Callable[[Digest | None], CompiledMessage],
    ) -> None:
        self.digest, self.settings, self.newsletter = digest, settings, newsletter
        self._compile = compile_edition
        self._editions: dict[str, tuple[EditionKey | None, Digest | None] | None] = {}
        self._by_topics: dict[str, CompiledMessage | None] = {}
        self._by_key: dict[EditionKey | None, CompiledMessage] = {}
        self.renders = 0

    @property
    def selects(self) -> bool:
        """Readers' topics choose among the issue's articles (a digest, with [[topics]] configured)."""
        return self.digest is not None and bool(self.settings.topics)

    def full(self) -> CompiledMessage:
        """The edition of a reader who chose no topic, or all of them: every article."""
        found = self.for_topics("[]")
        if found is None:  # an issue always has articles; its full edition is never empty
            raise DigestError(f"{self.newsletter.name}: the issue has no articles to send")
        return found

    def has_articles(self, raw: str) -> bool:
        """Whether readers whose frozen topics are `raw` get anything (nothing is rendered to tell)."""
        return self._edition(raw) is not None

    def for_topics(self, raw: str) -> CompiledMessage | None:
        """The message for a reader whose frozen topics are `raw` (the ledger's JSON)."""
        if raw not in self._by_topics:
            self._by_topics[raw] = self._message(raw)
        return self._by_topics[raw]

    def _edition(self, raw: str) -> tuple[EditionKey | None, Digest | None] | None:
        """(key, digest) of the edition `raw` topics give; None when it has no article."""
        if raw not in self._editions:
            if not self.selects or self.digest is None:
                self._editions[raw] = (None, None)
            else:
                copy = edition(self.digest, parse_topics(raw), self.settings.topics, self.newsletter)
                self._editions[raw] = None if copy is None else (edition_key(copy, self.newsletter), copy)
        return self._editions[raw]

    def _message(self, raw: str) -> CompiledMessage | None:
        found = self._edition(raw)
        return None if found is None else self._compiled(*found)

    def _compiled(self, key: EditionKey | None, copy: Digest | None) -> CompiledMessage:
        if key not in self._by_key:
            self._by_key[key] = self._compile(copy)
            self.renders += 1
        return self._by_key[key]


def issue_editions(
    store: Store,
    settings: Settings,
    issue: PlannedIssue,
    *,
    rendered: RenderedIssue | None = None,
    signer: Signer | None = None,
) -> Editions:
    """The editions of a stored issue (an announcement has one: everyone gets the same message)."""
    from publisher.issues import load_digest, render_issue

    newsletter = settings.newsletter(issue.newsletter)
    digest = None if issue.is_announcement else load_digest(store, issue, newsletter)
    env = environment(settings)  # compiled once for every edition of the issue

    def compile_edition(copy: Digest | None) -> CompiledMessage:
        if rendered is not None and (copy is None or not settings.topics):
            made = rendered
        elif copy is None or digest is None:  # an announcement
            made = render_issue(store, settings, issue)
        else:  # a reader's own selection gets a subject of its own (the stored one names the lead article)
            whole = (copy.articles, copy.overflow) == (digest.articles, digest.overflow)
            subject = (issue.subject if whole else None) or None
            made = render_digest(copy, settings=settings, newsletter=newsletter, subject=subject, env=env)
        return compile_message(made, settings=settings, newsletter=newsletter, issue_number=issue.number, signer=signer)

    return Editions(digest, settings, newsletter, compile_edition)
