"""Signed tokens for links in mail and on pages (itsdangerous), one salt per purpose.

Keys come newest first from settings (`secret_keys`): tokens are signed with the newest and
accepted under any, so a key can be rotated without breaking links already sent.
"""

from __future__ import annotations

import hmac
from datetime import timedelta
from functools import lru_cache

from itsdangerous import (
    BadSignature,
    SignatureExpired,
    URLSafeSerializer,
    URLSafeTimedSerializer,
    base64_encode,
)
from itsdangerous.signer import HMACAlgorithm

from publisher.errors import PublisherError, TokenError

CONFIRM = "publisher.confirm"
UNSUBSCRIBE = "publisher.unsubscribe"
PREFERENCES = "publisher.preferences"
CSRF = "publisher.csrf"


def _keys(secret_keys: tuple[str, ...]) -> list[str]:
    if not secret_keys:
        raise PublisherError("no secret key: set PUBLISHER_SECRET_KEY or let publisher create its key file")
    # itsdangerous signs with the last key and verifies with all of them.
    return list(reversed(secret_keys))


@lru_cache(maxsize=32)
def _serializer(secret_keys: tuple[str, ...], purpose: str) -> URLSafeSerializer:
    """One serializer per keys and purpose, made once."""
    return URLSafeSerializer(_keys(secret_keys), salt=purpose)


class _FastSigner:
    """Signs exactly like `_serializer(...).dumps`, with the HMAC keyed once: a send signs two
    links per reader. Checked against itsdangerous when made; where it differs, itsdangerous signs."""

    def __init__(self, secret_keys: tuple[str, ...], purpose: str) -> None:
        self.serializer = _serializer(secret_keys, purpose)
        signer = self.serializer.make_signer()
        self.sep = signer.sep
        algorithm = signer.algorithm
        self.mac = (
            hmac.new(signer.derive_key(), digestmod=algorithm.digest_method)
            if isinstance(algorithm, HMACAlgorithm)
            else None
        )
        if self.mac is not None and self._dumps([1, purpose]) != self.serializer.dumps([1, purpose]):
            self.mac = None

    def _dumps(self, payload: object) -> str:
        assert self.mac is not None  # noqa: S101 - only called when keyed
        value = self.serializer.dump_payload(payload)
        mac = self.mac.copy()
        mac.update(value)
        return (value + self.sep + base64_encode(mac.digest())).decode("ascii")

    def dumps(self, payload: object) -> str:
        return self._dumps(payload) if self.mac is not None else self.serializer.dumps(payload)


@lru_cache(maxsize=32)
def _signer(secret_keys: tuple[str, ...], purpose: str) -> _FastSigner:
    return _FastSigner(secret_keys, purpose)


def sign(secret_keys: tuple[str, ...], purpose: str, payload: object) -> str:
    """A token that never expires (unsubscribe and preferences links must keep working)."""
    return _signer(secret_keys, purpose).dumps(payload)


def verify(secret_keys: tuple[str, ...], purpose: str, token: str) -> object:
    try:
        return _serializer(secret_keys, purpose).loads(token)
    except BadSignature:
        raise TokenError("this link is not valid: it may have been altered or cut short") from None


def sign_timed(secret_keys: tuple[str, ...], purpose: str, payload: object) -> str:
    return URLSafeTimedSerializer(_keys(secret_keys), salt=purpose).dumps(payload)


def verify_timed(secret_keys: tuple[str, ...], purpose: str, token: str, max_age: timedelta) -> object:
    try:
        return URLSafeTimedSerializer(_keys(secret_keys), salt=purpose).loads(
            token, max_age=int(max_age.total_seconds())
        )
    except SignatureExpired:
        raise TokenError("this link has expired: please ask for a new one") from None
    except BadSignature:
        raise TokenError("this link is not valid: it may have been altered or cut short") from None


def unsubscribe_url(site_url: str, secret_keys: tuple[str, ...], subscriber_id: int, newsletter: str) -> str:
    """The one-click (RFC 8058) and human unsubscribe URL for one subscriber and newsletter."""
    return f"{site_url}/unsubscribe/{sign(secret_keys, UNSUBSCRIBE, [subscriber_id, newsletter])}"


def preferences_url(site_url: str, secret_keys: tuple[str, ...], subscriber_id: int) -> str:
    return f"{site_url}/preferences/{sign(secret_keys, PREFERENCES, subscriber_id)}"


def confirm_url(site_url: str, secret_keys: tuple[str, ...], payload: dict) -> str:
    """The double opt-in link: timed (checked against `[web] confirm_expiry`), single use by its nonce."""
    return f"{site_url}/confirm/{sign_timed(secret_keys, CONFIRM, payload)}"


def csrf_token(secret_keys: tuple[str, ...], scope: str) -> str:
    """A stateless anti-forgery token for one form (`scope` names the form and the subscriber)."""
    return sign_timed(secret_keys, CSRF, scope)


def check_csrf(secret_keys: tuple[str, ...], token: str, scope: str, max_age: timedelta) -> None:
    """Raise TokenError unless `token` came from our own form for `scope`, within `max_age`."""
    try:
        found = verify_timed(secret_keys, CSRF, token, max_age)
    except TokenError:
        raise TokenError(
            "this form has expired or did not come from this site: please reload the page and try again"
        ) from None
    if found != scope:
        raise TokenError("this form did not come from this page: please reload it and try again")
