"""Subscribing on the web: double opt-in, confirmation, one-click unsubscribe, preferences.

Each function takes settings, the store and (where mail goes out) a `Mailer`, and decides what
happens; `web.py` only turns requests into these calls and results into pages.

- `subscribe` never says whether an address was known: the caller shows the same page for
  every outcome except a per-IP rate limit (`RateLimited`) and an invalid form.
- Confirmation links carry a nonce stored on the subscriber: a link works once, and a newer
  mail makes older links stale. At most one confirmation mail per address per hour.
- Unsubscribe tokens never expire; they name one subscriber and one newsletter.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.utils import parseaddr
from functools import cached_property
from typing import Any

import jinja2
from jinja2 import Environment

from publisher import i18n, tokens, verp
from publisher.config import Settings
from publisher.errors import PublisherError, RateLimited, SubscriberError, TemplateError, TokenError
from publisher.message import Signer, plain_message
from publisher.model import StoredSubscriber, Subscriber
from publisher.store import Store
from publisher.subscribers import check_newsletters, clean_name, clean_timezone, normalise_email
from publisher.templates import environment
from publisher.text import header_safe
from publisher.transports import Outgoing, SendResult, Transport, make_transport

log = logging.getLogger(__name__)

SOURCE = "web form"
RESUBSCRIBE_SOURCE = "web resubscribe"
# Bump when the sentence in `consent_sentence` changes; stored with every consent.
CONSENT_VERSION = "web-consent-1"
WINDOW = timedelta(hours=1)
PER_ADDRESS_PER_HOUR = 3  # form posts naming one address, from anywhere
CONFIRMATION_INTERVAL = timedelta(hours=1)  # at most one confirmation mail per address
PURGE_MARGIN = timedelta(days=1)  # an address never confirmed is forgotten this long after its link expired


@dataclass
class Mailer:
    """Sends the few mails of the web flows (confirmation, welcome): plain text, one at a time.

    Templates are `web/<kind>_mail.txt`: the first line is the subject, then a blank line, then
    the body. The transport is made on first use (or given, for tests) and shared by threads.
    """

    settings: Settings
    transport: Transport | None = None
    templates: Environment = field(init=False)
    lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    made: Transport | None = field(default=None, init=False)  # ours to close

    def __post_init__(self) -> None:
        self.templates = environment(self.settings)

    @cached_property
    def signer(self) -> Signer | None:
        """The DKIM key, read and parsed on the first mail (a bad key fails that mail, not start-up)."""
        return Signer.from_settings(self.settings.delivery.dkim)

    def sender(self, newsletters: Iterable[str]) -> str:
        """The From of the first newsletter asked for (or configured), else the site's own address."""
        chosen = [self.settings.newsletters[name] for name in newsletters if name in self.settings.newsletters]
        chosen = chosen or list(self.settings.newsletters.values())
        site = self.settings.site
        return chosen[0].from_ if chosen else str(Address(site.title, "newsletter", site.domain))

    def envelope(self, newsletters: Iterable[str], subscriber_id: int) -> str:
        """The envelope sender: with `[delivery] return_path`, a VERP address naming the subscriber
        (no issue), so a bounce of this mail is read and suppresses the address; else the From address."""
        return_path = self.settings.delivery.return_path
        if return_path:
            return verp.address(return_path, verp.make_token(self.settings.secret_keys, verp.NO_ISSUE, subscriber_id))
        return parseaddr(header_safe(self.sender(newsletters)))[1]

    def build(self, kind: str, recipient: str, newsletters: Iterable[str], now: datetime, **context: Any) -> bytes:
        """The mail of `kind`, built and DKIM-signed by `publisher.message` like every mail we send."""
        name = f"web/{kind}_mail.txt"
        try:
            text = self.templates.get_template(name).render(site=self.settings.site, **context)
        except jinja2.TemplateError as error:
            raise TemplateError(f"template {name}: {error}") from None
        subject, _, body = text.partition("\n\n")
        return plain_message(
            sender=self.sender(newsletters),
            recipient=recipient,
            subject=subject,
            body=body.lstrip("\n"),
            domain=self.settings.site.domain,
            date=now,
            signer=self.signer,
            extra_headers=(("Auto-Submitted", "auto-generated"),),
        )

    def send(
        self,
        kind: str,
        recipient: str,
        newsletters: Iterable[str],
        *,
        subscriber_id: int,
        now: datetime,
        **context: Any,
    ) -> SendResult:
        newsletters = tuple(newsletters)
        data = self.build(kind, recipient, newsletters, now, **context)
        envelope = self.envelope(newsletters, subscriber_id)
        with self.lock:
            if self.transport is None:
                self.transport = self.made = make_transport(self.settings.delivery)
            return self.transport.send(Outgoing(envelope, recipient, data))

    def close(self) -> None:
        with self.lock:
            if self.made is not None:
                self.made.close()
                self.transport = self.made = None


@dataclass(frozen=True)
class SignUp:
    """A checked subscription form."""

    email: str
    name: str = ""
    newsletters: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    timezone: str = ""  # guessed by the visitor's browser; "" when it could not tell


def human_duration(delta: timedelta, language: str = "en") -> str:
    """ "2 days", "36 hours", "90 minutes" ("2 jours" in French): for pages and mails."""
    seconds = int(delta.total_seconds())
    units = (("day", 86400), ("hour", 3600))
    unit, size = next(((u, n) for u, n in units if seconds >= n and seconds % n == 0), ("minute", 60))
    count = max(1, round(seconds / size))
    ngettext = i18n.translations(language).ngettext
    words = {
        "day": ngettext("%(num)d day", "%(num)d days", count),
        "hour": ngettext("%(num)d hour", "%(num)d hours", count),
        "minute": ngettext("%(num)d minute", "%(num)d minutes", count),
    }
    return words[unit] % {"num": count}


def clean_topics(topics: Iterable[str], settings: Settings) -> tuple[str, ...]:
    """The chosen topics the operator offers, in the operator's order; others are dropped."""
    chosen = set(topics)
    return tuple(topic.name for topic in settings.topics if topic.name in chosen)


def guessed_timezone(zone: str) -> str:
    """A time zone the browser reported, or "" when it is not one we know (a guess is never an error)."""
    try:
        return clean_timezone(zone[:64])
    except SubscriberError:
        return ""


def read_signup(
    settings: Settings,
    email: str,
    name: str,
    newsletters: Iterable[str],
    topics: Iterable[str],
    timezone: str = "",
    *,
    all_by_default: bool = False,
    list_known: bool = True,
) -> SignUp:
    """Check a posted form; SubscriberError says what to fix. No newsletter named means the only
    one, or (`all_by_default`, the API) every configured one, as the consent sentence says."""
    newsletters = tuple(newsletters)
    if (len(settings.newsletters) == 1 or all_by_default) and not newsletters:
        newsletters = tuple(settings.newsletters)
    names = check_newsletters(newsletters, settings.newsletters, list_known=list_known)
    if settings.newsletters and not names:
        raise SubscriberError("choose at least one newsletter")
    return SignUp(
        normalise_email(email), clean_name(name), names, clean_topics(topics, settings), guessed_timezone(timezone)
    )


def consent_sentence(settings: Settings, newsletters: Iterable[str]) -> str:
    """What the subscriber agrees to, shown on the form and stored (with its version) on
    confirmation, in `site.language`: the words the reader saw are the words recorded."""
    _ = i18n.translations(settings.site.language).gettext
    titles = [settings.newsletters[name].title for name in newsletters if name in settings.newsletters]
    what = ", ".join(titles) if titles else _("the %(site)s newsletter") % {"site": settings.site.title}
    return _("I agree to receive %(what)s by email from %(site)s. Every email has a link to unsubscribe at once.") % {
        "what": what,
        "site": settings.site.title,
    }


def consent_record(settings: Settings, newsletters: Iterable[str]) -> str:
    return f"{CONSENT_VERSION}: {consent_sentence(settings, newsletters)}"


def count_request(settings: Settings, store: Store, ip: str, now: datetime) -> None:
    """Count one subscription request from `ip`; RateLimited past `[web] subscribe_per_ip_per_hour`."""
    if not store.web_events.hit("subscribe-ip", ip, now, window=WINDOW, limit=settings.web.subscribe_per_ip_per_hour):
        raise RateLimited("too many subscription requests from your network: please try again in an hour", WINDOW)


def subscribe(
    settings: Settings,
    store: Store,
    mailer: Mailer,
    signup: SignUp,
    *,
    ip: str,
    now: datetime,
    honeypot: str = "",
    counted: bool = False,
) -> str:
    """Handle one subscription request; returns what happened, for the log only.

    The outcome ("sent", "honeypot", "address-limit", "already-sent", "not-sent", "suppressed":
    a bounced address is sent nothing) must not be
    shown to the visitor: every one of them gets the same "check your inbox" page. `counted`:
    the caller already counted the request against the IP's limit (`count_request`).
    """
    if not counted:
        count_request(settings, store, ip, now)
    if honeypot.strip():
        return "honeypot"
    if not store.web_events.hit("subscribe-address", signup.email, now, window=WINDOW, limit=PER_ADDRESS_PER_HOUR):
        return "address-limit"
    if purged := store.subscribers.purge_unconfirmed(SOURCE, now - settings.web.confirm_expiry - PURGE_MARGIN):
        log.info("forgot %d address(es) never confirmed", purged)
    person = _pending_or_existing(store, signup, now)
    if person.status == "bounced":  # a dead address: no mail to it; `subscribers unsuppress` is the way back
        log.info("no confirmation mail to subscriber %s: the address is suppressed (bounced)", person.id)
        return "suppressed"
    return ask_to_confirm(settings, store, mailer, person, signup, now)


def ask_to_confirm(
    settings: Settings, store: Store, mailer: Mailer, person: StoredSubscriber, signup: SignUp, now: datetime
) -> str:
    """Mail `person` a link that confirms `signup` (at most one per CONFIRMATION_INTERVAL); returns
    "sent", "already-sent" or "not-sent", for the log only."""
    nonce = secrets.token_urlsafe(16)
    if not store.subscribers.claim_confirmation(person.id, nonce, now, not_since=now - CONFIRMATION_INTERVAL):
        return "already-sent"
    payload = {"s": person.id, "n": nonce, "l": list(signup.newsletters), "t": list(signup.topics), "m": signup.name}
    if signup.timezone:
        payload["z"] = signup.timezone
    url = tokens.confirm_url(settings.site.url, settings.secret_keys, payload)
    try:
        result = mailer.send(
            "confirm",
            person.email,
            signup.newsletters,
            subscriber_id=person.id,
            now=now,
            confirm_url=url,
            expiry=human_duration(settings.web.confirm_expiry, settings.site.language),
            titles=_titles(settings, signup.newsletters),
        )
    except PublisherError as error:  # a misconfigured transport: the operator's log, not the visitor's page
        log.error("confirmation mail to subscriber %s not sent: %s", person.id, error)
        result = SendResult("failed", detail=str(error))
    if result.outcome != "delivered":
        store.subscribers.release_confirmation(person.id, nonce)
        log.warning("confirmation mail to subscriber %s not sent: %s %s", person.id, result.code, result.detail)
        return "not-sent"
    return "sent"


def _pending_or_existing(store: Store, signup: SignUp, now: datetime) -> StoredSubscriber:
    """The subscriber for an address, created pending with nothing attached if it is new.

    What the form asked for (newsletters, topics, name) travels only in the signed confirmation
    link, so a stranger posting the form cannot add newsletters or a name to someone's address:
    only the link its owner opens applies them.
    """
    person = store.subscribers.get(signup.email)
    if person is None:
        store.subscribers.add(Subscriber(email=signup.email, status="pending", source=SOURCE), now)
        person = store.subscribers.get(signup.email)
    if person is None:
        raise SubscriberError(f"{signup.email} was removed while subscribing: please try again")
    return person


def _titles(settings: Settings, names: Iterable[str]) -> list[str]:
    return [settings.newsletters[name].title for name in names if name in settings.newsletters]


@dataclass(frozen=True)
class Confirmation:
    """What a valid confirmation link asks for."""

    subscriber: StoredSubscriber
    nonce: str
    newsletters: tuple[str, ...]
    topics: tuple[str, ...]
    name: str
    timezone: str = ""


USED = "this link has already been used, or a newer one was sent: use the newest email, or subscribe again"


def read_confirmation(settings: Settings, store: Store, token: str) -> Confirmation:
    """Check a confirmation link without using it (for the page with the button)."""
    signed = tokens.verify_timed(settings.secret_keys, tokens.CONFIRM, token, settings.web.confirm_expiry)
    payload = signed if isinstance(signed, dict) else {}
    try:
        subscriber_id, nonce = int(payload["s"]), str(payload["n"])
        newsletters = tuple(name for name in payload["l"] if name in settings.newsletters)
        topics, name = clean_topics(payload["t"], settings), clean_name(str(payload["m"]))
        timezone = guessed_timezone(str(payload.get("z", "")))
    except (TypeError, KeyError, ValueError):
        raise TokenError("this link is not valid: it may have been altered or cut short") from None
    person = store.subscribers.get_by_id(subscriber_id)
    if person is None or not store.subscribers.has_nonce(subscriber_id, nonce):
        raise TokenError(USED)
    return Confirmation(person, nonce, newsletters, topics, name, timezone)


LIFTED_BY_CONFIRMING = "re-subscribed by confirming a sign-up"
LIFTED_BY_RESUBSCRIBING = "re-subscribed from the unsubscribe page"
LIFTED_BY_PREFERENCES = "re-subscribed on the preferences page"


def confirm(settings: Settings, store: Store, mailer: Mailer, token: str, now: datetime) -> Confirmation:
    """Use a confirmation link: confirm the subscriber, record consent, then send the welcome mail.

    The owner's own confirmation is new consent: a suppression (a complaint, say) is lifted, and
    someone who was not confirmed gets exactly the newsletters this sign-up chose, nothing older.
    """
    wanted = read_confirmation(settings, store, token)
    person = wanted.subscriber
    values: dict = {
        "status": "confirmed",
        "consent_at": now,
        "source": SOURCE,
        "bounce_count": 0,
        "consent_text": consent_record(settings, wanted.newsletters),
        "topics": tuple(dict.fromkeys(person.topics + wanted.topics)),
    }
    if wanted.name:
        values["name"] = wanted.name
    if wanted.timezone and not person.timezone:  # a zone the reader set on the preferences page stays
        values["timezone"] = wanted.timezone
    consumed = store.subscribers.consume_nonce(
        person.id,
        wanted.nonce,
        now,
        newsletters=wanted.newsletters,
        exactly=person.status != "confirmed",
        lift_reason=LIFTED_BY_CONFIRMING,
        **values,
    )
    if not consumed:
        raise TokenError(USED)
    if settings.web.welcome:
        _welcome(settings, mailer, person, wanted.newsletters, now)
    return wanted


def _welcome(
    settings: Settings, mailer: Mailer, person: StoredSubscriber, newsletters: tuple[str, ...], now: datetime
) -> None:
    keys, site = settings.secret_keys, settings.site.url
    unsubscribe = [
        (settings.newsletters[name].title, tokens.unsubscribe_url(site, keys, person.id, name)) for name in newsletters
    ]
    try:
        result = mailer.send(
            "welcome",
            person.email,
            newsletters,
            subscriber_id=person.id,
            now=now,
            unsubscribe=unsubscribe,
            titles=_titles(settings, newsletters),
            preferences_url=tokens.preferences_url(site, keys, person.id),
        )
    except PublisherError as error:  # the subscription stands; only the courtesy mail is lost
        result = SendResult("failed", detail=str(error))
    if result.outcome != "delivered":
        log.warning("welcome mail to subscriber %s not sent: %s %s", person.id, result.code, result.detail)


@dataclass(frozen=True)
class Unsubscribe:
    """What an unsubscribe link names; `subscriber` is None when the address is gone."""

    subscriber: StoredSubscriber | None
    newsletter: str
    title: str


def read_unsubscribe(settings: Settings, store: Store, token: str) -> Unsubscribe:
    payload = tokens.verify(settings.secret_keys, tokens.UNSUBSCRIBE, token)
    try:
        subscriber_id, newsletter = payload if isinstance(payload, list) else []
        subscriber_id, newsletter = int(subscriber_id), str(newsletter)
    except (TypeError, ValueError):
        raise TokenError("this link is not valid: it may have been altered or cut short") from None
    known = settings.newsletters.get(newsletter)
    title = known.title if known else newsletter
    return Unsubscribe(store.subscribers.get_by_id(subscriber_id), newsletter, title)


def unsubscribe(settings: Settings, store: Store, token: str, now: datetime) -> Unsubscribe:
    """Leave the newsletter the link names; with none left, the subscriber is unsubscribed. Idempotent."""
    found = read_unsubscribe(settings, store, token)
    person = found.subscriber
    if person is None:
        return found
    store.subscribers.remove_newsletter(person.id, found.newsletter, now)
    remaining = set(person.newsletters) - {found.newsletter}
    if not remaining and person.status in ("pending", "confirmed"):
        store.subscribers.update(person.id, now, status="unsubscribed")
    log.info("subscriber %s unsubscribed from %s", person.id, found.newsletter)
    return found


def resubscribe(settings: Settings, store: Store, token: str, now: datetime) -> Unsubscribe:
    """Undo an unsubscribe from the page that confirmed it (the link proves the mailbox): the
    owner's own choice, so a complaint's suppression is lifted."""
    found = read_unsubscribe(settings, store, token)
    person = found.subscriber
    if person is None or person.status == "bounced" or found.newsletter not in settings.newsletters:
        raise SubscriberError("this subscription cannot be restored here: please subscribe again")
    store.subscribers.add_newsletters(person.id, [found.newsletter], now)
    if person.status == "unsubscribed":
        store.subscribers.update(
            person.id,
            now,
            status="confirmed",
            consent_at=now,
            source=RESUBSCRIBE_SOURCE,
            consent_text=consent_record(settings, [found.newsletter]),
        )
        store.subscribers.lift(person.id, LIFTED_BY_RESUBSCRIBING, now)
    return found


def read_preferences(settings: Settings, store: Store, token: str) -> StoredSubscriber:
    subscriber_id = tokens.verify(settings.secret_keys, tokens.PREFERENCES, token)
    person = store.subscribers.get_by_id(subscriber_id) if isinstance(subscriber_id, int) else None
    if person is None:
        raise TokenError("this link belongs to an address that is no longer subscribed")
    return person


def save_preferences(
    settings: Settings,
    store: Store,
    token: str,
    *,
    name: str,
    newsletters: Iterable[str],
    topics: Iterable[str],
    now: datetime,
    timezone: str | None = None,
) -> StoredSubscriber:
    """Set name, newsletters, topics and (given) time zone. No newsletters left means unsubscribed; choosing one again
    after unsubscribing re-activates (the link proves the mailbox, and a complaint's suppression is
    lifted). Bounced stays bounced."""
    person = read_preferences(settings, store, token)
    names = check_newsletters(newsletters, settings.newsletters)
    values: dict = {"name": clean_name(name), "topics": clean_topics(topics, settings)}
    if timezone is not None and (zone := clean_timezone(timezone, "time zone")):
        values["timezone"] = zone  # an empty choice keeps the zone the reader has
    if not names and person.status == "confirmed":
        values["status"] = "unsubscribed"
    elif names and person.status == "unsubscribed":
        values.update(
            status="confirmed", consent_at=now, source=RESUBSCRIBE_SOURCE, consent_text=consent_record(settings, names)
        )
    store.subscribers.set_newsletters(person.id, names, now)
    store.subscribers.update(person.id, now, **values)
    if values.get("status") == "confirmed":
        store.subscribers.lift(person.id, LIFTED_BY_PREFERENCES, now)
    return read_preferences(settings, store, token)
