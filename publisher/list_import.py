"""Bringing a list in: recognise another service's CSV export and map its rows to subscribers.

Pure: a header row gives a `Plan` (which service exported the file, which column feeds which
field, where newsletters come from); `read_rows` streams the file through `csv` and yields one
`Subscriber` (or one error naming file:line) per row, so memory does not grow with the file.

An export's opt-in or confirmation time becomes the consent time (with `--confirmed`), its
source is recorded as `import:<service>`, and rows the old service had unsubscribed, cleaned or
blocklisted come in as `unsubscribed` or `bounced` (suppressed), never as subscribers.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import re
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, TextIO, TypeVar

from publisher.errors import SubscriberError
from publisher.model import Subscriber
from publisher.store.inbound import Suppression
from publisher.subscribers import check_newsletters, check_topics, clean_name, clean_timezone, normalise_email

FIELDS = (
    "email",
    "name",
    "first_name",
    "last_name",
    "newsletters",
    "tags",
    "topics",
    "timezone",
    "optin_at",
    "confirmed_at",
)

# What a row of the old service is; `row_state` functions return one of these.
SUBSCRIBED, PENDING, UNSUBSCRIBED, SUPPRESSED = "subscribed", "pending", "unsubscribed", "suppressed"

Row = Mapping[str, str]  # lower-cased column name → cell
T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("true", "t", "yes", "y", "1")


def _always_subscribed(header: frozenset[str]) -> Callable[[Row], str]:
    return lambda row: SUBSCRIBED


def _publisher_state(header: frozenset[str]) -> Callable[[Row], str]:
    """Our own export: its status column, when there is one."""
    states = {"unsubscribed": UNSUBSCRIBED, "bounced": SUPPRESSED, "pending": PENDING}
    return lambda row: states.get((row.get("status") or "").strip().lower(), SUBSCRIBED)


def _mailchimp_file_state(header: frozenset[str]) -> str:
    """Mailchimp exports one file per audience state: the unsubscribed and cleaned files add columns."""
    return SUPPRESSED if "clean_time" in header else UNSUBSCRIBED if "unsub_time" in header else ""


def _mailchimp_state(header: frozenset[str]) -> Callable[[Row], str]:
    state = _mailchimp_file_state(header) or SUBSCRIBED
    return lambda row: state


def _substack_state(header: frozenset[str]) -> Callable[[Row], str]:
    return lambda row: UNSUBSCRIBED if _truthy(row.get("email_disabled", "")) else SUBSCRIBED


BUTTONDOWN_STATES = {
    "unactivated": PENDING,  # never confirmed their double opt-in
    "unsubscribed": UNSUBSCRIBED,
    "removed": UNSUBSCRIBED,
    "undeliverable": SUPPRESSED,
    "spammy": SUPPRESSED,
    "complained": SUPPRESSED,
    "blocked": SUPPRESSED,
}


def _buttondown_state(header: frozenset[str]) -> Callable[[Row], str]:
    return lambda row: BUTTONDOWN_STATES.get((row.get("subscriber_type") or "").strip().lower(), SUBSCRIBED)


def _listmonk_state(header: frozenset[str]) -> Callable[[Row], str]:
    states = {"blocklisted": SUPPRESSED, "disabled": UNSUBSCRIBED}
    return lambda row: states.get((row.get("status") or "").strip().lower(), SUBSCRIBED)


@dataclass(frozen=True)
class ExportFormat:
    """One service's export: the columns that identify it, what they mean, and its row states."""

    name: str
    label: str
    identify: frozenset[str]  # every one of these (lower-cased) columns is in the header
    columns: Mapping[str, str]  # lower-cased column → field
    row_state: Callable[[frozenset[str]], Callable[[Row], str]]
    state_columns: tuple[str, ...] = ()  # read by row_state: unsubscribed, cleaned, blocklisted…
    file_state: Callable[[frozenset[str]], str] = lambda header: ""  # the state every row has, if one
    suppressed_at: str = ""  # the column holding when the old service suppressed a row
    lenient: frozenset[str] = frozenset()  # fields whose bad values are dropped, not the row rejected


FORMATS = (
    ExportFormat(
        "mailchimp",
        "Mailchimp audience export",
        frozenset({"email address"}),
        {
            "email address": "email",
            "first name": "first_name",
            "last name": "last_name",
            "optin_time": "optin_at",
            "confirm_time": "confirmed_at",
            "tags": "tags",
            "timezone": "timezone",
        },
        _mailchimp_state,
        ("unsub_time", "clean_time"),
        _mailchimp_file_state,
        "clean_time",
        frozenset({"timezone"}),
    ),
    ExportFormat(
        "substack",
        "Substack subscriber export",
        frozenset({"email", "email_disabled"}),
        {"email": "email", "name": "name", "created_at": "optin_at"},
        _substack_state,
        ("email_disabled",),
    ),
    ExportFormat(
        "buttondown",
        "Buttondown subscriber export",
        frozenset({"email", "subscriber_type"}),
        {"email": "email", "creation_date": "optin_at", "tags": "tags"},
        _buttondown_state,
        ("subscriber_type",),
    ),
    ExportFormat(
        "listmonk",
        "listmonk subscriber export",
        frozenset({"uuid", "email", "attributes", "status"}),
        {"email": "email", "name": "name", "created_at": "optin_at", "lists": "tags"},
        _listmonk_state,
        ("status",),
        suppressed_at="updated_at",
    ),
    ExportFormat(
        "publisher",
        "email,name,newsletters",
        frozenset({"email"}),
        {
            "email": "email",
            "name": "name",
            "newsletters": "newsletters",
            "consent_at": "confirmed_at",
            "topics": "topics",
            "timezone": "timezone",
        },
        _publisher_state,
        ("status",),
    ),
)


def detect(header: Iterable[str]) -> ExportFormat | None:
    """The first format whose identifying columns are all in the header (None: not recognised)."""
    names = {name.strip().lower() for name in header}
    return next((found for found in FORMATS if found.identify <= names), None)


@dataclass(frozen=True)
class TagRule:
    """`tag:VIP=weekly` (into a newsletter) or `tag:VIP=topic:offers` (onto a topic); with a
    column, `Interests:Weekly digest=weekly`: rows whose COLUMN holds the value among its
    comma-separated values (Mailchimp's groups)."""

    tag: str  # the tag or value, lower-cased
    newsletter: str = ""
    topic: str = ""
    column: str = ""  # lower-cased; "" for the tags column

    def describe(self, header: Mapping[str, str]) -> str:
        target = f"topic {self.topic}" if self.topic else self.newsletter
        where = f"{header.get(self.column, self.column)} {self.tag!r}" if self.column else f"tag {self.tag!r}"
        return f"{target} for {where}"


@dataclass(frozen=True)
class ColumnMap:
    """What the operator asked for with `--map` and `--newsletter`."""

    columns: dict[str, str] = field(default_factory=dict)  # lower-cased column → field
    tag_rules: tuple[TagRule, ...] = ()
    newsletters: tuple[str, ...] = ()


def parse_maps(maps: Iterable[str], newsletters: Iterable[str] = ()) -> ColumnMap:
    """`--map COLUMN=FIELD`, `--map tag:TAG=NEWSLETTER|topic:TOPIC` and
    `--map COLUMN:VALUE=NEWSLETTER|topic:TOPIC`; SubscriberError names a bad one, and a column
    or a field named by two of them."""
    columns: dict[str, str] = {}
    written: dict[str, str] = {}  # lower-cased column → the --map that named it
    rules: list[TagRule] = []
    for item in maps:
        left, sep, right = item.partition("=")
        left, right = left.strip(), right.strip()
        if not sep or not left or not right:
            raise SubscriberError(f"--map {item!r}: write COLUMN=FIELD, tag:TAG=NEWSLETTER or COLUMN:VALUE=NEWSLETTER")
        if right.lower() in (*FIELDS, "ignore") and not left.lower().startswith("tag:"):
            column, fld = left.lower(), right.lower()
            if column in written:
                raise SubscriberError(
                    f"--map {item!r}: the column {left!r} is already read by --map {written[column]!r}"
                )
            twice = [written[col] for col, f in columns.items() if f == fld and fld != "ignore"]
            if twice:
                raise SubscriberError(f"--map {item!r}: the field {fld} is already read by --map {twice[0]!r}")
            columns[column], written[column] = fld, item
        elif ":" in left:
            column, _, value = (part.strip() for part in left.partition(":"))
            if not column or not value:
                raise SubscriberError(f"--map {item!r}: write tag:TAG=NEWSLETTER or COLUMN:VALUE=NEWSLETTER")
            topic = right[6:].strip() if right.lower().startswith("topic:") else ""
            column = "" if column.lower() == "tag" else column.lower()
            rules.append(TagRule(value.lower(), newsletter="" if topic else right, topic=topic, column=column))
        else:
            raise SubscriberError(f"--map {item!r}: unknown field {right!r} (fields: {', '.join(FIELDS)}, ignore)")
    return ColumnMap(columns, tuple(rules), tuple(dict.fromkeys(newsletters)))


@dataclass(frozen=True)
class Plan:
    """How one file is read: decided from its header row before any row is."""

    format: ExportFormat
    header: tuple[str, ...]  # as written in the file
    columns: dict[str, str]  # lower-cased column → field, only columns that are used
    mapping: ColumnMap
    confirmed: bool
    state: Callable[[Row], str]
    source: str  # recorded on each subscriber: import:mailchimp…, or import:<file name> for our own format
    delimiter: str = ","
    lenient: frozenset[str] = frozenset()  # fields whose bad values are dropped, the row kept

    @property
    def state_columns(self) -> list[str]:
        return [name for name in self.header if name.strip().lower() in self.format.state_columns]

    @property
    def ignored(self) -> list[str]:
        used = set(self.columns) | set(self.format.state_columns) | {rule.column for rule in self.mapping.tag_rules}
        return [name for name in self.header if name.strip().lower() not in used]

    @property
    def own_export(self) -> bool:
        """Our own `subscribers export` (status and newsletters columns): an empty newsletters cell
        there is an address with none, not one for every newsletter."""
        names = {name.strip().lower() for name in self.header}
        return self.format.name == "publisher" and {"status", "newsletters"} <= names

    @property
    def file_state(self) -> str:
        """The state every row of the file has (Mailchimp's unsubscribed and cleaned exports), or ""."""
        return self.format.file_state(frozenset(name.strip().lower() for name in self.header))

    def describe(self) -> list[str]:
        """The lines `subscribers import` prints before it writes anything."""
        by_lower = {name.strip().lower(): name for name in self.header}
        used = ", ".join(f"{by_lower[col]} → {fld}" for col, fld in self.columns.items())
        label = self.format.label
        if self.format.name == "publisher":  # our own CSV: say which of its columns the file has
            label = f"publisher's own CSV with the columns {','.join(name.strip() for name in self.header)}"
        lines = [f"format: {label} ({self.format.name}); source recorded as {self.source!r}"]
        if self.delimiter != ",":
            lines.append(f"columns separated by {'tabs' if self.delimiter == chr(9) else repr(self.delimiter)}")
        lines.append(f"columns: {used}")
        lines += [f"an unknown {fld} is left empty (the row is kept)" for fld in sorted(self.lenient)]
        if self.state_columns:
            lines.append(f"unsubscribed or suppressed rows from: {', '.join(self.state_columns)}")
        if self.ignored:
            lines.append(f"ignored columns: {', '.join(self.ignored)}")
        if self.file_state:
            lines.append(f"status: {self._stopped()}")
            return lines
        lines.append(f"newsletters: {self._newsletter_sources()}")
        consent = [fld for fld in ("confirmed_at", "optin_at") if fld in self.columns.values()]
        if self.confirmed:
            kept = " or ".join(consent) if consent else "none in the file: the import time"
            status = f"confirmed; consent time from {kept}"
        else:
            status = "pending (asked with `publisher subscribers confirm-pending --send`)"
        if self.state_columns:
            status += f"; rows {', '.join(self.state_columns)} marks as stopped become unsubscribed or bounced"
        lines.append(f"status: {status}")
        return lines

    def _stopped(self) -> str:
        """The status line of a file whose every row the old service had stopped."""
        if self.file_state == SUPPRESSED:
            return (
                f"bounced (suppressed), every row: the old service had cleaned them "
                f"(recorded as {self.suppression_reason('cleaned')!r}); no newsletters"
            )
        return "unsubscribed, every row: the old service had unsubscribed them; no newsletters"

    def suppression_reason(self, state: str) -> str:
        """`import:mailchimp cleaned`: the reason a suppression imported from this file records."""
        return f"import:{self.format.name} {state}"[:32]

    def _newsletter_sources(self) -> str:
        parts = [f"{name} (--newsletter)" for name in self.mapping.newsletters]
        if "newsletters" in self.columns.values():
            parts.append("the newsletters column")
        by_lower = {name.strip().lower(): name.strip() for name in self.header}
        parts += [rule.describe(by_lower) for rule in self.mapping.tag_rules if rule.newsletter]
        parts += [rule.describe(by_lower) for rule in self.mapping.tag_rules if rule.topic]
        if self.own_export and not self.mapping.tag_rules:
            parts.append("none when a row's cell is empty (as exported)")
        elif not self.mapping.tag_rules and not self.mapping.newsletters:
            parts.append("every configured newsletter when a row names none")
        return "; ".join(parts)


def make_plan(path: Path, header: list[str], mapping: ColumnMap, *, confirmed: bool, delimiter: str = ",") -> Plan:
    found = detect(header)
    lowered = [name.strip().lower() for name in header]
    if found is None and "email" not in mapping.columns.values():
        raise SubscriberError(
            f"{path}:1: the header row must name the columns email,name,newsletters, or be a Mailchimp, "
            f"Substack, Buttondown or listmonk export; for other files say which column is the address "
            f"with --map COLUMN=email"
        )
    found = found or FORMATS[-1]
    columns = {name: found.columns[name] for name in lowered if name in found.columns}
    for name, fld in mapping.columns.items():
        if name not in lowered:
            raise SubscriberError(f"{path}:1: --map names the column {name!r}, which the header row lacks")
        for other in [col for col, f in columns.items() if f == fld and fld != "ignore"]:
            del columns[other]  # --map replaces the format's own column for that field
        columns[name] = fld
    columns = {name: fld for name, fld in columns.items() if fld != "ignore"}
    if "email" not in columns.values():
        raise SubscriberError(f"{path}:1: no column holds the address: add --map COLUMN=email")
    for rule in mapping.tag_rules:
        if rule.column and rule.column not in lowered:
            raise SubscriberError(f"{path}:1: --map names the column {rule.column!r}, which the header row lacks")
    _refuse_repeated_columns(path, header, {*columns, *found.state_columns, *(r.column for r in mapping.tag_rules)})
    source = f"import:{path.name}" if found.name == "publisher" else f"import:{found.name}"
    lenient = frozenset(fld for col, fld in columns.items() if fld in found.lenient and col not in mapping.columns)
    state = found.row_state(frozenset(lowered))
    return Plan(found, tuple(header), columns, mapping, confirmed, state, source, delimiter, lenient)


def _refuse_repeated_columns(path: Path, header: list[str], used: set[str]) -> None:
    """A column the import reads may appear once (in any case); a repeated one nothing reads is allowed."""
    seen: dict[str, int] = {}
    for number, name in enumerate(header, 1):
        key = name.strip().lower()
        if key in seen and key in used:
            raise SubscriberError(
                f"{path}:1: the column {name.strip()!r} appears twice in the header row (columns {seen[key]} "
                f"and {number}); rename or remove one"
            )
        seen.setdefault(key, number)


# --- rows ----------------------------------------------------------------------------------


def parse_time(value: str, where: str) -> datetime | None:
    """ISO-8601 or `YYYY-MM-DD HH:MM:SS` (as the services write them); no offset means UTC."""
    value = value.strip()
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise SubscriberError(f"{where}: {value!r} is not a date and time (ISO-8601 expected)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_QUOTED = re.compile(r'"([^"]*)"')


def split_tags(value: str) -> list[str]:
    """Tags as the services write them: `"VIP","Weekly"` (Mailchimp), `a, b`, or a JSON list
    (of names, or of listmonk's `{"name": …}` lists)."""
    value = value.strip()
    if not value:
        return []
    if value[0] == '"' and '""' not in value:
        return [tag.strip() for tag in _QUOTED.findall(value) if tag.strip()]
    if value.startswith("["):
        try:
            items = json.loads(value)
        except ValueError:
            items = None
        if isinstance(items, list):
            names = [item.get("name", "") if isinstance(item, dict) else str(item) for item in items]
            return [name.strip() for name in names if name and name.strip()]
        value = value.strip("[]")  # a Python-style list: ['a', 'b']
    cells = next(csv.reader([value], skipinitialspace=True), [])
    return [cell.strip().strip("'\"").strip() for cell in cells if cell.strip().strip("'\"").strip()]


@dataclass(frozen=True)
class Known:
    """What the configuration offers: newsletters and topics."""

    newsletters: tuple[str, ...]
    topics: Mapping[str, str] | tuple[str, ...] = ()  # each [[topics]] name and its label (or names)


_STATUS = {SUPPRESSED: "bounced", UNSUBSCRIBED: "unsubscribed", PENDING: "pending"}
_CACHED = 4096  # distinct cells remembered per column (tags, times): exports repeat them a lot


def _remembered(function: Callable[[K, str], T]) -> Callable[[K, str], T]:
    """`function(cells, where)`, computed once per distinct cells (only results, never errors,
    are kept; at most _CACHED of them, so memory stays flat however long the file)."""
    done: dict[K, T] = {}

    def call(cells: K, where: str) -> T:
        try:
            return done[cells]
        except KeyError:
            if len(done) >= _CACHED:
                done.clear()
            found = done[cells] = function(cells, where)
            return found

    return call


_GUARDED = ("=", "+", "-", "@", "\t", "\r")  # what our export guards with a leading '


def unguard(cell: str) -> str:
    """A cell as written before our export (or a spreadsheet) guarded it against formulas:
    `'=cmd@example.com` → `=cmd@example.com`."""
    return cell[1:] if cell[:1] == "'" and cell[1:2] in _GUARDED else cell


def _unguarded(function: Callable[[str, str], T]) -> Callable[[str, str], T]:
    return lambda cell, where: function(unguard(cell), where)


def _lenient_zone(cell: str, where: str) -> str:
    try:
        return clean_timezone(cell, where)
    except SubscriberError:
        return ""


def row_reader(plan: Plan, known: Known, now: datetime) -> Callable[[list[str], str], RowResult]:
    """How each row (its cells, and where it is: file:line) becomes a subscriber; SubscriberError
    naming file:line for a row that cannot be one. Decided once from the plan: the cell each
    field reads, and the parts that repeat from row to row (tags, newsletters, times) are
    worked out once per distinct value."""
    lowered = [name.strip().lower() for name in plan.header]
    width = len(lowered)
    last = {name: i for i, name in enumerate(lowered)}  # a repeated column nothing reads: the last one
    index = {fld: last[col] for col, fld in plan.columns.items()}
    # a field no column feeds reads the empty cell added at the end of each row
    email, name, first, family, newsletters, tags, topics, timezone, optin_at, confirmed_at = (
        index.get(fld, width) for fld in FIELDS
    )
    states = [(col, last[col]) for col in plan.format.state_columns if col in last]
    valued = [last[col] for col in dict.fromkeys(rule.column for rule in plan.mapping.tag_rules if rule.column)]
    stopped_at = last.get(plan.format.suppressed_at, width)
    cleaned = "cleaned" if plan.file_state == SUPPRESSED else ""  # else the state column's own word
    otherwise = "confirmed" if plan.confirmed else "pending"

    def newsletters_and_topics(cells: tuple[str, ...], where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return _newsletters_and_topics(plan, tuple(map(unguard, cells)), known, where)

    places = _remembered(newsletters_and_topics)
    consent_time = _remembered(_unguarded(parse_time))
    zone = _remembered(_unguarded(_lenient_zone if "timezone" in plan.lenient else clean_timezone))

    def read(cells: list[str], where: str) -> RowResult:
        if len(cells) != width:
            cells = (cells + [""] * width)[:width]
        cells.append("")
        raw = cells[email]
        address = normalise_email(unguard(raw) if raw[:1] == "'" else raw, where)
        state = plan.state({col: cells[i] for col, i in states})
        status = _STATUS.get(state, otherwise)
        placed = (cells[newsletters], cells[topics], cells[tags])
        chosen, interests = places((*placed, *[cells[i] for i in valued]) if valued else placed, where)
        consent_cell = cells[confirmed_at] or cells[optin_at]
        consent = consent_time(consent_cell, where)
        stopped = None
        if status in ("unsubscribed", "bounced"):
            chosen, interests = (), ()
            if status == "bounced":
                word = cleaned or next((cells[i].strip().lower() for _, i in states if cells[i].strip()), "")
                stopped = _suppression(plan, address, word, cells[stopped_at], now, where)
        confirmed = status == "confirmed"
        full_name = cells[name] or " ".join(v for v in (cells[first], cells[family]) if v)
        if full_name[:1] == "'":
            full_name = unguard(full_name)
        person = Subscriber(
            email=address,
            name=clean_name(full_name, where),
            status=status,
            newsletters=chosen,
            topics=interests,
            source=plan.source,
            consent_at=(consent or now) if confirmed else None,
            consent_text=_consent_text(plan, consent_cell, where) if confirmed else "",
            timezone=zone(cells[timezone], where),
        )
        return RowResult(person, suppression=stopped)

    return read


def _suppression(plan: Plan, email: str, word: str, at_cell: str, now: datetime, where: str) -> Suppression:
    """The reason (`import:mailchimp cleaned`), the export's own time of it, and file:line."""
    try:
        at = parse_time(unguard(at_cell), where) or now
    except SubscriberError:
        at = now
    return Suppression(email, plan.suppression_reason(word or "suppressed"), at, where)


def _split(cell: str) -> list[str]:
    """Names in a cell: separated by commas (or quoted, or a JSON list) when it has any, else by spaces."""
    return split_tags(cell) if '"' in cell or "," in cell or "[" in cell else cell.split()


def _newsletters_and_topics(
    plan: Plan, cells: tuple[str, ...], known: Known, where: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """From the newsletters, topics and tags cells (and those the value rules read):
    `--newsletter`, then the newsletters column, then the tag and value rules; none of these:
    every newsletter."""
    cell, topics_cell, tags_cell, *valued_cells = cells
    tags = {tag.lower() for tag in split_tags(tags_cell)}
    values = _rule_values(plan, valued_cells)
    named = _split(cell)
    if named and not all(name in known.newsletters for name in named):  # "Weekly" for weekly
        lowered = {name.lower(): name for name in known.newsletters}
        named = [lowered.get(name.lower(), name) for name in named]
        if not all(name in known.newsletters for name in named):
            _unknown_newsletters(plan, cell, [n for n in named if n not in known.newsletters], known, where)
    names = list(plan.mapping.newsletters) + named
    topics: list[str] = _split(topics_cell)
    for rule in plan.mapping.tag_rules:
        if rule.tag in (values.get(rule.column, ()) if rule.column else tags):
            (topics if rule.topic else names).append(rule.topic or rule.newsletter)
    if not names and not plan.mapping.tag_rules and not plan.own_export:
        names = list(known.newsletters)
    if len(names) == 1 and names[0] in known.newsletters:
        checked: tuple[str, ...] = (names[0],)
    else:
        checked = check_newsletters(names, known.newsletters, where)
    return checked, check_topics(topics, known.topics, where)


def _rule_values(plan: Plan, cells: list[str]) -> dict[str, set[str]]:
    """Each value-rule column's comma-separated values, lower-cased."""
    columns = dict.fromkeys(rule.column for rule in plan.mapping.tag_rules if rule.column)
    return {column: {value.lower() for value in split_tags(cell)} for column, cell in zip(columns, cells, strict=True)}


def _unknown_newsletters(plan: Plan, cell: str, unknown: list[str], known: Known, where: str) -> None:
    """The same message however the cell was split: the names, the cell, the rule that maps values."""
    column = next((col for col, fld in plan.columns.items() if fld == "newsletters"), "newsletters")
    header = {name.strip().lower(): name.strip() for name in plan.header}.get(column, column)
    raise SubscriberError(
        f"{where}: unknown newsletter {', '.join(unknown)} in the {header} cell {cell.strip()!r} "
        f"(configured: {', '.join(sorted(known.newsletters))}); "
        f'to map other values use --map "{header}:VALUE=NEWSLETTER"'
    )


def _consent_text(plan: Plan, consent: str, where: str) -> str:
    when = f"opted in {consent.strip()}" if consent else "no opt-in time in the export; consent time is the import"
    return f"{plan.source}: {when} ({where})"


@dataclass
class RowResult:
    subscriber: Subscriber | None = None
    error: str = ""
    suppression: Suppression | None = None  # a row the old service had suppressed


def read_rows(
    path: Path, mapping: ColumnMap, known: Known, *, confirmed: bool, now: datetime
) -> tuple[Plan, Iterator[RowResult]]:
    """The plan from the header row, and a generator over the rows (the file is read as it goes).

    The whole file is checked to be UTF-8 first, so a bad byte near its end stops the import
    before anything is written. A header row separated by semicolons or tabs (a spreadsheet's
    export in some locales) is read with that delimiter."""
    check_encoding(path)
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
        reader = csv.reader(handle)
        header = next(reader, [])
        delimiter = _delimiter(header)
        if delimiter != ",":
            handle.seek(0)
            reader = csv.reader(handle, delimiter=delimiter)
            header = next(reader, [])
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise SubscriberError(f"{path}: cannot read the CSV: {error}") from None
    try:
        plan = make_plan(path, header, mapping, confirmed=confirmed, delimiter=delimiter)
        _check_rules(plan, known)
    except SubscriberError:
        handle.close()
        raise
    return plan, _rows(path, handle, reader, plan, known, now)


_ZIP = b"PK\x03\x04"
_CHUNK = 1 << 20  # bytes decoded at a time by check_encoding
_UTF16 = (b"\xff\xfe", b"\xfe\xff")  # the byte-order marks a spreadsheet's "Unicode text" starts with
_SAMPLE = 4096  # bytes looked at for NULs: UTF-16 text without a mark has one in every other byte


def check_encoding(path: Path) -> None:
    """SubscriberError unless the whole file is UTF-8 text: it names the line of the first bad
    byte (newlines before it, counted in the bytes), and says when the file is a zip archive.
    One incremental decode in large chunks: a small fraction of an import's time."""
    decoder, lines = codecs.getincrementaldecoder("utf-8")(), 0
    try:
        with path.open("rb") as handle:
            chunk = handle.read(_CHUNK)
            if chunk.startswith(_ZIP):
                raise SubscriberError(f"{path}: is a zip archive: unzip it and import each CSV")
            if chunk.startswith(_UTF16) or chunk[:_SAMPLE].count(0) > len(chunk[:_SAMPLE]) // 4:
                raise SubscriberError(
                    f"{path}: looks like UTF-16: save it as UTF-8 and import it again (nothing was imported)"
                )
            while chunk:
                decoder.decode(chunk)
                lines += chunk.count(b"\n")
                chunk = handle.read(_CHUNK)
            decoder.decode(b"", final=True)
    except OSError as error:
        raise SubscriberError(f"{path}: cannot read: {error.strerror}") from None
    except UnicodeDecodeError as error:
        line = lines + error.object[: error.start].count(b"\n") + 1
        raise SubscriberError(
            f"{path}:{line}: byte {error.object[error.start]:#04x} is not UTF-8 text; save the file as UTF-8 "
            f"and import it again (nothing was imported)"
        ) from None


def _delimiter(header: list[str]) -> str:
    """`;` or a tab when the header row, read as comma-separated, is one cell holding them."""
    if len(header) != 1:
        return ","
    return max(("\t", ";"), key=header[0].count) if ";" in header[0] or "\t" in header[0] else ","


def _check_rules(plan: Plan, known: Known) -> None:
    check_newsletters(plan.mapping.newsletters, known.newsletters, "--newsletter")
    check_newsletters([r.newsletter for r in plan.mapping.tag_rules if r.newsletter], known.newsletters, "--map")
    check_topics([r.topic for r in plan.mapping.tag_rules if r.topic], known.topics, "--map")
    if any(not rule.column for rule in plan.mapping.tag_rules) and "tags" not in plan.columns.values():
        raise SubscriberError(f"--map tag:…: {plan.format.label} has no tags column; add --map COLUMN=tags")


class LineReader(Protocol):
    """A csv.reader: rows, and the line the last one ended on."""

    line_num: int

    def __iter__(self) -> Iterator[list[str]]: ...

    def __next__(self) -> list[str]: ...


def _rows(
    path: Path, handle: TextIO, reader: LineReader, plan: Plan, known: Known, now: datetime
) -> Iterator[RowResult]:
    read = row_reader(plan, known, now)

    def result(cells: list[str], where: str) -> RowResult:
        try:
            return read(cells, where)
        except SubscriberError as error:
            return RowResult(error=str(error))

    with handle:
        try:
            ended = reader.line_num  # the line the previous row ended on (the header row's)
            held: tuple[list[str], str, int] | None = None  # a row across lines, until the next is read
            for cells in reader:
                start, ended = ended + 1, reader.line_num
                if held is not None:
                    yield result(*held[:2])
                    held = None
                if not (cells and cells[0].strip()) and not "".join(cells).strip():
                    continue
                where = f"{path}:{ended}"
                if ended > start or cells[-1][-1:] == "\n":  # a quoted cell across lines: closed at the file's end?
                    held = cells, where, start
                    continue
                yield result(cells, where)
            if held is not None:
                cells, where, start = held
                if _unterminated(path, plan.delimiter, start):
                    line = start + sum(cell.count("\n") for cell in cells[:-1])
                    rest = f"lines {line}–{ended} were" if ended > line else "the line was"
                    yield RowResult(
                        error=f"{path}:{line}: unterminated quote: the quoted cell that starts on this line is never "
                        f"closed, so {rest} read as one cell and not imported; close the quote and import again"
                    )
                else:
                    yield result(cells, where)
        except (csv.Error, UnicodeDecodeError) as error:
            raise SubscriberError(f"{path}:{reader.line_num}: cannot read the CSV: {error}") from None


def _unterminated(path: Path, delimiter: str, start: int) -> bool:
    """Whether the row starting on line `start` (the file's last) ends inside a quoted cell: read
    again, strictly, from there (once per import, and only the file's tail)."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        try:
            for _ in csv.reader(itertools.islice(handle, start - 1, None), delimiter=delimiter, strict=True):
                pass
        except csv.Error as error:
            return "unexpected end of data" in str(error)
    return False


# --- writing -------------------------------------------------------------------------------

BATCH_SIZE = 2000


class BatchWriter(Protocol):
    def last_id(self) -> int:
        """The highest subscriber id before the import (rows above it are the import's own)."""
        ...

    def import_batch(
        self,
        people: Sequence[Subscriber],
        now: datetime,
        suppressions: Sequence[Suppression] = (),
        since_id: int | None = None,
    ) -> tuple[int, int, int, list[str], list[str], Counter[str]]:
        """(added, updated, unchanged, suppressed addresses the file tried to subscribe, left as
        they were, addresses this import had already added: rows above `since_id`, and the status
        each counted address has after the batch)."""
        ...


@dataclass
class ListImport:
    """What an import did (or, on a dry run, would do); counts are of distinct addresses."""

    rows: int = 0
    added: int = 0
    updated: int = 0  # existing addresses the file changed (name, status or newsletters)
    unchanged: int = 0  # existing addresses already as the file has them
    rejected: int = 0
    duplicates: int = 0  # rows repeating an address of an earlier row: merged into it
    suppressed: int = 0  # existing suppressed addresses the file tried to subscribe: left unchanged, not counted
    suppressed_named: list[str] = field(default_factory=list)  # the first few of them
    without_newsletters: int = 0  # active addresses that no --newsletter, column or tag rule placed
    # per status, the addresses the import leaves (or, on a dry run, would leave) in it; suppressed ones apart
    statuses: Counter = field(default_factory=Counter)


@dataclass
class _Batch:
    """Rows gathered for one transaction: the first row of each address, later ones merged."""

    people: list[Subscriber] = field(default_factory=list)
    status: dict[str, str] = field(default_factory=dict)  # address → the status its first row asked for
    suppressions: list[Suppression] = field(default_factory=list)

    def add(self, row: RowResult, result: ListImport) -> None:
        person = row.subscriber
        if person is None:
            return
        self.people.append(person)
        if person.email in self.status:
            result.duplicates += 1
            return
        self.status[person.email] = person.status
        result.statuses[person.status] += 1
        if person.status in ("pending", "confirmed") and not person.newsletters:
            result.without_newsletters += 1
        if row.suppression is not None:
            self.suppressions.append(row.suppression)


def import_rows(
    writer: BatchWriter | None,
    rows: Iterable[RowResult],
    now: datetime,
    *,
    on_error: Callable[[str], None] = lambda error: None,
    batch_size: int = BATCH_SIZE,
    known: Callable[[dict[str, str]], dict[str, str]] | None = None,
    on_progress: Callable[[ListImport], None] = lambda done: None,
) -> ListImport:
    """Write good rows in batches (one transaction each), report bad ones; no writer: a dry run,
    which counts new and updated addresses by asking `known` which are subscribers already
    (and what the import would leave them as).

    One batch is written (in a second thread) while the next is read, so at most two batches
    are in memory; batches are written in file order, and an error in one stops the import.
    `on_progress` hears the counts so far after each batch is written (or counted, on a dry run).
    Rows repeating an address are merged into its first and counted as `duplicates` (on a dry
    run, only within a batch: the store tells a real import of repeats further apart).
    """
    result, batch = ListImport(), _Batch()
    since_id = writer.last_id() if writer is not None else None
    with ThreadPoolExecutor(1, thread_name_prefix="import") as pool:
        writing: tuple[Future, _Batch] | None = None
        for row in rows:
            result.rows += 1
            if row.subscriber is None:
                result.rejected += 1
                on_error(row.error)
                continue
            batch.add(row, result)
            if len(batch.people) < batch_size:
                continue
            if writer is None:
                if known is not None:
                    _count_known(known, batch, result)
                    on_progress(result)
                batch = _Batch()
                continue
            if writing is not None:
                _collect(writing, result)
                on_progress(result)
            writing = pool.submit(writer.import_batch, batch.people, now, batch.suppressions, since_id), batch
            batch = _Batch()
        if writing is not None:
            _collect(writing, result)
        if batch.people and writer is not None:
            _collect((pool.submit(writer.import_batch, batch.people, now, batch.suppressions, since_id), batch), result)
        elif batch.people and known is not None:
            _count_known(known, batch, result)
    return result


def _count_known(known: Callable[[dict[str, str]], dict[str, str]], batch: _Batch, result: ListImport) -> None:
    """A dry run's counts: addresses the store lacks are added; the others updated (or left
    unchanged, when suppressed), counted under the status the import would leave them in."""
    found = known(batch.status)
    result.added += len(batch.status) - len(found)
    held = [address for address, status in found.items() if status == SUPPRESSED]
    result.suppressed += len(held)
    result.suppressed_named += held[: max(0, 20 - len(result.suppressed_named))]
    result.updated += len(found) - len(held)
    result.statuses.subtract(batch.status[address] for address in found)
    result.statuses.update(status for status in found.values() if status != SUPPRESSED)


def _collect(writing: tuple[Future, _Batch], result: ListImport) -> None:
    """Wait for a batch being written and add up what it did."""
    added, updated, unchanged, suppressed, repeated, statuses = writing[0].result()
    result.duplicates += len(repeated)  # addresses an earlier batch had already added: counted once, there
    result.statuses.subtract(writing[1].status.values())  # what the rows asked for: now what the store has
    result.statuses.update(statuses)
    result.suppressed += len(suppressed)
    result.suppressed_named += suppressed[: max(0, 20 - len(result.suppressed_named))]
    result.added += added
    result.updated += updated
    result.unchanged += unchanged
