"""Bringing a list in: other services' exports recognised, consent dates and opt-outs kept."""

import contextlib
import json
import os
import pty
import re
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from publisher.cli import cli
from publisher.errors import SubscriberError
from publisher.list_import import ColumnMap, Known, detect, import_rows, parse_maps, read_rows, split_tags
from tests.helpers import REPO

EXPORTS = REPO / "tests" / "data" / "exports"
KNOWN = Known(("weekly", "daily"), ("offers",))
NOW = datetime(2025, 10, 20, 12, 0, tzinfo=UTC)


def rows(name: str, *maps: str, newsletters=(), confirmed=True):
    plan, found = read_rows(EXPORTS / name, parse_maps(maps, newsletters), KNOWN, confirmed=confirmed, now=NOW)
    return plan, list(found)


def people(name: str, *maps: str, **options) -> dict:
    return {row.subscriber.email: row.subscriber for row in rows(name, *maps, **options)[1] if row.subscriber}


@pytest.mark.parametrize(
    ("name", "service"),
    [
        ("mailchimp_subscribed.csv", "mailchimp"),
        ("mailchimp_unsubscribed.csv", "mailchimp"),
        ("mailchimp_cleaned.csv", "mailchimp"),
        ("substack.csv", "substack"),
        ("buttondown.csv", "buttondown"),
        ("listmonk.csv", "listmonk"),
    ],
)
def test_each_services_export_is_recognised_from_its_header(name, service):
    header = (EXPORTS / name).read_text(encoding="utf-8").splitlines()[0].replace('"', "").split(",")
    assert detect(header).name == service
    assert detect(["email", "name", "newsletters"]).name == "publisher"
    assert detect(["E-Mail", "Vorname"]) is None


def test_mailchimp_keeps_the_confirm_time_names_and_maps_tags_to_newsletters():
    found = people("mailchimp_subscribed.csv", "tag:Weekly=weekly", "tag:vip=daily")
    ada = found["ada.lovelace@example.com"]
    assert (ada.name, ada.status, ada.newsletters) == ("Ada Lovelace", "confirmed", ("weekly", "daily"))
    assert ada.consent_at == datetime(2021, 3, 14, 9, 31, 2, tzinfo=UTC)  # CONFIRM_TIME, not OPTIN_TIME
    assert ada.source == "import:mailchimp" and "2021-03-14 09:31:02" in ada.consent_text
    assert found["alan.turing@example.com"].consent_at == datetime(2023, 7, 19, 6, 0, 10, tzinfo=UTC)  # OPTIN_TIME
    assert found["alan.turing@example.com"].newsletters == ()  # no tag rule matched
    assert found["grace.hopper@example.com"].newsletters == ("weekly",)


def test_a_bad_row_is_reported_with_its_line_and_the_rest_kept():
    _, found = rows("mailchimp_subscribed.csv")
    errors = [row.error for row in found if row.error]
    assert len(errors) == 1 and errors[0].startswith(f"{EXPORTS / 'mailchimp_subscribed.csv'}:5: 'not-an-address'")


@pytest.mark.parametrize(
    ("name", "email", "status"),
    [
        ("mailchimp_unsubscribed.csv", "katherine.johnson@example.com", "unsubscribed"),
        ("mailchimp_cleaned.csv", "gone.away@example.com", "bounced"),
        ("substack.csv", "sophie.germain@example.com", "unsubscribed"),
        ("buttondown.csv", "lise.meitner@example.com", "unsubscribed"),
        ("buttondown.csv", "barbara.liskov@example.com", "pending"),  # never confirmed at Buttondown
        ("listmonk.csv", "spam.trap@example.com", "bounced"),
    ],
)
def test_opted_out_rows_never_become_subscribers_even_with_confirmed(name, email, status):
    person = people(name, confirmed=True)[email]
    assert person.status == status
    assert person.consent_at is None
    if status != "pending":
        assert person.newsletters == ()


def test_consent_dates_of_substack_buttondown_and_listmonk():
    assert people("substack.csv")["emmy.noether@example.com"].consent_at == datetime(
        2023, 9, 12, 8, 15, 30, 250000, tzinfo=UTC
    )
    assert people("buttondown.csv")["hedy.lamarr@example.com"].consent_at == datetime(
        2023, 4, 1, 10, 20, 30, 123456, tzinfo=UTC
    )
    wu = people("listmonk.csv")["chien-shiung.wu@example.com"]
    assert (wu.name, wu.consent_at) == ("Chien-Shiung Wu", datetime(2023, 2, 14, 9, 0, 0, 123456, tzinfo=UTC))


def test_without_confirmed_everyone_is_pending_and_no_consent_is_invented():
    found = people("substack.csv", confirmed=False)
    assert found["mary.somerville@example.com"].status == "pending"
    assert found["mary.somerville@example.com"].consent_at is None


def test_tags_are_read_as_each_service_writes_them():
    assert split_tags('"Weekly","VIP"') == ["Weekly", "VIP"]
    assert split_tags('["weekly", "vip"]') == ["weekly", "vip"]
    assert split_tags("['weekly', 'vip']") == ["weekly", "vip"]
    assert split_tags('[{"id": 3, "name": "Daily"}]') == ["Daily"]
    assert split_tags("a, b") == ["a", "b"]


def test_any_other_csv_is_read_through_map(tmp_path: Path):
    path = tmp_path / "crm.csv"
    path.write_text("Mail,Full name,Signed up,Lists\nx@example.com,X Y,2020-01-02 03:04:05,daily weekly\n")
    with pytest.raises(SubscriberError, match=r"crm\.csv:1: the header row must name .*--map COLUMN=email"):
        read_rows(path, ColumnMap(), KNOWN, confirmed=True, now=NOW)
    maps = parse_maps(["Mail=email", "full name=name", "Signed up=optin_at", "Lists=newsletters"])
    plan, found = read_rows(path, maps, KNOWN, confirmed=True, now=NOW)
    person = next(found).subscriber
    assert (person.email, person.name, person.newsletters) == ("x@example.com", "X Y", ("daily", "weekly"))
    assert person.consent_at == datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert any("Signed up → optin_at" in line for line in plan.describe())


def test_bad_maps_are_refused_before_any_row_is_read(tmp_path: Path):
    with pytest.raises(SubscriberError, match="unknown field 'mail'"):
        parse_maps(["Email Address=mail"])
    with pytest.raises(SubscriberError, match="lacks"):
        rows("substack.csv", "Nope=email")
    with pytest.raises(SubscriberError, match="unknown newsletter monthly"):
        rows("mailchimp_subscribed.csv", "tag:VIP=monthly")
    with pytest.raises(SubscriberError, match="unknown topic"):
        rows("mailchimp_subscribed.csv", "tag:VIP=topic:cars")
    assert people("mailchimp_subscribed.csv", "tag:VIP=topic:offers")["ada.lovelace@example.com"].topics == ("offers",)


def test_the_file_is_streamed_not_read_whole(tmp_path: Path):
    path = tmp_path / "many.csv"
    with path.open("w") as out:
        out.write("email,name,newsletters\n")
        for number in range(5000):
            out.write(f"user{number}@example.com,,weekly\n")
    _, found = read_rows(path, ColumnMap(), KNOWN, confirmed=False, now=NOW)
    first = next(found)
    assert first.subscriber.email == "user0@example.com"
    result = import_rows(None, found, NOW)  # a dry run: no writer
    assert (result.rows, result.statuses["pending"], result.added) == (4999, 4999, 0)


# --- through the command, on SQLite and PostgreSQL ---------------------------------------------


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[site]\nurl = "https://news.example.org"\n\n[database]\nurl = "{database_url}"\n\n'
        "[newsletters.weekly]\n[newsletters.daily]\n",
        encoding="utf-8",
    )
    return path


def run(config: Path, *args: str):
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


def listed(config: Path) -> dict:
    return {p["email"]: p for p in json.loads(run(config, "subscribers", "list", "--json").output)}


EXPECTED = {
    "mailchimp_subscribed.csv": ("ada.lovelace@example.com", "2021-03-14T09:31:02+00:00"),
    "substack.csv": ("mary.somerville@example.com", "2022-03-04T12:00:00+00:00"),
    "buttondown.csv": ("rosalind.franklin@example.com", "2022-12-24T18:00:00+00:00"),
    "listmonk.csv": ("dorothy.vaughan@example.com", "2022-08-30T16:45:10+00:00"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_export_imports_with_its_consent_dates_kept(config, name):
    result = run(config, "subscribers", "import", str(EXPORTS / name), "--confirmed", "--newsletter", "weekly")
    assert result.exit_code == 0, result.output
    service = name.split("_")[0].removesuffix(".csv")
    assert f"source recorded as 'import:{service}'" in result.output
    email, consent = EXPECTED[name]
    person = listed(config)[email]
    assert (person["status"], person["consent_at"], person["source"]) == ("confirmed", consent, f"import:{service}")
    assert person["newsletters"] == ["weekly"]


def test_unsubscribed_and_cleaned_files_stop_existing_subscribers(config):
    run(config, "subscribers", "add", "katherine.johnson@example.com", "--confirmed")
    run(config, "subscribers", "add", "gone.away@example.com", "--confirmed")
    run(config, "subscribers", "import", str(EXPORTS / "mailchimp_unsubscribed.csv"), "--confirmed")
    run(config, "subscribers", "import", str(EXPORTS / "mailchimp_cleaned.csv"), "--confirmed")
    found = listed(config)
    assert found["katherine.johnson@example.com"]["status"] == "unsubscribed"
    assert found["gone.away@example.com"]["status"] == "bounced"
    # and importing them again as subscribers does not bring them back
    again = run(config, "subscribers", "import", str(EXPORTS / "mailchimp_subscribed.csv"), "--confirmed")
    assert again.exit_code == 0
    assert listed(config)["gone.away@example.com"]["status"] == "bounced"


def test_dry_run_shows_the_format_mapping_and_counts_and_writes_nothing(config):
    result = run(config, "subscribers", "import", str(EXPORTS / "buttondown.csv"), "--dry-run", "--confirmed")
    assert result.exit_code == 0
    assert "format: Buttondown subscriber export (buttondown)" in result.output
    assert "creation_date → optin_at" in result.output
    assert "unsubscribed or suppressed rows from: subscriber_type" in result.output
    assert "dry run, nothing written: 4 rows — 1 pending, 2 confirmed, 1 unsubscribed, 0 rejected" in result.output
    assert listed(config) == {}


def test_pending_imports_say_how_to_reach_them(config):
    result = run(config, "subscribers", "import", str(EXPORTS / "substack.csv"))
    assert "3 added, 0 updated, 0 unchanged, 0 rejected (2 pending, 1 unsubscribed)" in result.output
    assert "2 addresses are pending confirmation: `publisher subscribers confirm-pending --send` asks them" in (
        result.output
    )


def test_the_original_format_keeps_working_and_merges_newsletters(config, tmp_path: Path):
    path = tmp_path / "people.csv"
    path.write_text("email,name,newsletters\nann@example.org,Ann,weekly\nann@example.org,,daily\nbob@example.org,,\n")
    result = run(config, "subscribers", "import", str(path))
    assert "2 added, 0 updated, 0 unchanged, 0 rejected" in result.output
    found = listed(config)
    assert (found["ann@example.org"]["name"], found["ann@example.org"]["newsletters"]) == ("Ann", ["daily", "weekly"])
    assert found["bob@example.org"]["newsletters"] == ["daily", "weekly"]
    again = run(config, "subscribers", "import", str(path), "--confirmed")
    assert "0 added, 2 updated, 0 unchanged" in again.output
    assert listed(config)["bob@example.org"]["status"] == "confirmed"
    assert listed(config)["bob@example.org"]["source"] == "import:people.csv"  # as before: the file's name


def test_a_suppressed_address_is_named_with_the_way_back_and_left_unchanged(config, tmp_path: Path):
    run(config, "subscribers", "import", str(EXPORTS / "mailchimp_cleaned.csv"))
    added = run(config, "subscribers", "add", "gone.away@example.com", "--confirmed", "--newsletter", "daily")
    assert added.exit_code == 1
    assert "gone.away@example.com is suppressed" in added.stderr
    assert "`publisher subscribers unsuppress gone.away@example.com --reason …` restores it" in added.stderr
    path = tmp_path / "back.csv"
    path.write_text("email,name,newsletters\ngone.away@example.com,,daily\nnew@example.com,,daily\n")
    imported = run(config, "subscribers", "import", str(path), "--confirmed")
    assert imported.exit_code == 0 and "skipped gone.away@example.com is suppressed" in imported.stderr
    person = listed(config)["gone.away@example.com"]
    assert (person["status"], person["newsletters"]) == ("bounced", [])
    assert listed(config)["new@example.com"]["status"] == "confirmed"


class RecordingWriter:
    def __init__(self, fail_at: int = 0) -> None:
        self.batches: list[list[str]] = []
        self.fail_at = fail_at

    def last_id(self):
        return 0

    def import_batch(self, people, now, suppressions=(), since_id=None):
        if self.fail_at and len(self.batches) + 1 == self.fail_at:
            raise SubscriberError("the database went away")
        self.batches.append([person.email for person in people])
        return len(people), 0, 0, [], [], Counter(person.status for person in people)


def test_batches_are_written_in_file_order_and_a_failing_batch_stops_the_import(tmp_path: Path):
    path = tmp_path / "many.csv"
    path.write_text("email\n" + "".join(f"u{n}@example.com\n" for n in range(2500)))
    writer = RecordingWriter()
    result = import_rows(writer, read_rows(path, ColumnMap(), KNOWN, confirmed=False, now=NOW)[1], NOW, batch_size=1000)
    assert [len(batch) for batch in writer.batches] == [1000, 1000, 500]
    assert writer.batches[0][0] == "u0@example.com" and writer.batches[2][-1] == "u2499@example.com"
    assert result.added == 2500
    failing = RecordingWriter(fail_at=2)
    with pytest.raises(SubscriberError, match="went away"):
        import_rows(failing, read_rows(path, ColumnMap(), KNOWN, confirmed=False, now=NOW)[1], NOW, batch_size=1000)
    assert len(failing.batches) == 1


def test_a_tags_column_read_as_newsletters_matches_names_in_any_case():
    _, found = rows("mailchimp_subscribed.csv", "TAGS=newsletters")
    by_email = {row.subscriber.email: row.subscriber for row in found if row.subscriber}
    assert by_email["grace.hopper@example.com"].newsletters == ("weekly",)  # tagged "Weekly"
    errors = [row.error for row in found if row.error]
    assert any(":2: unknown newsletter VIP" in error for error in errors)  # Ada's VIP is no newsletter


def test_an_import_never_undoes_an_opt_out_from_one_newsletter(config, database_url, tmp_path: Path):
    from publisher.store import Store

    run(config, "subscribers", "add", "ann@example.org", "--confirmed")
    store = Store.open(database_url)
    try:
        person = store.subscribers.get("ann@example.org")
        store.subscribers.remove_newsletter(person.id, "daily", NOW)
    finally:
        store.close()
    path = tmp_path / "again.csv"
    path.write_text("email,name,newsletters\nann@example.org,Ann,weekly daily\n")
    assert "0 added, 1 updated" in run(config, "subscribers", "import", str(path), "--confirmed").output
    assert listed(config)["ann@example.org"]["newsletters"] == ["weekly"]


def test_a_topics_column_gives_the_offered_topics(tmp_path: Path):
    path = tmp_path / "crm.csv"
    path.write_text("email,interests\na@example.com,Offers\nb@example.com,offers cars\n")
    _, found = read_rows(path, parse_maps(["interests=topics"]), KNOWN, confirmed=False, now=NOW)
    assert next(found).subscriber.topics == ("offers",)  # compared in any case
    assert next(found).error.endswith("crm.csv:3: unknown topic cars ([[topics]]: offers)")  # never dropped silently


def test_importing_the_same_file_twice_counts_everyone_unchanged(config, tmp_path: Path):
    path = tmp_path / "people.csv"
    path.write_text("email,name,newsletters\nann@example.org,Ann,weekly\nbob@example.org,Bob,daily\n")
    assert "2 added, 0 updated, 0 unchanged" in run(config, "subscribers", "import", str(path)).output
    assert "0 added, 0 updated, 2 unchanged" in run(config, "subscribers", "import", str(path)).output
    path.write_text("email,name,newsletters\nann@example.org,Ann,daily\nbob@example.org,Bob,daily\n")
    assert "0 added, 1 updated, 1 unchanged" in run(config, "subscribers", "import", str(path)).output
    assert listed(config)["ann@example.org"]["newsletters"] == ["daily", "weekly"]


def test_our_own_csv_is_described_by_the_columns_it_has(config, tmp_path):
    people = tmp_path / "people.csv"
    people.write_text("email,name\nada@example.org,Ada\n", encoding="utf-8")
    result = run(config, "subscribers", "import", str(people), "--dry-run")
    assert result.exit_code == 0
    assert "format: publisher's own CSV with the columns email,name (publisher)" in result.output
    assert "newsletters (publisher)" not in result.output


def test_a_long_import_shows_its_counts_on_a_terminal_and_only_the_summary_in_a_log(tmp_path: Path):
    config = tmp_path / "config.toml"
    config.write_text(
        f'[site]\nurl = "https://news.example.org"\n[database]\nurl = "sqlite:///{tmp_path / "p.db"}"\n'
        "[newsletters.weekly]\n",
        encoding="utf-8",
    )
    people = tmp_path / "people.csv"
    people.write_text("email\n" + "".join(f"reader{n}@example.com\n" for n in range(12_000)), encoding="utf-8")
    command = [sys.executable, "-m", "publisher", "--config", str(config), "subscribers", "import", str(people)]
    terminal, attached = pty.openpty()
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=attached, timeout=120, check=False)
        os.close(attached)
        drawn = b""
        with contextlib.suppress(OSError):  # the end of the terminal's output
            while chunk := os.read(terminal, 65536):
                drawn += chunk
    finally:
        os.close(terminal)
    assert done.returncode == 0
    assert "12000 added" in done.stdout.decode()
    assert re.search(rb"people\.csv: [\d,]+ rows read, [\d,]+ added, 0 updated, 0 rejected", drawn)
    assert drawn.endswith(b"\r\x1b[K")  # the counts line is wiped before the summary

    logged = run(config, "subscribers", "import", str(people))
    assert "rows read" not in logged.output and "12000 unchanged" in logged.output


# --- review findings (issue 15): suppressions, encoding, round trips, duplicates, groups ----------


def suppressed(config: Path) -> dict:
    return {s["email"]: s for s in json.loads(run(config, "subscribers", "suppressed", "--json").output)}


def test_imported_suppressions_name_the_old_service_its_time_and_the_line(config, tmp_path: Path):
    run(config, "subscribers", "add", "gone.away@example.com", "--confirmed")  # active here: the file stops it
    assert run(config, "subscribers", "import", str(EXPORTS / "mailchimp_cleaned.csv")).exit_code == 0
    path = tmp_path / "buttondown.csv"
    path.write_text(
        "email,tags,subscriber_type,creation_date\n"
        "angry@example.com,[],complained,2022-01-01 00:00:00\n"
        "fine@example.com,[],regular,2022-01-01 00:00:00\n",
        encoding="utf-8",
    )
    assert run(config, "subscribers", "import", str(path)).exit_code == 0
    found = suppressed(config)
    cleaned = found["gone.away@example.com"]
    assert (cleaned["reason"], cleaned["at"]) == ("import:mailchimp cleaned", "2024-03-01T02:00:00+00:00")
    assert cleaned["evidence"] == f"{EXPORTS / 'mailchimp_cleaned.csv'}:2"
    assert found["angry@example.com"]["reason"] == "import:buttondown complained"
    assert found["angry@example.com"]["evidence"] == f"{path}:2"
    assert "fine@example.com" not in found
    run(config, "subscribers", "import", str(EXPORTS / "listmonk.csv"))
    trap = suppressed(config)["spam.trap@example.com"]
    assert (trap["reason"], trap["at"]) == ("import:listmonk blocklisted", "2023-03-03T03:03:03+00:00")  # updated_at
    assert "refused during the SMTP session" not in run(config, "subscribers", "suppressed").output
    # importing the file again adds no second entry; unsuppress lifts it as any other
    run(config, "subscribers", "import", str(EXPORTS / "mailchimp_cleaned.csv"))
    assert len([s for s in suppressed(config) if s == "gone.away@example.com"]) == 1
    lifted = run(config, "subscribers", "unsuppress", "gone.away@example.com", "--reason", "asked us")
    assert lifted.exit_code == 0 and "gone.away@example.com" not in suppressed(config)


def test_a_bad_byte_late_in_the_file_stops_the_import_before_anything_is_written(config, tmp_path: Path):
    path = tmp_path / "mid.csv"
    good = "".join(f"reader{n}@example.com,Reader {n},weekly\n" for n in range(5000))
    path.write_bytes(
        b"email,name,newsletters\n" + good.encode() + "ren\xe9@example.com,Ren\xe9,weekly\n".encode("latin-1")
    )
    result = run(config, "subscribers", "import", str(path))
    assert result.exit_code == 1
    assert f"{path}:5002: byte 0xe9 is not UTF-8 text" in result.stderr
    assert "nothing was imported" in result.stderr and "Traceback" not in result.output
    assert listed(config) == {}


def test_a_zip_archive_is_named_as_one(config, tmp_path: Path):
    import zipfile

    path = tmp_path / "audience.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("subscribed_members_export.csv", (EXPORTS / "mailchimp_subscribed.csv").read_text())
    result = run(config, "subscribers", "import", str(path))
    assert result.exit_code == 1
    assert f"{path}: is a zip archive: unzip it and import each CSV" in result.stderr


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_a_semicolon_or_tab_separated_file_is_read_with_its_delimiter(config, tmp_path: Path, delimiter):
    path = tmp_path / "people.csv"
    path.write_text(
        delimiter.join(["email", "name", "newsletters"]) + "\n" + delimiter.join(["ann@example.org", "Ann", "daily"]),
        encoding="utf-8",
    )
    result = run(config, "subscribers", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "columns separated by" in result.output
    assert (listed(config)["ann@example.org"]["name"], listed(config)["ann@example.org"]["newsletters"]) == (
        "Ann",
        ["daily"],
    )


def test_guarded_cells_of_our_export_import_back_as_they_were(config, tmp_path: Path):
    run(config, "subscribers", "add", "=cmd@example.com", "--name", "+Plus Name", "--confirmed")
    run(config, "subscribers", "add", "--confirmed", "--", "-dash@example.com")
    exported = tmp_path / "export.csv"
    assert run(config, "subscribers", "export", "-o", str(exported)).exit_code == 0
    assert "'=cmd@example.com" in exported.read_text()  # guarded for spreadsheets
    result = run(config, "subscribers", "import", str(exported))
    assert "0 added, 0 updated, 2 unchanged, 0 rejected" in result.output
    found = listed(config)
    assert sorted(found) == ["-dash@example.com", "=cmd@example.com"]
    assert found["=cmd@example.com"]["name"] == "+Plus Name"


@pytest.mark.parametrize("header", ["email,email,name", "Email,EMAIL,name"])
def test_a_repeated_column_that_is_read_is_refused(tmp_path: Path, header):
    path = tmp_path / "twice.csv"
    path.write_text(f"{header}\na@example.com,b@example.com,A\n", encoding="utf-8")
    with pytest.raises(SubscriberError, match=r"(?i)twice\.csv:1: the column 'EMAIL' appears twice .*columns 1 and 2"):
        read_rows(path, ColumnMap(), KNOWN, confirmed=False, now=NOW)


def test_a_repeated_column_nothing_reads_is_allowed(tmp_path: Path):
    path = tmp_path / "extra.csv"
    path.write_text("email,note,note,,\na@example.com,x,y,,\n", encoding="utf-8")
    _, found = read_rows(path, ColumnMap(), KNOWN, confirmed=False, now=NOW)
    assert next(found).subscriber.email == "a@example.com"


def test_two_maps_for_one_field_or_one_column_are_refused():
    with pytest.raises(
        SubscriberError, match=r"--map 'Mail=email': the field email is already read by --map 'E=email'"
    ):
        parse_maps(["E=email", "Mail=email"])
    with pytest.raises(SubscriberError, match=r"the column 'e' is already read by --map 'E=email'"):
        parse_maps(["E=email", "e=name"])
    assert parse_maps(["a=ignore", "b=ignore"]).columns == {"a": "ignore", "b": "ignore"}


def test_status_is_accepted_in_any_case(config):
    run(config, "subscribers", "add", "ann@example.org", "--confirmed")
    for command in ("list", "export"):
        for status in ("confirmed", "CONFIRMED", "Confirmed"):
            result = run(config, "subscribers", command, "--status", status)
            assert result.exit_code == 0, result.output
            assert "ann@example.org" in result.output
    assert "ann@example.org" not in run(config, "subscribers", "list", "--status", "pending").output


GROUPS = (
    '"Email Address","First Name","Newsletters"\n'
    'ann@example.com,Ann,"Weekly digest, Daily brief"\n'
    "bob@example.com,Bob,Weekly digest\n"
    "cid@example.com,Cid,\n"
)


def test_mailchimp_group_values_map_to_newsletters(tmp_path: Path):
    path = tmp_path / "groups.csv"
    path.write_text(GROUPS, encoding="utf-8")
    maps = parse_maps(["Newsletters:Weekly digest=weekly", "newsletters:daily brief=daily"])
    plan, found = read_rows(path, maps, KNOWN, confirmed=False, now=NOW)
    by_email = {row.subscriber.email: row.subscriber.newsletters for row in found}
    assert by_email == {
        "ann@example.com": ("weekly", "daily"),
        "bob@example.com": ("weekly",),
        "cid@example.com": (),
    }
    assert "newsletters: weekly for Newsletters 'weekly digest'; daily for Newsletters 'daily brief'" in plan.describe()
    assert not any("Newsletters" in line for line in plan.describe() if line.startswith("ignored"))


def test_a_group_column_read_as_newsletters_gives_the_same_error_for_each_row(tmp_path: Path):
    path = tmp_path / "groups.csv"
    path.write_text(GROUPS, encoding="utf-8")
    _, found = read_rows(path, parse_maps(["Newsletters=newsletters"]), KNOWN, confirmed=False, now=NOW)
    errors = [row.error for row in found if row.error]
    assert len(errors) == 2
    for line, error in zip((2, 3), errors, strict=True):
        assert f"groups.csv:{line}: unknown newsletter " in error
        assert 'to map other values use --map "Newsletters:VALUE=NEWSLETTER"' in error


def test_duplicate_rows_are_counted_once(config, tmp_path: Path):
    path = tmp_path / "dups.csv"
    path.write_text("email\nann@example.org\nANN@example.org\nbob@example.org\n", encoding="utf-8")
    result = run(config, "subscribers", "import", str(path))
    assert "2 added, 0 updated, 0 unchanged, 0 rejected, 1 duplicate rows merged (2 pending)" in result.output
    assert "2 addresses are pending confirmation" in result.output
    dry = run(config, "subscribers", "import", str(path), "--dry-run")
    assert "dry run, nothing written: 3 rows — 2 pending, 0 rejected, 1 duplicate rows merged" in dry.output


def test_duplicates_further_apart_than_a_batch_are_counted_once(database_url, tmp_path: Path):
    from publisher.store import Store

    path = tmp_path / "many.csv"
    path.write_text("email\n" + "".join(f"u{n}@example.com\n" for n in range(30)) + "U3@example.com\n")
    store = Store.open(database_url)
    try:
        plan_rows = read_rows(path, ColumnMap(), KNOWN, confirmed=False, now=NOW)[1]
        result = import_rows(store.subscribers, plan_rows, NOW, batch_size=10)
    finally:
        store.close()
    assert (result.added, result.updated, result.unchanged, result.duplicates) == (30, 0, 0, 1)
    assert result.statuses["pending"] == 30


def test_a_file_of_stopped_rows_says_what_they_become(config):
    cleaned = run(config, "subscribers", "import", str(EXPORTS / "mailchimp_cleaned.csv"), "--dry-run")
    assert "status: bounced (suppressed), every row" in cleaned.output
    assert "import:mailchimp cleaned" in cleaned.output and "status: pending" not in cleaned.output
    unsubscribed = run(config, "subscribers", "import", str(EXPORTS / "mailchimp_unsubscribed.csv"), "--dry-run")
    assert "status: unsubscribed, every row" in unsubscribed.output and "pending" not in unsubscribed.output


def test_mailchimps_timezone_column_is_read_and_a_bad_zone_left_empty(tmp_path: Path):
    path = tmp_path / "zones.csv"
    path.write_text(
        '"Email Address","TIMEZONE"\na@example.com,america/new_york\nb@example.com,Mars/Olympus\n', encoding="utf-8"
    )
    plan, found = read_rows(path, ColumnMap(), KNOWN, confirmed=False, now=NOW)
    assert [(row.subscriber.email, row.subscriber.timezone) for row in found] == [
        ("a@example.com", "America/New_York"),
        ("b@example.com", ""),
    ]
    assert "TIMEZONE → timezone" in "\n".join(plan.describe())
    _, strict = read_rows(path, parse_maps(["TIMEZONE=timezone"]), KNOWN, confirmed=False, now=NOW)
    assert "unknown time zone" in list(strict)[1].error  # asked for by --map: a bad zone rejects the row


def test_import_help_names_every_field():
    text = CliRunner().invoke(cli, ["subscribers", "import", "--help"]).output
    assert "timezone" in text and "COLUMN:VALUE=NEWSLETTER" in text


# --- second review (issue 15): suppressed addresses, round trips, messages ----------------------


def _complain(config: Path, email: str) -> None:
    """A feedback-loop complaint about an issue sent to `email`, read by `inbound import`."""
    from publisher import verp
    from publisher.config import load_settings
    from publisher.store import Store
    from tests.helpers import CORPUS, SAMPLE_TOKEN, make_issue

    settings = load_settings(config)
    store = Store.open(settings.database.url)
    try:
        issue = make_issue(store, "Issue 1", datetime.now(UTC), 1)
        token = verp.make_token(settings.secret_keys, issue.id, store.subscribers.get(email).id)
    finally:
        store.close()
    raw = (CORPUS / "arf-complaint.eml").read_bytes().replace(SAMPLE_TOKEN.encode(), token.encode())
    path = config.parent / "complaint.eml"
    path.write_bytes(raw.replace(b"alice@example.com", email.encode()))
    assert "1 complaint" in run(config, "inbound", "import", str(path)).output


@pytest.fixture
def verp_config(tmp_path: Path, database_url: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[site]\nurl = "https://news.example.org"\npostal_address = "1 Sample Street, Exampletown"\n'
        f'[database]\nurl = "{database_url}"\n[newsletters.weekly]\n[newsletters.daily]\n'
        '[delivery]\nreturn_path = "bounces@news.example.org"\n',
        encoding="utf-8",
    )
    return path


def test_suppressed_addresses_are_left_wholly_unchanged_and_counted_apart(verp_config: Path, tmp_path: Path):
    config = verp_config
    stopped = tmp_path / "stopped.csv"
    stopped.write_text("email,name,newsletters,status\nconf@a.example,Conf,,bounced\npend@a.example,Pend,,bounced\n")
    assert run(config, "subscribers", "import", str(stopped)).exit_code == 0
    run(config, "subscribers", "add", "ann@a.example", "--name", "Ann", "--confirmed")
    _complain(config, "ann@a.example")  # unsubscribed, with an active suppression
    before = listed(config)
    path = tmp_path / "back.csv"
    path.write_text(
        "email,name,newsletters\nconf@a.example,Renamed,daily weekly\npend@a.example,Renamed2,daily\n"
        "ann@a.example,Annie,weekly\nnew@a.example,New,daily\n"
    )
    dry = run(config, "subscribers", "import", str(path), "--confirmed", "--dry-run")
    assert "dry run, nothing written: 4 rows — 1 confirmed, 3 left unchanged (suppressed), 0 rejected" in dry.output
    confirmed = run(config, "subscribers", "import", str(path), "--confirmed")
    assert confirmed.exit_code == 0, confirmed.output
    assert (
        "1 added, 0 updated, 0 unchanged, 3 left unchanged (suppressed), 0 rejected (1 confirmed)" in confirmed.output
    )
    for email in ("conf@a.example", "pend@a.example", "ann@a.example"):
        assert f"skipped {email} is suppressed" in confirmed.stderr
        assert listed(config)[email] == before[email]  # name, status, newsletters, consent: as they were
    assert "pending confirmation" not in confirmed.output
    # without --confirmed only the one address really pending afterwards is counted as pending
    path.write_text(path.read_text() + "newer@a.example,,weekly\n")
    pending = run(config, "subscribers", "import", str(path))
    assert "1 added, 0 updated, 1 unchanged, 3 left unchanged (suppressed), 0 rejected (1 pending, 1 confirmed)" in (
        pending.output
    )
    assert "1 address is pending confirmation: `publisher subscribers confirm-pending --send` asks them" in (
        pending.output
    )


def test_our_export_of_an_address_without_newsletters_imports_back_without_any(config, tmp_path: Path):
    tagged = tmp_path / "tagged.csv"
    tagged.write_text("email,name,tags\nx@c.example,A B,other\ny@c.example,,vip\n")
    made = run(config, "subscribers", "import", str(tagged), "--map", "tags=tags", "--map", "tag:vip=weekly")
    assert "1 address matched no newsletter (no tag or value rule fits them)" in made.output
    assert listed(config)["x@c.example"]["newsletters"] == []
    exported = tmp_path / "export.csv"
    run(config, "subscribers", "export", "--output", str(exported))
    assert "x@c.example,A B,,pending," in exported.read_text()
    again = run(config, "subscribers", "import", str(exported))
    assert "newsletters: the newsletters column; none when a row's cell is empty (as exported)" in again.output
    assert "0 added, 0 updated, 2 unchanged, 0 rejected (2 pending)" in again.output
    assert listed(config)["x@c.example"]["newsletters"] == []
    # a file without the status column keeps the rule: an empty cell means every newsletter
    plain = tmp_path / "plain.csv"
    plain.write_text("email,name,newsletters\nz@c.example,,\n")
    imported = run(config, "subscribers", "import", str(plain))
    assert "every configured newsletter when a row names none" in imported.output
    assert listed(config)["z@c.example"]["newsletters"] == ["daily", "weekly"]


def test_an_unterminated_quote_is_named_on_the_line_it_starts(config, tmp_path: Path):
    path = tmp_path / "quote.csv"
    path.write_text('email,name,newsletters\n"b@x.example,Bob,weekly\nc@x.example,Cy,weekly\nd@x.example,Di,daily\n')
    result = run(config, "subscribers", "import", str(path))
    assert result.exit_code == 1
    assert f"skipped {path}:2: unterminated quote: the quoted cell that starts on this line is never closed" in (
        result.stderr
    )
    assert "lines 2–4 were read as one cell and not imported" in result.stderr
    assert "not a valid email address" not in result.stderr
    assert result.output.splitlines()[-2] == f"{path}: 0 added, 0 updated, 0 unchanged, 1 rejected"  # never "()"
    # a quoted cell across lines that is closed is read as before
    path.write_text('email,name,newsletters\na@x.example,"Ann\nLee",weekly\n')
    assert "1 added" in run(config, "subscribers", "import", str(path)).output
    assert listed(config)["a@x.example"]["newsletters"] == ["weekly"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_file_is_named_as_one(config, tmp_path: Path, encoding: str):
    path = tmp_path / "unicode.csv"
    path.write_bytes("email,name\nann@example.org,Ann\n".encode(encoding))
    result = run(config, "subscribers", "import", str(path))
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: {path}: looks like UTF-16: save it as UTF-8 and import it again (nothing was imported)"
    )
    assert listed(config) == {}
