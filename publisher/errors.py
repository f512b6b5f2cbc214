"""The one exception tree. Every message says what went wrong, where, and what to do."""

from __future__ import annotations

from datetime import datetime, timedelta


class PublisherError(Exception):
    """A handled error: the CLI prints it on one line and exits with code 1."""


class ConfigError(PublisherError):
    """config.toml or the environment is wrong (names the file and the key)."""


class ContentError(PublisherError):
    """An import source is malformed (names the file and, where known, the line)."""


class StoreError(PublisherError):
    """The database cannot be reached or holds something unexpected."""


class SubscriberError(PublisherError):
    """A subscriber address or CSV row is invalid."""


class TemplateError(PublisherError):
    """A template fails to parse or render (names the template and line)."""


class DigestError(PublisherError):
    """An issue cannot be built or is in the wrong state for the request."""


class DeliveryError(PublisherError):
    """A transport cannot deliver at all (misconfigured relay, unreachable maildir)."""


class FeedError(PublisherError):
    """A feed cannot be built or written."""


class SiteError(PublisherError):
    """The public site cannot be exported."""


class SchedulerError(PublisherError):
    """The timetable is invalid or the scheduler cannot start."""


class TokenError(PublisherError):
    """A token is forged, altered, expired or meant for another purpose."""


class RateLimited(PublisherError):
    """Too many subscription requests from one place: try again later."""

    def __init__(self, message: str, retry_after: timedelta) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class IssueConflict(DigestError):
    """Another writer took the same issue number or one of the same articles: select again."""


class OperatorError(PublisherError):
    """An operator, password, role, token name or scope is invalid, or unknown."""


class AccessError(PublisherError):
    """Not signed in, a wrong password, a locked account, or an action the role or token may not take."""


class LoginLocked(AccessError):
    """Too many wrong passwords: the account is locked until `until`."""

    def __init__(self, message: str, until: datetime) -> None:
        super().__init__(message)
        self.until = until


class ArticleConflict(ContentError):
    """A posted article's slug is taken: by an imported article, or by a posted one not named explicitly."""
