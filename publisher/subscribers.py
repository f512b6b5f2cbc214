"""Subscriber lists: address checks, CSV import and export."""

from __future__ import annotations

import csv
import functools
import io
import re
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from publisher.errors import SubscriberError
from publisher.model import Subscriber
from publisher.text import header_safe, quoted
from publisher.zones import is_zone

CSV_HEADER = ("email", "name", "newsletters")
MAX_NAME = 200
# Plain ASCII addresses that email-validator accepts, checked in a microsecond rather than ~100:
# a dot-atom local part, LDH labels without "--" (so no IDNA to check) and a letters-only TLD.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"(?!\w*--)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PLAIN = re.compile(rf"(?P<local>{_ATEXT}(?:\.{_ATEXT})*)@(?P<domain>(?:{_LABEL}\.)+[A-Za-z]{{2,63}})")
_SPECIAL = frozenset(SPECIAL_USE_DOMAIN_NAMES)


def normalise_email(address: str, where: str = "") -> str:
    """A syntactically valid address, lower-cased, its domain in ASCII (IDNA); no DNS lookups.

    Local parts must be ASCII: sending to them needs SMTPUTF8, which many relays lack, and a
    refusal would count as a bounce.
    """
    address = address.strip()
    plain = _PLAIN.fullmatch(address)
    ordinary = plain is not None and plain["domain"].rpartition(".")[2].lower() not in _SPECIAL  # one label
    if plain is not None and ordinary and len(plain["local"]) <= 64 and len(address) <= 254:
        return address.lower()
    prefix = f"{where}: " if where else ""
    try:
        checked = validate_email(address.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as error:
        raise SubscriberError(f"{prefix}{address.strip()!r} is not a valid email address: {error}") from None
    return (checked.ascii_email or checked.normalized).lower()


def suppressed_hint(email: str) -> str:
    """What to say when someone tries to add back an address that bounced or complained."""
    return (
        f"{email} is suppressed (it bounced or complained), so it was left unchanged: "
        f"`publisher subscribers unsuppress {email} --reason …` restores it"
    )


def clean_name(name: str, where: str = "") -> str:
    """A display name safe for headers, of a sensible length."""
    name = header_safe(name)
    if len(name) > MAX_NAME:
        prefix = f"{where}: " if where else ""
        raise SubscriberError(f"{prefix}name is {len(name)} characters long; at most {MAX_NAME} are allowed")
    return name


@functools.cache
def _zone_names() -> dict[str, str]:
    """Every IANA zone name by its case-folded spelling."""
    return {name.casefold(): name for name in zoneinfo.available_timezones()}


def clean_timezone(zone: str, where: str = "") -> str:
    """An IANA time zone name ("" for none: the newsletter's own zone is used)."""
    zone = zone.strip()
    if not zone:
        return ""
    zone = _zone_names().get(zone.casefold(), zone)  # europe/london → Europe/London
    if not is_zone(zone):
        prefix = f"{where}: " if where else ""
        raise SubscriberError(f"{prefix}unknown time zone {quoted(zone)} (use an IANA name like Europe/London)")
    return zone


def check_topics(names: Iterable[str], known: Mapping[str, str] | Iterable[str], where: str = "") -> tuple[str, ...]:
    """The configured topic names `names` stand for, in the config's order: each given as a
    topic's name or label, in any case ("Asia", "asie"); an unknown one is an error naming it.
    `known`: each [[topics]] name with its label (or only the names)."""
    known = known if isinstance(known, Mapping) else dict.fromkeys(known, "")
    by_word = {label.casefold(): name for name, label in known.items() if label}
    by_word.update({name.casefold(): name for name in known})
    given = [name.strip() for name in names if name.strip()]
    unknown = [name for name in given if name.casefold() not in by_word]
    if unknown:
        prefix = f"{where}: " if where else ""
        listed = ", ".join(known) or "none configured"
        raise SubscriberError(f"{prefix}unknown topic {', '.join(unknown)} ([[topics]]: {listed})")
    wanted = {by_word[name.casefold()] for name in given}
    return tuple(name for name in known if name in wanted)


def check_newsletters(
    names: Iterable[str], known: Iterable[str], where: str = "", *, list_known: bool = True
) -> tuple[str, ...]:
    """The names, deduplicated; SubscriberError names the unknown ones (and, with `list_known`, the
    configured ones: not on an endpoint anyone may call)."""
    known = set(known)
    names = tuple(dict.fromkeys(name for name in names if name))
    unknown = [name for name in names if name not in known]
    if unknown:
        prefix = f"{where}: " if where else ""
        listed = f" (configured: {', '.join(sorted(known)) or 'none configured'})" if list_known else ""
        raise SubscriberError(f"{prefix}unknown newsletter {', '.join(unknown)}{listed}")
    return names


def make_subscriber(
    email: str,
    name: str,
    newsletters: Iterable[str],
    *,
    known: Iterable[str],
    confirmed: bool,
    source: str,
    now: datetime,
    where: str = "",
) -> Subscriber:
    return Subscriber(
        email=normalise_email(email, where),
        name=clean_name(name, where),
        status="confirmed" if confirmed else "pending",
        newsletters=check_newsletters(newsletters, known, where),
        source=source,
        consent_at=now if confirmed else None,
    )


@dataclass
class CsvImport:
    subscribers: list[Subscriber] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def parse_csv(
    path: Path, *, known: Iterable[str], confirmed: bool, now: datetime, default_newsletters: tuple[str, ...] = ()
) -> CsvImport:
    """Read `email,name,newsletters` rows; bad rows are reported by line number, good rows kept."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise SubscriberError(f"{path}: cannot read as UTF-8 text: {error}") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    if "email" not in header:
        raise SubscriberError(f"{path}:1: the header row must name the columns email,name,newsletters")
    reader.fieldnames = header
    result = CsvImport()
    for row in reader:
        where = f"{path}:{reader.line_num}"
        names = (row.get("newsletters") or "").split() or list(default_newsletters)
        try:
            result.subscribers.append(
                make_subscriber(
                    row.get("email") or "",
                    row.get("name") or "",
                    names,
                    known=known,
                    confirmed=confirmed,
                    source=f"import:{path.name}",
                    now=now,
                    where=where,
                )
            )
        except SubscriberError as error:
            result.errors.append(str(error))
    return result


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str) -> str:
    """A cell a spreadsheet shows as text: one that would start a formula gets a leading `'` (OWASP)."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def to_csv(people: Iterable[Subscriber]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow((*CSV_HEADER, "status", "consent_at", "source", "topics", "timezone"))
    for person in people:
        row = [
            person.email,
            person.name,
            " ".join(person.newsletters),
            person.status,
            person.consent_at.isoformat() if person.consent_at else "",
            person.source,
            " ".join(person.topics),
            person.timezone,
        ]
        writer.writerow([_cell(value) for value in row])
    return out.getvalue()


def subscriber_json(person: Subscriber) -> dict:
    return {
        "email": person.email,
        "name": person.name,
        "status": person.status,
        "newsletters": list(person.newsletters),
        "topics": list(person.topics),
        "timezone": person.timezone,
        "source": person.source,
        "consent_at": person.consent_at.isoformat() if person.consent_at else None,
        "created_at": person.created_at.isoformat() if person.created_at else None,
        "bounce_count": person.bounce_count,
    }
