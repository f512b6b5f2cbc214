"""Bringing a list in: recognise another service's CSV export and map its rows to subscribers.

Pure: a header row gives a `Plan` (which service exported the file, which column feeds which
field, where newsletters come from); `read_rows` streams the file through `csv` and yields one
`Subscriber` (or one error naming file:line) per row, so memory does not grow with the file.

An export's opt-in or confirmation time becomes the consent time (with `--confirmed`), its
source is recorded as `import:<service>`, and rows the old service had unsubscribed, cleaned or
blocklisted come in as `unsubscribed` or `bounced` (suppressed), never as subscribers.
"""

from __future__ import annotations

import csv
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


def _mailchimp_state(header: frozenset[str]) -> Callable[[Row], str]:
    """Mailchimp exports one file per audience state: the unsubscribed and cleaned files add columns."""
    if "clean_time" in header:
        return lambda row: SUPPRESSED
    if "unsub_time" in header:
        return lambda row: UNSUBSCRIBED
    return _always_subscribed(header)


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
        },
        _mailchimp_state,
        ("unsub_time", "clean_time"),
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
    """`tag:VIP=weekly` (into a newsletter) or `tag:VIP=topic:offers` (onto a topic)."""

    tag: str
    newsletter: str = ""
    topic: str = ""


@dataclass(frozen=True)
class ColumnMap:
    """What the operator asked for with `--map` and `--newsletter`."""

    columns: dict[str, str] = field(default_factory=dict)  # lower-cased column → field
    tag_rules: tuple[TagRule, ...] = ()
    newsletters: tuple[str, ...] = ()


def parse_maps(maps: Iterable[str], newsletters: Iterable[str] = ()) -> ColumnMap:
    """`--map COLUMN=FIELD` and `--map tag:TAG=NEWSLETTER|topic:TOPIC`; SubscriberError names a bad one."""
    columns: dict[str, str] = {}
    rules: list[TagRule] = []
    for item in maps:
        left, sep, right = item.partition("=")
        left, right = left.strip(), right.strip()
        if not sep or not left or not right:
            raise SubscriberError(f"--map {item!r}: write COLUMN=FIELD or tag:TAG=NEWSLETTER")
        if left.lower().startswith("tag:"):
            tag = left[4:].strip()
            topic = right[6:].strip() if right.lower().startswith("topic:") else ""
            rules.append(TagRule(tag.lower(), newsletter="" if topic else right, topic=topic))
        elif right.lower() in (*FIELDS, "ignore"):
            columns[left.lower()] = right.lower()
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

    @property
    def state_columns(self) -> list[str]:
        return [name for name in self.header if name.strip().lower() in self.format.state_columns]

    @property
    def ignored(self) -> list[str]:
        used = set(self.columns) | set(self.format.state_columns)
        return [name for name in self.header if name.strip().lower() not in used]

    def describe(self) -> list[str]:
        """The lines `subscribers import` prints before it writes anything."""
        by_lower = {name.strip().lower(): name for name in self.header}
        used = ", ".join(f"{by_lower[col]} → {fld}" for col, fld in self.columns.items())
        label = self.format.label
        if self.format.name == "publisher":  # our own CSV: say which of its columns the file has
            label = f"publisher's own CSV with the columns {','.join(name.strip() for name in self.header)}"
        lines = [f"format: {label} ({self.format.name}); source recorded as {self.source!r}"]
        lines.append(f"columns: {used}")
        if self.state_columns:
            lines.append(f"unsubscribed or suppressed rows from: {', '.join(self.state_columns)}")
        if self.ignored:
            lines.append(f"ignored columns: {', '.join(self.ignored)}")
        lines.append(f"newsletters: {self._newsletter_sources()}")
        consent = [fld for fld in ("confirmed_at", "optin_at") if fld in self.columns.values()]
        if self.confirmed:
            kept = " or ".join(consent) if consent else "none in the file: the import time"
            lines.append(f"status: confirmed; consent time from {kept}")
        else:
            lines.append("status: pending (asked with `publisher subscribers confirm-pending --send`)")
        return lines

    def _newsletter_sources(self) -> str:
        parts = [f"{name} (--newsletter)" for name in self.mapping.newsletters]
        if "newsletters" in self.columns.values():
            parts.append("the newsletters column")
        parts += [f"{rule.newsletter} for tag {rule.tag!r}" for rule in self.mapping.tag_rules if rule.newsletter]
        parts += [f"topic {rule.topic} for tag {rule.tag!r}" for rule in self.mapping.tag_rules if rule.topic]
        if not self.mapping.tag_rules and not self.mapping.newsletters:
            parts.append("every configured newsletter when a row names none")
        return "; ".join(parts)


def make_plan(path: Path, header: list[str], mapping: ColumnMap, *, confirmed: bool) -> Plan:
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
    source = f"import:{path.name}" if found.name == "publisher" else f"import:{found.name}"
    return Plan(found, tuple(header), columns, mapping, confirmed, found.row_state(frozenset(lowered)), source)


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


def row_reader(plan: Plan, known: Known, now: datetime) -> Callable[[list[str], str], Subscriber]:
    """How each row (its cells, and where it is: file:line) becomes a subscriber; SubscriberError
    naming file:line for a row that cannot be one. Decided once from the plan: the cell each
    field reads, and the parts that repeat from row to row (tags, newsletters, times) are
    worked out once per distinct value."""
    lowered = [name.strip().lower() for name in plan.header]
    width = len(lowered)
    last = {name: i for i, name in enumerate(lowered)}  # a repeated column: the last one counts
    index = {fld: last[col] for col, fld in plan.columns.items()}
    # a field no column feeds reads the empty cell added at the end of each row
    email, name, first, family, newsletters, tags, topics, timezone, optin_at, confirmed_at = (
        index.get(fld, width) for fld in FIELDS
    )
    states = [(col, last[col]) for col in plan.format.state_columns if col in last]
    otherwise = "confirmed" if plan.confirmed else "pending"

    def newsletters_and_topics(cells: tuple[str, str, str], where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return _newsletters_and_topics(plan, cells, known, where)

    places = _remembered(newsletters_and_topics)
    consent_time = _remembered(parse_time)
    zone = _remembered(clean_timezone)

    def read(cells: list[str], where: str) -> Subscriber:
        if len(cells) != width:
            cells = (cells + [""] * width)[:width]
        cells.append("")
        address = normalise_email(cells[email], where)
        status = _STATUS.get(plan.state({col: cells[i] for col, i in states}), otherwise)
        chosen, interests = places((cells[newsletters], cells[topics], cells[tags]), where)
        consent_cell = cells[confirmed_at] or cells[optin_at]
        consent = consent_time(consent_cell, where)
        if status in ("unsubscribed", "bounced"):
            chosen, interests = (), ()
        confirmed = status == "confirmed"
        return Subscriber(
            email=address,
            name=clean_name(cells[name] or " ".join(v for v in (cells[first], cells[family]) if v), where),
            status=status,
            newsletters=chosen,
            topics=interests,
            source=plan.source,
            consent_at=(consent or now) if confirmed else None,
            consent_text=_consent_text(plan, consent_cell, where) if confirmed else "",
            timezone=zone(cells[timezone], where),
        )

    return read


def _newsletters_and_topics(
    plan: Plan, cells: tuple[str, str, str], known: Known, where: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """From the newsletters, topics and tags cells: `--newsletter`, then the newsletters column,
    then the tag rules; none of these: every newsletter."""
    cell, topics_cell, tags_cell = cells
    tags = {tag.lower() for tag in split_tags(tags_cell)}
    named = split_tags(cell) if '"' in cell or "," in cell or "[" in cell else cell.split()
    if named and not all(name in known.newsletters for name in named):  # "Weekly" for weekly
        lowered = {name.lower(): name for name in known.newsletters}
        named = [lowered.get(name.lower(), name) for name in named]
    names = list(plan.mapping.newsletters) + named
    cell = topics_cell
    topics: list[str] = split_tags(cell) if '"' in cell or "," in cell or "[" in cell else cell.split()
    for rule in plan.mapping.tag_rules:
        if rule.tag in tags:
            (topics if rule.topic else names).append(rule.topic or rule.newsletter)
    if not names and not plan.mapping.tag_rules:
        names = list(known.newsletters)
    if len(names) == 1 and names[0] in known.newsletters:
        checked: tuple[str, ...] = (names[0],)
    else:
        checked = check_newsletters(names, known.newsletters, where)
    return checked, check_topics(topics, known.topics, where)


def _consent_text(plan: Plan, consent: str, where: str) -> str:
    when = f"opted in {consent.strip()}" if consent else "no opt-in time in the export; consent time is the import"
    return f"{plan.source}: {when} ({where})"


@dataclass
class RowResult:
    subscriber: Subscriber | None = None
    error: str = ""


def read_rows(
    path: Path, mapping: ColumnMap, known: Known, *, confirmed: bool, now: datetime
) -> tuple[Plan, Iterator[RowResult]]:
    """The plan from the header row, and a generator over the rows (the file is read as it goes)."""
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
        reader = csv.reader(handle)
        header = next(reader, [])
    except (OSError, UnicodeDecodeError) as error:
        raise SubscriberError(f"{path}: cannot read as UTF-8 text: {error}") from None
    try:
        plan = make_plan(path, header, mapping, confirmed=confirmed)
        _check_rules(plan, known)
    except SubscriberError:
        handle.close()
        raise
    return plan, _rows(path, handle, reader, plan, known, now)


def _check_rules(plan: Plan, known: Known) -> None:
    check_newsletters(plan.mapping.newsletters, known.newsletters, "--newsletter")
    check_newsletters([r.newsletter for r in plan.mapping.tag_rules if r.newsletter], known.newsletters, "--map")
    check_topics([r.topic for r in plan.mapping.tag_rules if r.topic], known.topics, "--map")
    if plan.mapping.tag_rules and "tags" not in plan.columns.values():
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
    with handle:
        try:
            for cells in reader:
                if not (cells and cells[0].strip()) and not "".join(cells).strip():
                    continue
                where = f"{path}:{reader.line_num}"
                try:
                    yield RowResult(read(cells, where))
                except SubscriberError as error:
                    yield RowResult(error=str(error))
        except (csv.Error, UnicodeDecodeError) as error:
            raise SubscriberError(f"{path}:{reader.line_num}: cannot read the CSV: {error}") from None


# --- writing -------------------------------------------------------------------------------

BATCH_SIZE = 2000


class BatchWriter(Protocol):
    def import_batch(self, people: Sequence[Subscriber], now: datetime) -> tuple[int, int, int, list[str]]:
        """(added, updated, unchanged, suppressed addresses left as they were)."""
        ...


@dataclass
class ListImport:
    """What an import did (or, on a dry run, would do)."""

    rows: int = 0
    added: int = 0
    updated: int = 0  # existing addresses the file changed (name, status or newsletters)
    unchanged: int = 0  # existing addresses already as the file has them
    rejected: int = 0
    suppressed: int = 0  # existing suppressed addresses the file tried to subscribe: left unchanged
    suppressed_named: list[str] = field(default_factory=list)  # the first few of them
    without_newsletters: int = 0  # active rows that no --newsletter, column or tag rule placed
    statuses: Counter = field(default_factory=Counter)  # per status the rows asked for


def import_rows(
    writer: BatchWriter | None,
    rows: Iterable[RowResult],
    now: datetime,
    *,
    on_error: Callable[[str], None] = lambda error: None,
    batch_size: int = BATCH_SIZE,
    known: Callable[[list[str]], set[str]] | None = None,
    on_progress: Callable[[ListImport], None] = lambda done: None,
) -> ListImport:
    """Write good rows in batches (one transaction each), report bad ones; no writer: a dry run,
    which counts new and updated addresses by asking `known` which are subscribers already.

    One batch is written (in a second thread) while the next is read, so at most two batches
    are in memory; batches are written in file order, and an error in one stops the import.
    `on_progress` hears the counts so far after each batch is written (or counted, on a dry run).
    """
    result, batch = ListImport(), []
    with ThreadPoolExecutor(1, thread_name_prefix="import") as pool:
        writing: Future | None = None
        for row in rows:
            result.rows += 1
            if row.subscriber is None:
                result.rejected += 1
                on_error(row.error)
                continue
            result.statuses[row.subscriber.status] += 1
            if row.subscriber.status in ("pending", "confirmed") and not row.subscriber.newsletters:
                result.without_newsletters += 1
            if writer is None:
                if known is not None:
                    batch.append(row.subscriber)
                    if len(batch) >= batch_size:
                        _count_known(known, batch, result)
                        batch = []
                        on_progress(result)
                continue
            batch.append(row.subscriber)
            if len(batch) >= batch_size:
                if writing is not None:
                    _collect(writing, result)
                    on_progress(result)
                writing, batch = pool.submit(writer.import_batch, batch, now), []
        _collect(writing, result)
        if batch and writer is not None:
            _collect(pool.submit(writer.import_batch, batch, now), result)
        elif batch and known is not None:
            _count_known(known, batch, result)
    return result


def _count_known(known: Callable[[list[str]], set[str]], batch: list[Subscriber], result: ListImport) -> None:
    addresses = list(dict.fromkeys(person.email for person in batch))
    found = known(addresses)
    result.added += sum(1 for address in addresses if address not in found)
    result.updated += len(found)


def _collect(writing: Future | None, result: ListImport) -> None:
    """Wait for a batch being written and add up what it did."""
    if writing is None:
        return
    added, updated, unchanged, suppressed = writing.result()
    result.suppressed += len(suppressed)
    result.suppressed_named += suppressed[: max(0, 20 - len(result.suppressed_named))]
    result.added += added
    result.updated += updated
    result.unchanged += unchanged
