"""Subscribers: address checks, CSV import with line numbers, export, and the store on both databases."""

import csv
import getpass
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from publisher import verp
from publisher.cli import cli
from publisher.config import load_settings
from publisher.errors import SubscriberError
from publisher.model import Subscriber
from publisher.store import Store
from publisher.subscribers import make_subscriber, normalise_email, parse_csv, to_csv
from tests.helpers import CORPUS, SAMPLE_TOKEN, make_issue

KNOWN = ("weekly", "daily")


def test_addresses_are_checked_without_dns_and_lower_cased():
    assert normalise_email(" Ann@Example.ORG ") == "ann@example.org"
    with pytest.raises(SubscriberError, match=r"'not-an-address' is not a valid email address"):
        normalise_email("not-an-address")


def test_header_breaking_names_are_flattened(clock):
    person = make_subscriber(
        "a@example.org", "Eve\r\nBcc: x@y", ["weekly"], known=KNOWN, confirmed=True, source="t", now=clock
    )
    assert "\n" not in person.name and "\r" not in person.name


def test_csv_rows_are_kept_or_reported_by_line(tmp_path: Path, clock):
    path = tmp_path / "people.csv"
    path.write_text(
        "email,name,newsletters\n"
        "ann@example.org,Ann,weekly daily\n"
        "broken,Bob,weekly\n"
        "cy@example.org,Cy,monthly\n"
        "dee@example.org,,\n",
        encoding="utf-8",
    )
    parsed = parse_csv(path, known=KNOWN, confirmed=False, now=clock, default_newsletters=KNOWN)
    assert [p.email for p in parsed.subscribers] == ["ann@example.org", "dee@example.org"]
    assert parsed.subscribers[1].newsletters == KNOWN
    assert parsed.errors[0].startswith(f"{path}:3: 'broken' is not a valid email address")
    assert parsed.errors[1].startswith(f"{path}:4: unknown newsletter monthly")


def test_csv_without_email_column_is_refused(tmp_path: Path, clock):
    path = tmp_path / "people.csv"
    path.write_text("mail,name\nx@y.org,X\n", encoding="utf-8")
    with pytest.raises(SubscriberError, match=r"people\.csv:1: the header row must name the columns"):
        parse_csv(path, known=KNOWN, confirmed=False, now=clock)


def test_store_adds_merges_and_never_reactivates(store, clock):
    subscribers = store.subscribers
    ann = Subscriber(email="ann@example.org", name="Ann", status="pending", newsletters=("weekly",))
    assert subscribers.add(ann, clock) is True
    confirmed = Subscriber(email="ann@example.org", status="confirmed", newsletters=("daily",))
    assert subscribers.add(confirmed, clock) is False
    stored = subscribers.get("ANN@example.org")
    assert (stored.status, stored.newsletters, stored.name) == ("confirmed", ("daily", "weekly"), "Ann")
    assert subscribers.remove("ann@example.org")
    subscribers.add(confirmed, clock)
    assert subscribers.get("ann@example.org").status == "unsubscribed"
    assert [p.email for p in subscribers.all(newsletter="daily")] == ["ann@example.org"]


def test_export_round_trips_through_import(store, tmp_path: Path, clock):
    store.subscribers.upsert_many(
        [
            Subscriber(email="a@example.org", name="A, with comma", status="confirmed", newsletters=KNOWN),
            Subscriber(email="b@example.org", status="pending", newsletters=("weekly",)),
        ],
        clock,
    )
    path = tmp_path / "out.csv"
    path.write_text(to_csv(store.subscribers.all()), encoding="utf-8")
    parsed = parse_csv(path, known=KNOWN, confirmed=True, now=clock)
    assert [(p.email, p.name, p.newsletters) for p in parsed.subscribers] == [
        ("a@example.org", "A, with comma", ("daily", "weekly")),
        ("b@example.org", "", ("weekly",)),
    ]
    assert parsed.errors == []


def test_an_opt_out_survives_imports_but_not_the_subscribers_own_choice(store, clock):
    subscribers = store.subscribers
    subscribers.add(Subscriber(email="a@example.org", status="confirmed", newsletters=KNOWN), clock)
    person = subscribers.get("a@example.org")
    subscribers.remove_newsletter(person.id, "daily", clock)
    subscribers.upsert_many([Subscriber(email="a@example.org", status="confirmed", newsletters=KNOWN)], clock)
    subscribers.add(Subscriber(email="a@example.org", status="pending", newsletters=KNOWN), clock)
    assert subscribers.get("a@example.org").newsletters == ("weekly",)
    subscribers.set_newsletters(person.id, ["weekly", "daily"], clock)  # the preferences page
    assert subscribers.get("a@example.org").newsletters == KNOWN[::-1]
    subscribers.set_newsletters(person.id, ["weekly"], clock)  # dropping one there is an opt-out too
    subscribers.upsert_many([Subscriber(email="a@example.org", status="confirmed", newsletters=KNOWN)], clock)
    assert subscribers.get("a@example.org").newsletters == ("weekly",)


def test_international_domains_are_stored_in_ascii_and_local_parts_must_be_ascii():
    assert normalise_email("Leser@Bücher.de") == "leser@xn--bcher-kva.de"
    with pytest.raises(SubscriberError, match="not a valid email address"):
        normalise_email("ñoño@example.com")


def test_absurdly_long_names_are_refused_with_the_line(clock):
    with pytest.raises(SubscriberError, match=r"people\.csv:7: name is 1200 characters long"):
        make_subscriber(
            "a@example.org",
            "x" * 1200,
            ["weekly"],
            known=KNOWN,
            confirmed=True,
            source="t",
            now=clock,
            where="people.csv:7",
        )


def test_the_fast_path_for_plain_addresses_agrees_with_email_validator():
    from email_validator import validate_email

    samples = ["A.B+tag@Example.COM", "o'neil@x.example", "a@b.test", "a@sub.local", "a..b@x.com", "a@x-.com"]
    samples += ["a@ab--c.com", "a@xn--bcher-kva.com", "a@b.c", "a@1.2.3.4", "x" * 65 + "@x.com", "a_b@x_y.com"]
    for address in samples:
        try:
            checked = validate_email(address, check_deliverability=False, allow_smtputf8=False)
            expected = (checked.ascii_email or checked.normalized).lower()
        except Exception:
            expected = None
        try:
            found = normalise_email(address)
        except SubscriberError:
            found = None
        assert found == expected, address


def test_export_neutralises_cells_a_spreadsheet_would_run_as_formulas(store, tmp_path: Path, clock):
    names = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2", "@SUM(A1)", "\tTab", "Plain - name"]
    store.subscribers.upsert_many(
        [
            Subscriber(email=f"p{i}@example.org", name=name, status="confirmed", newsletters=KNOWN, source="=cmd|x")
            for i, name in enumerate(names)
        ],
        clock,
    )
    path = tmp_path / "out.csv"
    path.write_text(to_csv(store.subscribers.all()), encoding="utf-8", newline="")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["name"] for row in rows) == sorted([*("'" + name for name in names[:-1]), "Plain - name"])
    assert {row["source"] for row in rows} == {"'=cmd|x"}


def _cli(tmp_path: Path, *args: str):
    from click.testing import CliRunner

    from publisher.cli import cli

    config = tmp_path / "config.toml"
    if not config.exists():
        config.write_text(
            '[site]\nurl = "https://news.example.org"\n\n[newsletters.weekly]\n\n'
            '[[topics]]\nname = "asia"\ntags = ["asia"]\n\n[[topics]]\nname = "sport"\ntags = ["sport"]\n',
            encoding="utf-8",
        )
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def test_subscribers_add_sets_topics_and_time_zone(tmp_path):
    import json

    added = _cli(tmp_path, "subscribers", "add", "ann@example.org", "--topic", "asia", "--timezone", "Australia/Sydney")
    assert added.exit_code == 0 and "topics: asia; time zone: Australia/Sydney" in added.output
    _cli(tmp_path, "subscribers", "add", "ann@example.org", "--topic", "sport", "--confirmed")
    (ann,) = json.loads(_cli(tmp_path, "subscribers", "list", "--json").output)
    assert (ann["topics"], ann["timezone"], ann["status"]) == (["sport"], "Australia/Sydney", "confirmed")
    bad_zone = _cli(tmp_path, "subscribers", "add", "bob@example.org", "--timezone", "Mars/Olympus")
    assert bad_zone.exit_code == 1 and "--timezone: unknown time zone 'Mars/Olympus'" in bad_zone.output
    bad_topic = _cli(tmp_path, "subscribers", "add", "bob@example.org", "--topic", "opera")
    assert bad_topic.exit_code == 1 and "--topic: unknown topic opera ([[topics]]: asia, sport)" in bad_topic.output
    assert "bob@example.org" not in _cli(tmp_path, "subscribers", "list", "--json").output


def test_topics_match_in_any_case_or_by_label_and_an_unknown_one_rejects_its_row(tmp_path):
    """Issue 16: "Asia" in a CSV was dropped (the reader got everything), "politics" vanished."""
    import json

    (tmp_path / "config.toml").write_text(
        '[site]\nurl = "https://news.example.org"\n\n[newsletters.weekly]\n\n'
        '[[topics]]\nname = "asia"\nlabel = "Asie"\ntags = ["asia"]\n\n'
        '[[topics]]\nname = "europe"\ntags = ["europe"]\n',
        encoding="utf-8",
    )
    people = tmp_path / "people.csv"
    people.write_text(
        "email,name,newsletters,topics,timezone\n"
        "upper@example.org,U,weekly,Asia EUROPE,europe/berlin\n"
        "label@example.org,L,weekly,asie,\n"
        "bad@example.org,B,weekly,politics asia,\n",
        encoding="utf-8",
    )
    result = _cli(tmp_path, "subscribers", "import", str(people), "--confirmed")
    assert "people.csv:4: unknown topic politics ([[topics]]: asia, europe)" in result.output
    added = _cli(tmp_path, "subscribers", "add", "cli@example.org", "--topic", "Europe", "--topic", "ASIE")
    assert added.exit_code == 0 and "topics: asia europe" in added.output
    found = {
        p["email"]: (p["topics"], p["timezone"])
        for p in json.loads(_cli(tmp_path, "subscribers", "list", "--json").output)
    }
    listed = _cli(tmp_path, "subscribers", "list").output
    assert "upper@example.org (U)  weekly  topics: asia europe  time zone: Europe/Berlin" in listed
    assert found == {
        "upper@example.org": (["asia", "europe"], "Europe/Berlin"),
        "label@example.org": (["asia"], ""),
        "cli@example.org": (["asia", "europe"], ""),
    }


def test_the_csv_columns_topics_and_timezone_are_read(tmp_path):
    import json

    people = tmp_path / "people.csv"
    people.write_text(
        "email,name,newsletters,topics,timezone\n"
        "a@example.org,A,weekly,asia sport,America/Los_Angeles\n"
        "b@example.org,B,weekly,,\n"
        "c@example.org,C,weekly,asia,Nowhere/City\n",
        encoding="utf-8",
    )
    result = _cli(tmp_path, "subscribers", "import", str(people), "--confirmed")
    assert "people.csv:4: unknown time zone 'Nowhere/City'" in result.output
    found = {
        p["email"]: (p["topics"], p["timezone"])
        for p in json.loads(_cli(tmp_path, "subscribers", "list", "--json").output)
    }
    assert found == {"a@example.org": (["asia", "sport"], "America/Los_Angeles"), "b@example.org": ([], "")}
    exported = tmp_path / "exported.csv"
    _cli(tmp_path, "subscribers", "export", "--output", str(exported))
    assert "a@example.org,A,weekly,confirmed," in exported.read_text() and exported.read_text().split("\n")[1].endswith(
        ",asia sport,America/Los_Angeles"
    )


def test_a_forged_time_zone_is_a_one_line_error_from_the_cli_and_a_rejected_csv_row(tmp_path):
    for zone in ("America", "Etc", "A" * 100_000, "localtime", "Factory", "posixrules", "right/UTC", "posix/UTC"):
        added = _cli(tmp_path, "subscribers", "add", "bob@example.org", "--timezone", zone)
        assert added.exit_code == 1 and "--timezone: unknown time zone" in added.output, zone[:20]
        assert "Traceback" not in added.output and len(added.output.strip().splitlines()) == 1
        assert len(added.output) < 300  # a huge name is cut short in the message
    people = tmp_path / "people.csv"
    people.write_text(
        "email,timezone\na@example.org,America\nb@example.org,Etc\nc@example.org," + "A" * 100_000 + "\n"
        "d@example.org,right/UTC\ne@example.org,Europe/Paris\n",
        encoding="utf-8",
    )
    result = _cli(tmp_path, "subscribers", "import", str(people), "--confirmed")
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for line in (2, 3, 4, 5):
        assert f"people.csv:{line}: unknown time zone" in result.output
    listed = _cli(tmp_path, "subscribers", "list", "--json").output
    assert "e@example.org" in listed and "a@example.org" not in listed and "d@example.org" not in listed


# --- suppression: what protects an address, and what lifts it ------------------------------------


class Shell:
    """A config on `database_url` with two newsletters and a VERP return path, driven by the CLI."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.folder, self.issues = tmp_path, 0
        self.config = tmp_path / "config.toml"
        self.config.write_text(
            f'[site]\nurl = "https://news.example.org"\npostal_address = "1 Sample Street, Exampletown"\n'
            f'[database]\nurl = "{database_url}"\n[newsletters.weekly]\n[newsletters.daily]\n'
            '[delivery]\nreturn_path = "bounces@news.example.org"\n',
            encoding="utf-8",
        )

    def __call__(self, *args: str):
        return CliRunner().invoke(cli, ["--config", str(self.config), *args])

    def came_back(self, sample: str, email: str) -> str:
        """`sample` (tests/data/inbound), answering an issue sent to `email`, read by `inbound import`."""
        settings = load_settings(self.config)
        store = Store.open(settings.database.url)
        try:
            self.issues += 1
            issue = make_issue(store, f"Issue {self.issues}", datetime.now(UTC), self.issues)
            token = verp.make_token(settings.secret_keys, issue.id, store.subscribers.get(email).id)
        finally:
            store.close()
        raw = (CORPUS / sample).read_bytes().replace(SAMPLE_TOKEN.encode(), token.encode())
        path = self.folder / f"{self.issues}.eml"
        path.write_bytes(raw.replace(b"alice@example.com", email.encode()))
        return self("inbound", "import", str(path)).output

    def people(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        listed = json.loads(self("subscribers", "list", "--json").output)
        return {person["email"]: (person["status"], tuple(person["newsletters"])) for person in listed}

    def suppressed(self) -> list[tuple[str, str]]:
        return [(row["email"], row["reason"]) for row in json.loads(self("subscribers", "suppressed", "--json").output)]


def test_a_complainer_is_left_unchanged_by_subscribers_add(tmp_path, database_url):
    cli_ = Shell(tmp_path, database_url)
    assert cli_("subscribers", "add", "ann@example.org", "--confirmed").exit_code == 0
    assert "1 complaint" in cli_.came_back("arf-complaint.eml", "ann@example.org")
    assert cli_.suppressed() == [("ann@example.org", "complaint")]
    for extra in (["--confirmed"], [], ["--newsletter", "daily", "--confirmed"]):
        added = cli_("subscribers", "add", "ann@example.org", *extra)
        assert added.exit_code == 1, added.output
        assert added.output.strip() == (
            "error: ann@example.org is suppressed (it bounced or complained), so it was left unchanged: "
            "`publisher subscribers unsuppress ann@example.org --reason …` restores it"
        )
    assert cli_.people() == {"ann@example.org": ("unsubscribed", ())}


def test_unsuppress_goes_back_to_the_status_before_and_never_invents_consent(tmp_path, database_url):
    cli_ = Shell(tmp_path, database_url)
    for email in ("bob@example.org", "cy@example.org", "dee@example.org"):
        cli_("subscribers", "add", email, "--confirmed")
    cli_("subscribers", "remove", "cy@example.org")  # unsubscribed, then a late bounce of an earlier issue
    assert "1 bounce" in cli_.came_back("postfix-user-unknown.eml", "bob@example.org")
    assert "1 bounce" in cli_.came_back("gmail-dsn.eml", "cy@example.org")
    assert "1 complaint" in cli_.came_back("arf-complaint.eml", "dee@example.org")
    assert cli_.people() == {
        "bob@example.org": ("bounced", ("daily", "weekly")),
        "cy@example.org": ("unsubscribed", ()),
        "dee@example.org": ("unsubscribed", ()),
    }
    assert sorted(cli_.suppressed()) == [
        ("bob@example.org", "hard_bounce"),
        ("cy@example.org", "hard_bounce"),
        ("dee@example.org", "complaint"),
    ]

    bob = cli_("subscribers", "unsuppress", "bob@example.org", "--reason", "the mailbox is back")
    assert bob.output == "bob@example.org is confirmed again and will get the next issue (daily weekly)\n"
    for email in ("cy@example.org", "dee@example.org"):
        lifted = cli_("subscribers", "unsuppress", email, "--reason", "asked by phone")
        assert lifted.exit_code == 0
        assert lifted.output == (
            f"{email} is no longer suppressed but stays unsubscribed: it gets nothing until it subscribes again\n"
        )
    assert cli_.people() == {
        "bob@example.org": ("confirmed", ("daily", "weekly")),
        "cy@example.org": ("unsubscribed", ()),
        "dee@example.org": ("unsubscribed", ()),
    }
    assert cli_.suppressed() == []

    unknown = cli_("subscribers", "unsuppress", "nobody@example.org", "--reason", "typo")
    assert (unknown.exit_code, unknown.output) == (1, "error: no such subscriber: nobody@example.org\n")
    blank = cli_("subscribers", "unsuppress", "bob@example.org", "--reason", "  ")
    assert blank.exit_code == 1 and "--reason: say why" in blank.output
    again = cli_("subscribers", "unsuppress", "bob@example.org", "--reason", "twice")
    assert (again.exit_code, again.output) == (1, "error: bob@example.org is not suppressed (it is confirmed)\n")


def test_subscriber_changes_at_the_shell_are_in_the_audit_log(tmp_path, database_url):
    cli_ = Shell(tmp_path, database_url)
    people = tmp_path / "people.csv"
    people.write_text("email,name,newsletters\nfay@example.org,Fay,weekly\n", encoding="utf-8")
    cli_("subscribers", "add", "eve@example.org", "--confirmed")
    cli_("subscribers", "import", str(people))
    cli_("subscribers", "remove", "fay@example.org")
    cli_.came_back("postfix-user-unknown.eml", "eve@example.org")
    cli_("subscribers", "unsuppress", "eve@example.org", "--reason", "the domain was renewed")
    entries = json.loads(cli_("admin", "audit", "--json").output)
    actor = f"cli:{getpass.getuser()}"
    assert [(e["actor"], e["action"]) for e in reversed(entries)] == [
        (actor, "subscriber.add"),
        (actor, "subscribers.import"),
        (actor, "subscriber.unsubscribe"),
        (actor, "subscriber.unsuppress"),
    ]
    assert entries[0]["detail"] == {
        "email": "eve@example.org",
        "reason": "the domain was renewed",
        "status": "confirmed",
    }
    assert entries[1]["detail"] == {"email": "fay@example.org"}
    assert entries[2]["detail"] == {"file": str(people), "added": 1, "updated": 0}
