"""`subscribers confirm-pending`: every imported pending address asked once, through a real SMTP server."""

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sink import SinkHandler, smtp_sink
from sqlalchemy import delete

from publisher import verp
from publisher.cli import cli
from publisher.config import load_settings
from publisher.errors import DeliveryError
from publisher.reconfirm import send_confirmations
from publisher.signup import Mailer, confirm
from publisher.store import Store
from publisher.store.schema import subscriptions
from publisher.transports import make_transport
from tests.helpers import CORPUS, SAMPLE_TOKEN


def write_config(tmp_path: Path, database_url: str, port: int, *, delivery: str = "", web: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[site]\nurl = "https://news.example.org"\ntitle = "The Example"\n'
        f'postal_address = "1 Sample Street, Exampletown"\n\n[database]\nurl = "{database_url}"\n\n'
        '[newsletters.weekly]\ntitle = "Weekly"\n[newsletters.daily]\ntitle = "Daily"\n\n'
        f"[web]\n{web}\n"
        f'[delivery]\ntransport = "smtp"\nbatch_size = 100\n{delivery}\n'
        f'[delivery.smtp]\nhost = "127.0.0.1"\nport = {port}\nconnections = 4\ntimeout = 10\n',
        encoding="utf-8",
    )
    return path


def run(config: Path, *args: str):
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


def import_pending(config: Path, tmp_path: Path, count: int, newsletter: str = "weekly") -> list[str]:
    emails = [f"reader{number:04d}@example.com" for number in range(count)]
    path = tmp_path / f"{newsletter}.csv"
    path.write_text("email,name,newsletters\n" + "".join(f"{e},,{newsletter}\n" for e in emails), encoding="utf-8")
    result = run(config, "subscribers", "import", str(path))
    assert f"{count} {'address is' if count == 1 else 'addresses are'} pending confirmation" in result.output
    return emails


def test_a_thousand_pending_addresses_get_exactly_one_mail_and_a_second_run_sends_none(tmp_path, database_url):
    handler = SinkHandler()
    with smtp_sink(handler) as port:
        config = write_config(tmp_path, database_url, port)
        emails = import_pending(config, tmp_path, 1000)
        preview = run(config, "subscribers", "confirm-pending")
        assert "1000 pending addresses would be asked to confirm" in preview.output
        assert "reader0999@example.com" in preview.output and handler.received() == {}
        first = run(config, "subscribers", "confirm-pending", "--send")
        assert first.exit_code == 0 and "1000 sent, 0 failed" in first.output
        second = run(config, "subscribers", "confirm-pending", "--send")
        assert "0 sent, 0 failed, 0 deferred (1000 sent in all, one per address asked)" in second.output
        assert "0 pending addresses would be asked" in run(config, "subscribers", "confirm-pending").output
    assert handler.received() == dict.fromkeys(emails, 1)
    mail = handler.parsed("reader0007@example.com")[0]
    assert mail["Subject"] == "Please confirm: do you still want Weekly?"
    assert "https://news.example.org/confirm/" in mail.get_content()


class FailingAfter:
    """A real SMTP transport whose relay 'goes away' after `limit` messages (a crash mid-run)."""

    def __init__(self, inner, limit: int) -> None:
        self.inner, self.limit, self.sent = inner, limit, 0

    def send_many(self, messages):
        if self.sent + len(messages) > self.limit:
            raise DeliveryError("the relay went away")
        self.sent += len(messages)
        return self.inner.send_many(messages)

    def close(self) -> None:
        self.inner.close()


def test_a_run_that_fails_half_way_is_finished_by_the_next_and_nobody_gets_two(tmp_path, database_url):
    handler = SinkHandler()
    with smtp_sink(handler) as port:
        config = write_config(tmp_path, database_url, port)
        emails = import_pending(config, tmp_path, 450)
        settings = load_settings(config)
        store = Store.open(settings.database.url)
        try:
            transport = FailingAfter(make_transport(settings.delivery), 300)
            with pytest.raises(DeliveryError):
                send_confirmations(settings, store, transport=transport)
            transport.close()
            assert sum(handler.received().values()) == 300
            report = send_confirmations(settings, store)
            assert (report.queued, report.sent) == (0, 150)
        finally:
            store.close()
    assert handler.received() == dict.fromkeys(emails, 1)


def test_the_link_in_the_mail_confirms_the_address_and_newsletter_filters_apply(tmp_path, database_url):
    handler = SinkHandler()
    with smtp_sink(handler) as port:
        config = write_config(tmp_path, database_url, port)
        import_pending(config, tmp_path, 3, "weekly")
        daily = tmp_path / "daily.csv"
        daily.write_text("email,name,newsletters\nday@example.com,Day,daily\n", encoding="utf-8")
        run(config, "subscribers", "import", str(daily))
        result = run(config, "subscribers", "confirm-pending", "--newsletter", "daily", "--send")
        assert "1 sent" in result.output
        assert handler.received() == {"day@example.com": 1}
        body = handler.parsed("day@example.com")[0].get_content()
        assert "Hello Day," in body and "Daily" in body
        token = re.search(r"https://news\.example\.org/confirm/(\S+)", body)[1]
        settings = load_settings(config)
        store = Store.open(settings.database.url)
        mailer = Mailer(settings)
        try:
            confirm(settings, store, mailer, token, datetime.now(UTC))
            person = store.subscribers.get("day@example.com")
        finally:
            mailer.close()
            store.close()
    assert (person.status, person.newsletters) == ("confirmed", ("daily",))


def test_addresses_confirmed_or_gone_meanwhile_are_not_asked(tmp_path, database_url):
    handler = SinkHandler(reject={"reader0001@example.com"})
    with smtp_sink(handler) as port:
        config = write_config(tmp_path, database_url, port)
        import_pending(config, tmp_path, 3)
        run(config, "subscribers", "add", "reader0000@example.com", "--confirmed")
        run(config, "subscribers", "remove", "reader0002@example.com")
        result = run(config, "subscribers", "confirm-pending", "--send", "--json")
        assert '"sent": 0' in result.output and '"failed": 1' in result.output
    listed = run(config, "subscribers", "list", "--json").output
    assert '"email": "reader0001@example.com",\n    "name": "",\n    "status": "bounced"' in listed
    assert handler.received() == {}


def test_a_killed_run_is_finished_by_the_next_and_at_most_its_batch_on_the_wire_goes_twice(tmp_path, database_url):
    import os
    import signal
    import subprocess
    import sys
    import time

    handler = SinkHandler()
    with smtp_sink(handler) as port:
        config = write_config(tmp_path, database_url, port)
        text = config.read_text().replace("batch_size = 100", 'batch_size = 50\nlease = "2s"')
        config.write_text(text.replace("timeout = 10", "timeout = 10\nrate_limit = 400"))
        emails = import_pending(config, tmp_path, 1000)
        command = [sys.executable, "-m", "publisher", "--config", str(config), "subscribers", "confirm-pending"]
        child = subprocess.Popen([*command, "--send"], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path.cwd())})
        deadline = time.monotonic() + 60
        while sum(handler.received().values()) < 200 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait()
        at_kill = sum(handler.received().values())
        assert 200 <= at_kill < 1000  # killed half-way
        time.sleep(2.5)  # the dead run's lease runs out
        result = run(config, "subscribers", "confirm-pending", "--send")
        assert "(1000 sent in all, one per address asked)" in result.output
    received = handler.received()
    assert set(received) == set(emails)
    twice = sorted(email for email, count in received.items() if count > 1)
    assert len(twice) <= 50 and max(received.values()) <= 2  # at most the one batch on the wire


def people(config: Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    listed = json.loads(run(config, "subscribers", "list", "--json").output)
    return {person["email"]: (person["status"], tuple(person["newsletters"])) for person in listed}


def bounce_for(sender: str, recipient: str, path: Path) -> Path:
    """A Postfix DSN for the message `sender` (its VERP envelope sender) sent to `recipient`."""
    raw = (
        (CORPUS / "postfix-user-unknown.eml")
        .read_bytes()
        .replace(SAMPLE_TOKEN.encode(), verp.tokens_in(sender)[0].encode())
    )
    path.write_bytes(raw.replace(b"alice@example.com", recipient.encode()))
    return path


def test_confirmation_mails_go_out_with_a_verp_sender_and_a_bounce_of_one_suppresses_its_address(
    tmp_path, database_url
):
    handler = SinkHandler()
    with smtp_sink(handler) as port:
        config = write_config(tmp_path, database_url, port, delivery='return_path = "bounces@news.example.org"')
        import_pending(config, tmp_path, 2)
        assert "2 sent, 0 failed" in run(config, "subscribers", "confirm-pending", "--send").output
    sender = handler.senders["reader0001@example.com"]
    assert re.fullmatch(r"bounces\+[a-z2-7]{29}@news\.example\.org", sender)
    assert handler.senders["reader0000@example.com"] not in (sender, "newsletter@news.example.org")
    assert handler.parsed("reader0001@example.com")[0]["From"] != sender  # readers still see the newsletter's From

    dsn = bounce_for(sender, "reader0001@example.com", tmp_path / "bounce.eml")
    assert "1 bounce" in run(config, "inbound", "import", str(dsn)).output
    suppressed = json.loads(run(config, "subscribers", "suppressed", "--json").output)
    assert [(row["email"], row["reason"]) for row in suppressed] == [("reader0001@example.com", "hard_bounce")]
    assert people(config) == {
        "reader0000@example.com": ("pending", ("weekly",)),
        "reader0001@example.com": ("bounced", ("weekly",)),
    }
    standing = json.loads(run(config, "subscribers", "confirm-pending", "--json").output)
    assert (standing["asked_waiting"], standing["asked_failed"], standing["never_asked"]) == (1, 1, 0)
    forged = tmp_path / "forged.eml"
    forged.write_bytes(dsn.read_bytes().replace(verp.tokens_in(sender)[0].encode(), b"b" * 29))
    assert "nothing new" not in run(config, "inbound", "import", str(forged)).output
    assert people(config)["reader0000@example.com"] == ("pending", ("weekly",))


def test_a_failed_confirmation_mail_names_its_address_and_says_it_is_now_suppressed(tmp_path, database_url):
    handler = SinkHandler(reject={"reader0001@example.com"})
    with smtp_sink(handler) as port:
        config = write_config(tmp_path, database_url, port)
        import_pending(config, tmp_path, 3)
        result = run(config, "subscribers", "confirm-pending", "--send")
    assert result.exit_code == 0 and "2 sent, 1 failed" in result.stdout
    assert result.stderr.splitlines() == [
        "confirmation mail to reader0001@example.com failed: 550 5.1.1 <reader0001@example.com>: Recipient address "
        "rejected: User unknown; reader0001@example.com is now suppressed (bounced)"
    ]
    suppressed = json.loads(run(config, "subscribers", "suppressed", "--json").output)
    assert [(row["email"], row["reason"], row["evidence"]) for row in suppressed] == [
        (
            "reader0001@example.com",
            "smtp_bounce",
            "confirmation mail refused during the SMTP session: 550 5.1.1 <reader0001@example.com>: Recipient "
            "address rejected: User unknown",
        )
    ]


def confirm_by_link(config: Path, handler: SinkHandler, email: str) -> None:
    """What opening the link in the confirmation mail `email` got does."""
    token = re.search(r"/confirm/(\S+)", handler.parsed(email)[0].get_content())[1]
    settings = load_settings(config)
    store = Store.open(settings.database.url)
    try:
        confirm(settings, store, Mailer(settings, make_transport(settings.delivery)), token, datetime.now(UTC))
    finally:
        store.close()


def test_confirm_pending_counts_who_was_asked_and_again_asks_those_whose_link_expired_once(tmp_path, database_url):
    handler = SinkHandler()
    with smtp_sink(handler) as port:
        config = write_config(tmp_path, database_url, port, web="confirm_expiry = 1")
        import_pending(config, tmp_path, 3)
        run(config, "subscribers", "confirm-pending", "--send")
        confirm_by_link(config, handler, "reader0000@example.com")
        settings = load_settings(config)
        preview = run(config, "subscribers", "confirm-pending").output
        assert "0 pending addresses would be asked to confirm" in preview
        assert "asked, waiting for an answer: 2" in preview
        assert "confirmed since asked: 1" in preview and "never asked: 0" in preview

        time.sleep(1.2)  # the links (confirm_expiry = 1 second) expire unanswered
        preview = run(config, "subscribers", "confirm-pending").output
        assert (
            "asked, waiting for an answer: 2 (2 asked longer ago than [web] confirm_expiry: --again asks them"
            in preview
        )
        would = run(config, "subscribers", "confirm-pending", "--again").output
        assert would.splitlines()[:3] == [
            "reader0001@example.com",
            "reader0002@example.com",
            "2 pending addresses would be asked to confirm (add --send to send)",
        ]
        started = datetime.now(UTC)
        again = json.loads(run(config, "subscribers", "confirm-pending", "--send", "--again", "--json").output)
        assert (again["asked_again"], again["sent"], again["asked_waiting"], again["asked_expired"]) == (2, 2, 2, 0)
        store = Store.open(settings.database.url)
        try:  # a run right after (as of `started`: the fresh links are valid) asks nobody again
            report = send_confirmations(settings, store, again=True, clock=lambda: started)
        finally:
            store.close()
        assert (report.asked_again, report.sent) == (0, 0)
    assert handler.parsed("reader0000@example.com")[1]["Subject"].startswith("Welcome")  # and no second request
    assert handler.received() == {
        "reader0000@example.com": 2,
        "reader0001@example.com": 2,
        "reader0002@example.com": 2,
    }


def test_an_unsuppressed_pending_address_is_pending_again_and_asked_by_the_next_run(tmp_path, database_url):
    handler = SinkHandler(reject={"reader0001@example.com"})
    with smtp_sink(handler) as port:
        config = write_config(tmp_path, database_url, port)
        import_pending(config, tmp_path, 2)
        run(config, "subscribers", "confirm-pending", "--send")
        assert people(config)["reader0001@example.com"] == ("bounced", ("weekly",))
        lifted = run(config, "subscribers", "unsuppress", "reader0001@example.com", "--reason", "the typo was fixed")
        assert lifted.output == (
            "reader0001@example.com is pending again; it will be asked to confirm by "
            "`publisher subscribers confirm-pending --send` (weekly)\n"
        )
        listed = json.loads(run(config, "subscribers", "list", "--json").output)
        assert [(p["status"], p["consent_at"]) for p in listed if p["email"] == "reader0001@example.com"] == [
            ("pending", None)
        ]
        handler.reject.clear()
        assert run(config, "subscribers", "confirm-pending").output.startswith(
            "reader0001@example.com\n1 pending address would be asked to confirm (add --send to send)"
        )
        assert "1 sent, 0 failed" in run(config, "subscribers", "confirm-pending", "--send").output
    assert handler.received() == {"reader0000@example.com": 1, "reader0001@example.com": 1}


def test_purge_pending_deletes_only_those_asked_whose_link_ran_out_unanswered(tmp_path, database_url):
    handler = SinkHandler()
    with smtp_sink(handler) as port:
        config = write_config(tmp_path, database_url, port, web="confirm_expiry = 1")
        asked = import_pending(config, tmp_path, 5)
        run(config, "subscribers", "confirm-pending", "--send")
        confirm_by_link(config, handler, asked[0])
        settings = load_settings(config)
        time.sleep(1.2)  # the other links (confirm_expiry = 1 second) run out unanswered
        fresh = tmp_path / "fresh.csv"
        fresh.write_text("email,name,newsletters\njust.asked@example.com,,daily\n", encoding="utf-8")
        run(config, "subscribers", "import", str(fresh))
        run(config, "subscribers", "confirm-pending", "--send")  # its link is still good
        fresh.write_text("email,name,newsletters\nnever.asked@example.com,,daily\n", encoding="utf-8")
        run(config, "subscribers", "import", str(fresh))
        store = Store.open(settings.database.url)
        try:  # one of those asked signs up on the web form (as it does once the resend interval is over): a new link
            now = datetime.now(UTC)
            assert store.subscribers.claim_confirmation(store.subscribers.get(asked[4]).id, "n", now, not_since=now)
        finally:
            store.close()

        preview = run(config, "subscribers", "purge-pending")
        assert preview.exit_code == 0 and preview.output.splitlines() == [
            *asked[1:4],
            "3 pending addresses were asked to confirm and never did (the link has run out): add --yes to delete them",
        ]
        assert len(json.loads(run(config, "subscribers", "list", "--json").output)) == 7  # the preview deleted nothing
        purged = run(config, "subscribers", "purge-pending", "--yes")
        assert purged.output.strip() == "deleted 3 pending addresses that were asked to confirm and never did"
        left = {p["email"]: p["status"] for p in json.loads(run(config, "subscribers", "list", "--json").output)}
        assert left == {
            asked[0]: "confirmed",
            asked[4]: "pending",
            "just.asked@example.com": "pending",
            "never.asked@example.com": "pending",
        }
        again = json.loads(run(config, "subscribers", "purge-pending", "--yes", "--json").output)
        assert again == {"deleted": True, "count": 0, "addresses": []}
        assert "nothing to delete" in run(config, "subscribers", "purge-pending").output
        audit = run(config, "admin", "audit").output
        assert audit.count("subscribers.purge_pending") == 2 and "deleted=3" in audit and asked[1] not in audit


def test_confirm_pending_sends_nothing_until_the_postal_address_is_set(tmp_path, database_url):
    handler = SinkHandler()
    with smtp_sink(handler) as port:
        config = write_config(tmp_path, database_url, port)
        config.write_text(config.read_text().replace('"1 Sample Street, Exampletown"', '""'))
        import_pending(config, tmp_path, 2)
        refused = run(config, "subscribers", "confirm-pending", "--send")
        assert refused.exit_code == 1 and "site.postal_address is empty" in refused.stderr
        assert "a mail asking a whole list to confirm must carry the sender's postal address" in refused.stderr
    assert handler.received() == {}


def test_a_pending_address_on_no_newsletter_is_not_asked_and_is_counted_apart(tmp_path, database_url):
    handler = SinkHandler()
    with smtp_sink(handler) as port:
        config = write_config(tmp_path, database_url, port)
        emails = import_pending(config, tmp_path, 3)
        store = Store.open(load_settings(config).database.url)
        try:  # an export's row whose tags matched no newsletter comes in on none
            lost = store.subscribers.get(emails[2]).id
            with store.engine.begin() as connection:
                connection.execute(delete(subscriptions).where(subscriptions.c.subscriber_id == lost))
        finally:
            store.close()
        preview = run(config, "subscribers", "confirm-pending").output
        assert emails[2] not in preview and "2 pending addresses would be asked to confirm" in preview
        assert "not asked, on no newsletter: 1 (`publisher subscribers add EMAIL --newsletter NAME`" in preview
        sent = json.loads(run(config, "subscribers", "confirm-pending", "--send", "--json").output)
        assert (sent["sent"], sent["no_newsletter"]) == (2, 1)
        assert set(handler.received()) == set(emails[:2])
        assert run(config, "subscribers", "add", emails[2], "--newsletter", "daily").exit_code == 0
        assert json.loads(run(config, "subscribers", "confirm-pending", "--send", "--json").output)["sent"] == 1
    assert handler.received() == dict.fromkeys(emails, 1)
