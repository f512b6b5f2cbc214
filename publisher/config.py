"""Settings: `config.toml` plus the environment, loaded and validated once into frozen dataclasses.

Each section is a dataclass; its fields are the keys a user may write. One generic builder walks
the fields, so an unknown key, a wrong type or a missing required key is reported the same way
everywhere: the file, the dotted key, and what was expected.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import os
import re
import secrets
import tomllib
import types
import typing
from collections import Counter
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from publisher.errors import ConfigError
from publisher.patterns import nested_repeat
from publisher.text import quoted
from publisher.zones import is_zone

if typing.TYPE_CHECKING:
    from _typeshed import DataclassInstance

_Settings = typing.TypeVar("_Settings", bound="DataclassInstance")

DEFAULT_CONFIG = Path("config.toml")
SOURCE_FORMATS = ("auto", "markdown", "textpage", "feed")
DEFAULT_MAX_BYTES = 20_000_000  # the most a feed URL may send, decompressed
SECRET_KEY_FILE = ".publisher-secret"  # noqa: S105 - a file name, not a secret
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# A hundred years: longer than any setting needs (a `lookback` may reach far into an archive),
# and short enough that no date it is added to or taken from leaves the calendar.
MAX_DURATION = timedelta(days=36500)


def parse_duration(value: object, where: str) -> timedelta:
    """`90` (seconds), "90m", "36h", "7d" or "2w" as a timedelta, at most MAX_DURATION."""
    seconds: int | None = None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        seconds = value
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = int(match[1]) * _UNIT_SECONDS[match[2]]
    if seconds is None:
        raise ConfigError(f'{where}: expected a duration such as "7d", "36h" or "90m", got {value!r}')
    if seconds > MAX_DURATION.total_seconds():  # a timedelta past 999,999,999 days is an OverflowError
        raise ConfigError(f"{where} must be at most 100 years (36500d), got {value!r}")
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class SiteSettings:
    title: str = "My publication"
    url: str = "http://localhost:8080"
    description: str = ""
    language: str = "en"
    postal_address: str = ""  # required before mail goes out: anti-spam law wants a real one
    author: str = ""
    timezone: str = "UTC"
    export_dir: Path | None = None  # `publisher site build` writes here; import and run keep it fresh
    page_size: int = 20  # articles per page on the home and tag pages

    @property
    def domain(self) -> str:
        return urlsplit(self.url).hostname or "localhost"


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite:///publisher.db"


@dataclass(frozen=True)
class SourceSettings:
    path: str
    format: str = "auto"
    max_bytes: int = DEFAULT_MAX_BYTES  # a feed URL's body, after decompression
    link: str = "origin"  # feed entries link to their origin, or to their page here ("local")
    tags: tuple[str, ...] = ()  # given to every article of this source


@dataclass(frozen=True)
class TopicSettings:
    """A topic readers may choose (`[[topics]]`): the articles carrying any of its tags."""

    name: str
    label: str = ""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class TagRule:
    """`[[tag_rules]]`: `tag` goes on every imported article whose title or text `pattern` matches."""

    tag: str
    pattern: re.Pattern[str]
    match: str | tuple[str, ...] = ""  # as written: a regular expression, or a list of words


@dataclass(frozen=True)
class FeedSettings:
    dir: Path = Path("feeds")
    limit: int = 50
    hub: str = ""


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 25
    security: str = "none"
    username: str = ""
    password: str = field(default="", repr=False)
    connections: int = 4
    rate_limit: float = 0.0
    timeout: float = 30.0
    per_domain_connections: int = 0  # 0: no per-domain limit (a relay fans out itself)


@dataclass(frozen=True)
class DkimSettings:
    selector: str = ""
    domain: str = ""
    key_file: Path | None = None


@dataclass(frozen=True)
class DeliverySettings:
    transport: str = "maildir"
    maildir: Path = Path("outbox")
    batch_size: int = 100
    lease: timedelta = timedelta(minutes=5)
    retry_first: timedelta = timedelta(minutes=5)
    retry_max: timedelta = timedelta(hours=4)
    give_up_after: timedelta = timedelta(days=5)
    soft_bounce_limit: int = 3
    return_path: str = ""  # VERP: bounces+<token>@domain as each message's envelope sender
    smtp: SmtpSettings = SmtpSettings()
    dkim: DkimSettings = DkimSettings()


@dataclass(frozen=True)
class NewsletterSettings:
    name: str
    title: str
    from_: str
    reply_to: str = ""
    schedule: str = "0 8 * * 1"
    timezone: str = "UTC"
    min_articles: int = 1
    max_articles: int = 20
    lookback: timedelta = timedelta(days=7)
    include_tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()
    sections: tuple[str, ...] = ()
    subject: str = "{{ lead_subject }}"  # the lead headline and "+ N more", at most 78 characters
    preheader: str = "{{ lead_teaser }}"  # the lead article's first sentences
    site_link: bool = False  # a "read these articles on the site" block in the digest
    template: str = "digest"
    require_approval: bool = False
    grace: timedelta = timedelta(hours=3)
    deliver: str = "newsletter"  # "local": each reader at the slot's wall-clock time in their own zone
    by_topic: bool = False  # `sections = "topics"`: a reader's digest has a section per chosen topic

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def local(self) -> bool:
        return self.deliver == "local"

    @property
    def slot_grace(self) -> timedelta:
        """How late a slot may still be sent: `grace`, plus for a local-time newsletter the 26 hours
        its waves span (its last readers' morning comes 26 hours after its first's), so a service
        down at the first wave still sends the later ones (the earlier ones at once)."""
        return self.grace + WAVE_SPAN if self.local else self.grace

    @property
    def slot_zone(self) -> ZoneInfo:
        """Where the crontab is read: a local-time newsletter's slot starts where its wall-clock
        time comes first on Earth (UTC+14), so the issue is built before its first wave."""
        return FIRST_ZONE if self.local else self.zone

    def wall_clock(self, slot: datetime) -> datetime:
        """A slot as its wall-clock time: Monday 08:00 for a Monday-morning local-time slot,
        although its first wave (UTC+14) comes on Sunday in UTC or in the newsletter's zone."""
        return slot.astimezone(self.slot_zone)

    def slot_at(self, moment: datetime) -> datetime:
        """The slot (in UTC) a `--slot` value names: without an offset, a wall-clock time (in the
        newsletter's zone; for a local-time newsletter, the time each reader's zone gets);
        with one, that instant."""
        if moment.tzinfo is not None:
            return moment.astimezone(UTC)
        return moment.replace(tzinfo=self.slot_zone, fold=0).astimezone(UTC)


FIRST_ZONE = ZoneInfo("Etc/GMT-14")  # POSIX sign: 14 hours ahead of UTC (Kiritimati)
WAVE_SPAN = timedelta(hours=26)  # from UTC+14 to UTC-12: one wall-clock time around the Earth


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    confirm_expiry: timedelta = timedelta(days=2)
    subscribe_per_ip_per_hour: int = 20
    topics: tuple[str, ...] = ()
    welcome: bool = True
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")  # whose X-Forwarded-For is believed


@dataclass(frozen=True)
class SchedulerSettings:
    feeds_interval: timedelta = timedelta(minutes=15)
    poll_interval: timedelta = timedelta(minutes=30)
    retry_interval: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class TemplateSettings:
    dir: Path | None = None


@dataclass(frozen=True)
class ArchiveSettings:
    dir: Path = Path("archive")


@dataclass(frozen=True)
class ImapSettings:
    host: str = ""
    port: int = 993
    security: str = "tls"
    username: str = ""
    password: str = field(default="", repr=False)  # PUBLISHER_IMAP_PASSWORD
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    interval: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class InboundSettings:
    listen: str = ""  # HOST:PORT for the SMTP/LMTP receiver
    protocol: str = "smtp"
    soft_bounce_half_life: timedelta = timedelta(days=7)
    imap: ImapSettings = ImapSettings()

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class MailgunWebhook:
    signing_key_env: str = ""
    signing_key: str = field(default="", repr=False)


@dataclass(frozen=True)
class SendgridWebhook:
    public_key_env: str = ""
    public_key: str = field(default="", repr=False)


@dataclass(frozen=True)
class PostmarkWebhook:
    username: str = ""
    password_env: str = ""
    password: str = field(default="", repr=False)


@dataclass(frozen=True)
class SesWebhook:
    enabled: bool = False
    signing_cert_url_pattern: str = r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/"
    topic_arns: tuple[str, ...] = ()


@dataclass(frozen=True)
class WebhookSettings:
    mailgun: MailgunWebhook = MailgunWebhook()
    sendgrid: SendgridWebhook = SendgridWebhook()
    postmark: PostmarkWebhook = PostmarkWebhook()
    ses: SesWebhook = SesWebhook()


@dataclass(frozen=True)
class ApiSettings:
    cors_origins: tuple[str, ...] = ()  # other sites whose pages may POST /api/v1/subscribe


@dataclass(frozen=True)
class MetricsSettings:
    """Who may read /metrics: holders of the token (in the environment variable `token_env`), or
    anyone who can reach `listen`, a separate HOST:PORT that serves only /metrics."""

    token_env: str = ""
    token: str = field(default="", repr=False)
    listen: str = ""

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class Settings:
    path: Path
    base_dir: Path
    site: SiteSettings = SiteSettings()
    database: DatabaseSettings = DatabaseSettings()
    sources: tuple[SourceSettings, ...] = ()
    feeds: FeedSettings = FeedSettings()
    delivery: DeliverySettings = DeliverySettings()
    newsletters: dict[str, NewsletterSettings] = field(default_factory=dict)
    web: WebSettings = WebSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    templates: TemplateSettings = TemplateSettings()
    archive: ArchiveSettings = ArchiveSettings()
    inbound: InboundSettings = InboundSettings()
    webhooks: WebhookSettings = WebhookSettings()
    topics: tuple[TopicSettings, ...] = ()
    tag_rules: tuple[TagRule, ...] = ()
    metrics: MetricsSettings = MetricsSettings()
    api: ApiSettings = ApiSettings()
    secret_keys: tuple[str, ...] = field(default=(), repr=False)

    def newsletter(self, name: str) -> NewsletterSettings:
        try:
            return self.newsletters[name]
        except KeyError:
            known = ", ".join(sorted(self.newsletters)) or "none configured"
            raise ConfigError(f"{self.path}: no [newsletters.{name}] (known: {known})") from None


# Keys that are not plain `[section] key = value` fields of the dataclasses above.
_SPECIAL_KEYS = {"path", "base_dir", "sources", "newsletters", "secret_keys", "topics", "tag_rules"}
_SECRET_FIELDS = {"password", "signing_key", "public_key", "token"}
_CHOICES = {
    "delivery.transport": ("smtp", "maildir"),
    "delivery.smtp.security": ("none", "starttls", "tls"),
    "sources.format": SOURCE_FORMATS,
    "inbound.protocol": ("smtp", "lmtp"),
    "inbound.imap.security": ("tls", "starttls", "none"),
    "newsletters.deliver": ("newsletter", "local"),
}


def _toml_key(name: str) -> str:
    return name.rstrip("_")


def _convert(value: object, kind: object, where: str) -> object:
    """Check one TOML value against a field's annotation and convert it."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return _convert(value, options[0], where)
    if kind is timedelta:
        return parse_duration(value, where)
    if kind is Path:
        if isinstance(value, str) and value:
            return Path(value)
        raise ConfigError(f"{where}: expected a path (a non-empty string), got {value!r}")
    if origin is tuple:
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if isinstance(kind, type) and isinstance(value, kind):
        return value
    expected: dict[object, str] = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    raise ConfigError(f"{where}: expected {expected.get(kind, kind)}, got {value!r}")


def _build(cls: type[_Settings], table: object, where: str, source: Path, **fixed: object) -> _Settings:
    """Build dataclass `cls` from a TOML table, rejecting unknown keys and wrong types."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{where}] must be a table")
    hints = typing.get_type_hints(cls)
    allowed = {_toml_key(f.name): f for f in fields(cls) if f.name not in fixed}
    for key in table:
        if key not in allowed or allowed[key].name in _SECRET_FIELDS:
            hint = " (secrets come from the environment)" if key in _SECRET_FIELDS else ""
            known = ", ".join(k for k, f in allowed.items() if f.name not in _SECRET_FIELDS)
            raise ConfigError(f"{source}: unknown key {where}.{key}{hint}; known keys: {known}")
    values = dict(fixed)
    for key, spec in allowed.items():
        dotted = f"{where}.{key}"
        if key not in table:
            if spec.default is MISSING and spec.default_factory is MISSING:
                raise ConfigError(f"{source}: [{where}] is missing required key {key}")
            continue
        kind = hints[spec.name]
        if isinstance(kind, type) and is_dataclass(kind):
            values[spec.name] = _build(kind, table[key], dotted, source)
            continue
        value = _convert(table[key], kind, f"{source}: {dotted}")
        choices = (
            _CHOICES.get(dotted)
            or _CHOICES.get(f"{where.split('[')[0]}.{key}")
            or _CHOICES.get(f"{where.split('.')[0]}.{key}")
        )
        if choices and value not in choices:
            raise ConfigError(f"{source}: {dotted} must be one of {', '.join(choices)}, got {value!r}")
        values[spec.name] = value
    return cls(**values)


def _newsletters(table: object, source: Path, site: SiteSettings) -> dict[str, NewsletterSettings]:
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [newsletters] must hold tables like [newsletters.weekly]")
    built = {}
    for name, body in table.items():
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
            raise ConfigError(f"{source}: newsletter name {name!r} must be lower-case letters, digits, - or _")
        defaults: dict[str, object] = {"name": name}
        given = body
        if isinstance(body, dict):
            given = {"title": name.title(), "from": f"{site.title} <newsletter@{site.domain}>", **body}
            sections = given.get("sections")
            if sections == "topics":
                given.pop("sections")
                defaults["by_topic"] = True
            elif isinstance(sections, str):
                raise ConfigError(
                    f'{source}: newsletters.{name}.sections: "topics" (a section per reader\'s topic) or a '
                    f'list of tags like ["asia", "europe"], got {sections!r}'
                )
        newsletter = _build(NewsletterSettings, given, f"newsletters.{name}", source, **defaults)
        _check_timezone(newsletter.timezone, f"{source}: newsletters.{name}.timezone")
        built[name] = newsletter
    return built


def _check_timezone(name: str, where: str) -> None:
    if not is_zone(name):
        raise ConfigError(f"{where}: unknown time zone {quoted(name)} (use an IANA name like Europe/London)")


def _check_networks(values: tuple[str, ...], where: str) -> None:
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not an IP address or network (e.g. 10.0.0.0/8)") from None


LINK_CHOICES = ("origin", "local")


def _sources(value: object, source: Path) -> tuple[SourceSettings, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{source}: sources must be written as [[sources]] tables")
    built = tuple(_build(SourceSettings, item, f"sources[{i}]", source) for i, item in enumerate(value))
    for i, item in enumerate(built):
        if item.link not in LINK_CHOICES:
            raise ConfigError(f'{source}: sources[{i}].link must be "origin" or "local", got {item.link!r}')
        if item.max_bytes < 1:
            raise ConfigError(f"{source}: sources[{i}].max_bytes must be at least 1, got {item.max_bytes}")
    return built


MIN_KEY_LENGTH = 32
_MIN_KEY_SYMBOLS = 10
_MIN_KEY_BITS_PER_CHAR = 3.0  # Shannon estimate; a random hex key has ~3.9, token_urlsafe ~5
_MIN_DISTINCT_4GRAMS = 0.8  # random keys: >0.93; "passwordpassword…" 0.36, "0123…f0123…f" 0.55


def _bits_per_char(key: str) -> float:
    counts = Counter(key)
    return -sum(n / len(key) * math.log2(n / len(key)) for n in counts.values())


def _repetitive(key: str) -> bool:
    grams = len(key) - 3
    return len({key[i : i + 4] for i in range(grams)}) / grams < _MIN_DISTINCT_4GRAMS


def _check_key(key: str, where: str) -> str:
    """A key someone could guess or brute-force signs links anyone could forge: refuse it."""
    short = len(key) < MIN_KEY_LENGTH or len(set(key)) < _MIN_KEY_SYMBOLS
    if short or _bits_per_char(key) < _MIN_KEY_BITS_PER_CHAR or _repetitive(key):
        raise ConfigError(
            f"{where}: a secret key must be at least {MIN_KEY_LENGTH} random characters "
            f"(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return key


def _secret_keys(base_dir: Path) -> tuple[str, ...]:
    """Signing keys, newest first: PUBLISHER_SECRET_KEY (comma-separated for rotation) or a key file."""
    from_env = os.environ.get("PUBLISHER_SECRET_KEY", "")
    if from_env.strip():
        keys = tuple(_check_key(key.strip(), "PUBLISHER_SECRET_KEY") for key in from_env.split(",") if key.strip())
        if not keys:
            raise ConfigError("PUBLISHER_SECRET_KEY holds no key, only commas and spaces")
        return keys
    key_file = base_dir / SECRET_KEY_FILE
    if not key_file.exists():
        _create_key_file(key_file)
    try:
        lines = key_file.read_text().splitlines()
    except OSError as error:
        raise ConfigError(f"cannot read the secret key file {key_file}: {error.strerror}") from None
    keys = tuple(_check_key(line.strip(), str(key_file)) for line in lines if line.strip())
    if not keys:
        raise ConfigError(f"the secret key file {key_file} is empty: delete it to have a key generated")
    return keys


def _create_key_file(key_file: Path) -> None:
    """Write a new key owner-only from the first byte, all at once: a private temporary file is
    hard-linked into place, so of several processes starting together one wins and the others
    read its key; nobody ever sees the file half-written or readable by others."""
    temporary = key_file.with_name(f"{key_file.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        with contextlib.suppress(FileExistsError):  # another process won: its key is the one
            os.link(temporary, key_file)
    except OSError as error:
        raise ConfigError(f"cannot create the secret key file {key_file}: {error.strerror}") from None
    finally:
        temporary.unlink(missing_ok=True)


_ENV_OVERRIDES = {
    "PUBLISHER_DATABASE_URL": ("database", "url"),
    "PUBLISHER_SITE_URL": ("site", "url"),
    "PUBLISHER_WEB_HOST": ("web", "host"),
    "PUBLISHER_WEB_PORT": ("web", "port"),
    "PUBLISHER_SMTP_HOST": ("delivery.smtp", "host"),
    "PUBLISHER_SMTP_PORT": ("delivery.smtp", "port"),
    "PUBLISHER_SMTP_USERNAME": ("delivery.smtp", "username"),
}


def _apply_environment(data: dict) -> dict:
    for variable, (section, key) in _ENV_OVERRIDES.items():
        if variable not in os.environ:
            continue
        value: object = os.environ[variable]
        if key == "port":
            if not str(value).isdigit():
                raise ConfigError(f"environment {variable}: expected a port number, got {value!r}")
            value = int(str(value))
        table = data
        for part in section.split("."):
            table = table.setdefault(part, {})
        table[key] = value
    return data


def resolve_path(path: Path | str, base_dir: Path) -> Path:
    """A path from the config (or the command line) taken relative to the config file's folder."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else base_dir / candidate


def _resolve_database_url(url: str, base_dir: Path) -> str:
    prefix = "sqlite:///"
    relative = url.startswith(prefix) and not url.startswith((prefix + "/", prefix + "file:"))  # file: is a URI
    if relative and ":memory:" not in url:
        return prefix + str(base_dir / url[len(prefix) :])
    return url


def _check_ranges(path: Path, web: WebSettings, scheduler: SchedulerSettings, delivery: DeliverySettings) -> None:
    """Values of the right type that still make no sense."""
    for key, port in (("web.port", web.port), ("delivery.smtp.port", delivery.smtp.port)):
        if not 1 <= port <= 65535:
            raise ConfigError(f"{path}: {key} must be a port number from 1 to 65535, got {port}")
    positive = {
        "scheduler.feeds_interval": scheduler.feeds_interval,
        "scheduler.poll_interval": scheduler.poll_interval,
        "scheduler.retry_interval": scheduler.retry_interval,
        "delivery.lease": delivery.lease,
        "delivery.retry_first": delivery.retry_first,
    }
    for key, value in positive.items():
        if value.total_seconds() < 1:
            raise ConfigError(f"{path}: {key} must be at least 1s, got {value}")
    if delivery.retry_max < delivery.retry_first:
        raise ConfigError(
            f"{path}: delivery.retry_max ({delivery.retry_max}) is shorter than "
            f"delivery.retry_first ({delivery.retry_first})"
        )
    for key, count in (
        ("delivery.batch_size", delivery.batch_size),
        ("delivery.smtp.connections", delivery.smtp.connections),
    ):
        if count < 1:
            raise ConfigError(f"{path}: {key} must be at least 1, got {count}")
    if delivery.smtp.per_domain_connections < 0:
        raise ConfigError(
            f"{path}: delivery.smtp.per_domain_connections must be 0 (no limit) or more, "
            f"got {delivery.smtp.per_domain_connections}"
        )


def _read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (create one with `publisher init`)") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None


def load_settings(path: Path | str | None = None, *, embedded: bool = False) -> Settings:
    """Load `path` (or $PUBLISHER_CONFIG, or ./config.toml). `embedded` uses built-in defaults."""
    path = Path(path or os.environ.get("PUBLISHER_CONFIG") or DEFAULT_CONFIG)
    data = {} if embedded else _read_toml(path)
    return settings_from_dict(_apply_environment(data), path)


def settings_from_dict(data: dict, path: Path) -> Settings:
    path = path.resolve()
    base_dir = path.parent
    known = {f.name for f in fields(Settings)} - {"path", "base_dir", "secret_keys"}
    for key in data:
        if key not in known:
            raise ConfigError(f"{path}: unknown section [{key}]; known sections: {', '.join(sorted(known))}")
    site = _build(SiteSettings, data.get("site", {}), "site", path)
    _check_timezone(site.timezone, f"{path}: site.timezone")
    if urlsplit(site.url).scheme not in ("http", "https") or not urlsplit(site.url).hostname:
        raise ConfigError(f"{path}: site.url must be an absolute http(s) URL, got {site.url!r}")
    if site.page_size < 1:
        raise ConfigError(f"{path}: site.page_size must be at least 1, got {site.page_size}")
    site = replace(
        site, url=site.url.rstrip("/"), export_dir=site.export_dir and resolve_path(site.export_dir, base_dir)
    )
    delivery = _build(DeliverySettings, data.get("delivery", {}), "delivery", path)
    password = os.environ.get("PUBLISHER_SMTP_PASSWORD", "")
    delivery = replace(
        delivery,
        maildir=resolve_path(delivery.maildir, base_dir),
        smtp=replace(delivery.smtp, password=password),
        dkim=replace(delivery.dkim, key_file=delivery.dkim.key_file and resolve_path(delivery.dkim.key_file, base_dir)),
    )
    database = _build(DatabaseSettings, data.get("database", {}), "database", path)
    feeds = _build(FeedSettings, data.get("feeds", {}), "feeds", path)
    if feeds.limit < 1:
        raise ConfigError(f"{path}: feeds.limit must be at least 1, got {feeds.limit}")
    web = _build(WebSettings, data.get("web", {}), "web", path)
    _check_networks(web.trusted_proxies, f"{path}: web.trusted_proxies")
    scheduler = _build(SchedulerSettings, data.get("scheduler", {}), "scheduler", path)
    _check_ranges(path, web, scheduler, delivery)
    templates = _build(TemplateSettings, data.get("templates", {}), "templates", path)
    archive = _build(ArchiveSettings, data.get("archive", {}), "archive", path)
    _check_return_path(path, delivery.return_path)
    inbound = _inbound(_build(InboundSettings, data.get("inbound", {}), "inbound", path), path)
    _check_intake(path, inbound, delivery)
    webhooks = _webhooks(_build(WebhookSettings, data.get("webhooks", {}), "webhooks", path), path)
    metrics = _metrics(_build(MetricsSettings, data.get("metrics", {}), "metrics", path), path)
    api = _build(ApiSettings, data.get("api", {}), "api", path)
    _check_origins(path, api.cors_origins)
    newsletters = _newsletters(data.get("newsletters", {}), path, site)
    topics = _topics(data.get("topics"), web.topics, path)
    for newsletter in newsletters.values():
        if newsletter.by_topic and not topics:
            raise ConfigError(
                f'{path}: newsletters.{newsletter.name}.sections = "topics" needs [[topics]] tables '
                "(name, label, tags) to make sections of"
            )
    return Settings(
        path=path,
        base_dir=base_dir,
        site=site,
        database=replace(database, url=_resolve_database_url(database.url, base_dir)),
        sources=_sources(data.get("sources", []), path),
        feeds=replace(feeds, dir=resolve_path(feeds.dir, base_dir)),
        delivery=delivery,
        newsletters=newsletters,
        web=web,
        scheduler=scheduler,
        templates=replace(templates, dir=templates.dir and resolve_path(templates.dir, base_dir)),
        archive=replace(archive, dir=resolve_path(archive.dir, base_dir)),
        inbound=inbound,
        webhooks=webhooks,
        topics=topics,
        tag_rules=_tag_rules(data.get("tag_rules", []), path),
        metrics=metrics,
        api=api,
        secret_keys=_secret_keys(base_dir),
    )


def _topics(value: object, old: tuple[str, ...], source: Path) -> tuple[TopicSettings, ...]:
    """`[[topics]]`, or the deprecated `[web] topics` (each topic then selects its own tag)."""
    if value is None:
        return tuple(TopicSettings(name=name, label=name, tags=(name,)) for name in old)
    if not isinstance(value, list):
        raise ConfigError(f"{source}: topics must be written as [[topics]] tables")
    if old:
        raise ConfigError(f"{source}: web.topics and [[topics]] are both set; keep [[topics]] only")
    built = []
    for i, item in enumerate(value):
        topic = _build(TopicSettings, item, f"topics[{i}]", source)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", topic.name):
            raise ConfigError(f"{source}: topics[{i}].name {topic.name!r} must be letters, digits, - or _")
        if not topic.tags:
            raise ConfigError(f"{source}: topics[{i}].tags must name at least one article tag")
        built.append(replace(topic, label=topic.label or topic.name))
    names = [topic.name for topic in built]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: topics: the name {Counter(names).most_common(1)[0][0]!r} is used twice")
    return tuple(built)


def _tag_rules(value: object, source: Path) -> tuple[TagRule, ...]:
    """`[[tag_rules]] tag match`: `match` is a list of words (any of them, whole words, any case)
    or a string holding a regular expression (searched case-insensitively)."""
    if not isinstance(value, list):
        raise ConfigError(f"{source}: tag_rules must be written as [[tag_rules]] tables")
    rules = []
    for i, item in enumerate(value):
        where = f"{source}: tag_rules[{i}]"
        if not isinstance(item, dict) or set(item) - {"tag", "match"}:
            raise ConfigError(f"{where}: expected a table with the keys tag and match")
        tag, match = item.get("tag"), item.get("match")
        written: str | tuple[str, ...]
        if not isinstance(tag, str) or not tag.strip():
            raise ConfigError(f"{where}.tag: expected a tag name, got {tag!r}")
        if isinstance(match, list) and match and all(isinstance(word, str) and word.strip() for word in match):
            words = "|".join(re.escape(word.strip()) for word in match)
            # not \b: a word may start or end with punctuation ("C++", ".NET")
            pattern, written = rf"(?<!\w)(?:{words})(?!\w)", tuple(match)
        elif isinstance(match, str) and match:
            pattern, written = match, match
        else:
            raise ConfigError(f"{where}.match: expected a list of words or a regular expression, got {match!r}")
        try:
            compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as error:
            raise ConfigError(f"{where}.match: not a regular expression: {error}") from None
        if nested_repeat(pattern):
            raise ConfigError(
                f"{where}.match: {quoted(pattern)} can take exponential time on some articles (it repeats "
                "something that repeats or has alternatives); rewrite it without nesting, or use a list of words"
            )
        rules.append(TagRule(tag.strip(), compiled, written))
    return tuple(rules)


def _check_return_path(path: Path, return_path: str) -> None:
    local, at, domain = return_path.rpartition("@")
    if return_path and (not at or not local or "." not in domain or "+" in local or len(local) > 20):
        raise ConfigError(
            f"{path}: delivery.return_path must be an address like bounces@example.org "
            f"(no '+', local part of at most 20 characters), got {return_path!r}"
        )


def _check_intake(path: Path, inbound: InboundSettings, delivery: DeliverySettings) -> None:
    """Receiving returned mail needs the bounce address it comes back to, and scoring needs sense."""
    for key, value in (("inbound.listen", inbound.listen), ("inbound.imap.host", inbound.imap.host)):
        if value and not delivery.return_path:
            raise ConfigError(
                f"{path}: {key} is set but delivery.return_path is not: set the bounce address, e.g. "
                f'return_path = "bounces@news.example.org", so that returned mail names whom it is about '
                "(and the listener takes mail for that domain only)"
            )
    if inbound.soft_bounce_half_life.total_seconds() < 1:
        raise ConfigError(
            f"{path}: inbound.soft_bounce_half_life must be greater than 0 (at least 1s), "
            f"got {inbound.soft_bounce_half_life}"
        )
    if delivery.soft_bounce_limit < 1:
        raise ConfigError(f"{path}: delivery.soft_bounce_limit must be at least 1, got {delivery.soft_bounce_limit}")


def _check_listen(path: Path, key: str, listen: str, example: str) -> None:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f'{path}: {key} must be HOST:PORT such as "{example}", got {listen!r}')


def _check_origins(path: Path, origins: tuple[str, ...]) -> None:
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
            raise ConfigError(
                f'{path}: api.cors_origins: {origin!r} is not an origin like "https://www.example.org" '
                "(scheme and host, optional port, no path)"
            )


def _metrics(metrics: MetricsSettings, path: Path) -> MetricsSettings:
    if metrics.listen:
        _check_listen(path, "metrics.listen", metrics.listen, "127.0.0.1:9464")
    token = _from_env(path, "metrics.token_env", metrics.token_env, web_only=True)
    if token and len(token) < 24:
        raise ConfigError(f"{path}: the metrics token in {metrics.token_env} is too short: use at least 24 characters")
    return replace(metrics, token=token)


def _inbound(inbound: InboundSettings, path: Path) -> InboundSettings:
    if inbound.listen:
        _check_listen(path, "inbound.listen", inbound.listen, "127.0.0.1:2526")
    imap = inbound.imap
    if imap.host and not imap.username:
        raise ConfigError(f"{path}: inbound.imap.username is required when inbound.imap.host is set")
    if imap.host and imap.security == "none" and not is_loopback(imap.host):
        raise ConfigError(
            f'{path}: inbound.imap.security = "none" sends the password in clear: allowed only to a loopback '
            f"host, not {imap.host!r} (use tls or starttls)"
        )
    if imap.interval.total_seconds() < 1:
        raise ConfigError(f"{path}: inbound.imap.interval must be at least 1s, got {imap.interval}")
    if not 1 <= imap.port <= 65535:
        raise ConfigError(f"{path}: inbound.imap.port must be a port number from 1 to 65535, got {imap.port}")
    return replace(inbound, imap=replace(imap, password=os.environ.get("PUBLISHER_IMAP_PASSWORD", "")))


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _from_env(path: Path, key: str, variable: str, *, web_only: bool = False) -> str:
    """The secret in environment variable `variable`. One only the web app uses may be unset here:
    `check_web_secrets` refuses it when the web app starts, so CLI commands run without it."""
    if not variable:
        return ""
    value = os.environ.get(variable, "")
    if not value and not web_only:
        raise ConfigError(f"{path}: {key} names the environment variable {variable}, which is not set")
    return value


def web_secrets(settings: Settings) -> list[tuple[str, str, str]]:
    """The web app's own secrets: (config key, environment variable, the value read)."""
    hooks = settings.webhooks
    return [
        ("metrics.token_env", settings.metrics.token_env, settings.metrics.token),
        ("webhooks.mailgun.signing_key_env", hooks.mailgun.signing_key_env, hooks.mailgun.signing_key),
        ("webhooks.sendgrid.public_key_env", hooks.sendgrid.public_key_env, hooks.sendgrid.public_key),
        ("webhooks.postmark.password_env", hooks.postmark.password_env, hooks.postmark.password),
    ]


def check_imap_password(settings: Settings) -> None:
    """Refuse to read `[inbound.imap]` without its password, before connecting rather than at login."""
    if settings.inbound.imap.host and not settings.inbound.imap.password:
        raise ConfigError(
            f"{settings.path}: inbound.imap.host is set but the environment variable PUBLISHER_IMAP_PASSWORD "
            "is not set or is empty (the password of inbound.imap.username)"
        )


MIN_MAILGUN_KEY = 16  # Mailgun's HTTP webhook signing keys are 32 or more characters


def check_web_secrets(settings: Settings) -> None:
    """Refuse to start the web app while a secret it needs names an unset environment variable."""
    for key, variable, value in web_secrets(settings):
        if variable and not value:
            raise ConfigError(f"{settings.path}: {key} names the environment variable {variable}, which is not set")


def _webhooks(webhooks: WebhookSettings, path: Path) -> WebhookSettings:
    mailgun, sendgrid, postmark, ses = webhooks.mailgun, webhooks.sendgrid, webhooks.postmark, webhooks.ses
    if bool(postmark.username) != bool(postmark.password_env):
        raise ConfigError(f"{path}: webhooks.postmark needs both username and password_env")
    signing_key = _from_env(path, "webhooks.mailgun.signing_key_env", mailgun.signing_key_env, web_only=True)
    if signing_key and len(signing_key.strip()) < MIN_MAILGUN_KEY:
        raise ConfigError(
            f"{path}: webhooks.mailgun.signing_key_env: the key in {mailgun.signing_key_env} is too short "
            f"({len(signing_key.strip())} characters): paste Mailgun's whole HTTP webhook signing key"
        )
    if ses.enabled and not ses.topic_arns:
        raise ConfigError(f"{path}: webhooks.ses.enabled needs webhooks.ses.topic_arns (the SNS topics to accept)")
    try:
        re.compile(ses.signing_cert_url_pattern)
    except re.error as error:
        raise ConfigError(
            f"{path}: webhooks.ses.signing_cert_url_pattern is not a regular expression: {error}"
        ) from None
    return replace(
        webhooks,
        mailgun=replace(mailgun, signing_key=signing_key),
        sendgrid=replace(
            sendgrid,
            public_key=_from_env(path, "webhooks.sendgrid.public_key_env", sendgrid.public_key_env, web_only=True),
        ),
        postmark=replace(
            postmark, password=_from_env(path, "webhooks.postmark.password_env", postmark.password_env, web_only=True)
        ),
    )


_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def settings_warnings(settings: Settings) -> list[str]:
    """Things that work here but will hurt in production; printed, never fatal."""
    warnings = []
    site = urlsplit(settings.site.url)
    if site.scheme != "https" and site.hostname not in _LOOPBACK:
        warnings.append(
            f"{settings.path}: site.url is {settings.site.url}; unsubscribe links in mail should be https "
            f"(Gmail and Yahoo require an https one-click List-Unsubscribe URL for bulk senders)"
        )
    return warnings


def deprecations(settings: Settings) -> list[str]:
    """Old forms that still load; printed whenever the config is read."""
    if not settings.web.topics:
        return []
    return [
        f"{settings.path}: web.topics is deprecated: write [[topics]] tables (name, label, tags); "
        f"until then each topic selects the articles tagged with its own name"
    ]


def documented_keys() -> list[str]:
    """Every dotted key a user may write, for the docs test."""
    keys: list[str] = []

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        skipped = _SPECIAL_KEYS if cls is Settings else {"name"}
        for spec in fields(cls):
            if spec.name in skipped or spec.name in _SECRET_FIELDS:
                continue
            if is_dataclass(hints[spec.name]):
                walk(hints[spec.name], f"{prefix}{_toml_key(spec.name)}.")
            else:
                keys.append(prefix + _toml_key(spec.name))

    walk(Settings, "")
    walk(SourceSettings, "sources.")
    walk(NewsletterSettings, "newsletters.<name>.")
    keys.remove("newsletters.<name>.by_topic")  # written as sections = "topics"
    return [*keys, "topics.name", "topics.label", "topics.tags", "tag_rules.tag", "tag_rules.match"]
