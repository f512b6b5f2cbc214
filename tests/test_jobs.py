"""`publisher publish` and the timetable's jobs, with a fixed clock: nothing approved is left behind."""

import mailbox
from datetime import UTC, datetime, timedelta

from publisher.clock import fixed
from publisher.issues import approve, build_issue
from publisher.jobs import publish_due, start_up
from publisher.publication import Publication
from tests.helpers import three_articles_and_readers

SLOT = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)  # a Monday


def _setup(store, make_settings, tmp_path, **newsletter):
    settings = make_settings(
        {
            "delivery": {"transport": "maildir", "maildir": "outbox"},
            "newsletters": {"weekly": {"schedule": "0 8 * * mon", "lookback": "30d", **newsletter}},
        },
        database_url=store.url,
    )
    three_articles_and_readers(store, settings, SLOT, readers=5)
    return settings


def _outbox(tmp_path) -> int:
    return len(mailbox.Maildir(tmp_path / "outbox", create=False)) if (tmp_path / "outbox").exists() else 0


def test_a_draft_waits_for_approval_then_the_next_run_sends_it(store, make_settings, tmp_path):
    settings = _setup(store, make_settings, tmp_path, require_approval=True)
    first = publish_due(Publication(settings, store, clock=fixed(SLOT + timedelta(minutes=1))))
    assert [s.outcome for s in first.slots] == ["drafted"] and _outbox(tmp_path) == 0
    approve(store, "weekly", None, SLOT + timedelta(minutes=30))
    second = publish_due(Publication(settings, store, clock=fixed(SLOT + timedelta(minutes=31))))
    assert second.sent == ["weekly #1: 5 delivered, 0 failed, 0 deferred"]
    assert _outbox(tmp_path) == 5
    assert store.issues.get("weekly", 1).state == "sent"
    assert publish_due(Publication(settings, store, clock=fixed(SLOT + timedelta(minutes=40)))).sent == []


def test_an_issue_built_but_never_sent_goes_out_on_the_next_run(store, make_settings, tmp_path):
    settings = _setup(store, make_settings, tmp_path)
    store.slots.claim("weekly", SLOT, SLOT)  # the run that died right after building
    build_issue(store, settings, "weekly", SLOT, SLOT)
    report = publish_due(Publication(settings, store, clock=fixed(SLOT + timedelta(minutes=5))))
    assert report.sent == ["weekly #1: 5 delivered, 0 failed, 0 deferred"]
    assert _outbox(tmp_path) == 5 and len(store.issues.list("weekly")) == 1


def test_an_import_after_a_crash_before_the_feed_rebuild_brings_the_feeds_up_to_date(store, make_settings, tmp_path):
    """The articles were committed, then the process died (kill -9) before the feeds were built."""
    from publisher.config import SourceSettings
    from publisher.content import import_sources

    settings = make_settings(database_url=store.url)
    capture = tmp_path / "capture.txt"
    capture.write_text("First post\nIts one paragraph.\n", encoding="utf-8")
    sources = [SourceSettings(path=str(capture), format="textpage")]
    import_sources(store, settings, sources, as_of=SLOT, now=SLOT)  # ... and no rebuild: the crash
    assert not (settings.feeds.dir / "rss.xml").exists()

    publication = Publication(settings, store, clock=fixed(SLOT))
    result = publication.import_sources([str(capture)], fmt="textpage", as_of=SLOT)
    assert not result.reports[0].added and result.reports[0].unchanged == 1
    assert result.feeds_changed == 3 and "First post" in (settings.feeds.dir / "rss.xml").read_text()  # RSS, Atom, JSON
    assert publication.import_sources([str(capture)], fmt="textpage", as_of=SLOT).feeds_changed == 0


SATURDAY = SLOT - timedelta(days=2)


def test_an_issue_approved_on_saturday_for_monday_waits_for_its_slot(store, make_settings, tmp_path):
    settings = _setup(store, make_settings, tmp_path, require_approval=True)
    saturday = Publication(settings, store, clock=fixed(SATURDAY))
    assert saturday.build("weekly", SLOT).issue.state == "draft"
    approved = saturday.approve("weekly")
    assert "2026-01-05 08:00 UTC" in saturday.when_sent(approved) and "--now" in saturday.when_sent(approved)
    start_up(saturday)  # `publisher run` starting on Saturday
    report = publish_due(saturday)
    assert report.sent == [] and _outbox(tmp_path) == 0
    outcome = saturday.send("weekly")  # `digest send` without --now says when it goes
    assert outcome.status == "skipped" and "--now" in outcome.reason and _outbox(tmp_path) == 0
    assert store.issues.get("weekly", 1).state == "approved"
    monday = publish_due(Publication(settings, store, clock=fixed(SLOT + timedelta(seconds=30))))
    assert monday.sent == ["weekly #1: 5 delivered, 0 failed, 0 deferred"] and _outbox(tmp_path) == 5
    assert publish_due(Publication(settings, store, clock=fixed(SLOT + timedelta(minutes=5)))).sent == []


def test_now_sends_an_approved_issue_before_its_slot(store, make_settings, tmp_path):
    settings = _setup(store, make_settings, tmp_path, require_approval=True)
    saturday = Publication(settings, store, clock=fixed(SATURDAY))
    saturday.build("weekly", SLOT)
    saturday.approve("weekly")
    outcome = saturday.send("weekly", immediately=True)
    assert outcome.status == "sent" and outcome.issue.number == 1 and _outbox(tmp_path) == 5
    assert store.issues.get("weekly", 1).state == "sent"


def test_an_approved_issue_whose_slot_passed_beyond_grace_waits_for_now(store, make_settings, tmp_path):
    settings = _setup(store, make_settings, tmp_path, require_approval=True, grace="1h")
    pub = Publication(settings, store, clock=fixed(SATURDAY))
    pub.build("weekly", SATURDAY - timedelta(hours=5))
    pub.approve("weekly")
    assert publish_due(pub).sent == [] and _outbox(tmp_path) == 0
    assert pub.send("weekly").status == "sent" and _outbox(tmp_path) == 5  # by hand, the slot being past


def test_a_second_send_in_a_sent_slot_says_how_to_send_another(store, make_settings, tmp_path):
    settings = _setup(store, make_settings, tmp_path)
    pub = Publication(settings, store, clock=fixed(SLOT))
    assert pub.send("weekly").status == "sent"
    again = pub.send("weekly", force=True)
    assert again.status == "skipped" and "already sent" in again.reason
    assert "--now" in again.reason and "publisher announce" in again.reason


# --- local-time delivery: one issue per slot, sent in time-zone waves --------------------------

ZONES = {
    "sydney@example.org": "Australia/Sydney",
    "london@example.org": "Europe/London",
    "la@example.org": "America/Los_Angeles",
    "default@example.org": "",  # no zone set: the newsletter's (Europe/London)
}


def _local_setup(store, make_settings):
    from publisher.model import Subscriber

    settings = make_settings(
        {
            "newsletters": {
                "weekly": {"schedule": "0 8 * * 1", "timezone": "Europe/London", "deliver": "local", "lookback": "30d"}
            }
        },
        database_url=store.url,
    )
    store.subscribers.upsert_many(
        [Subscriber(email=e, status="confirmed", newsletters=("weekly",), timezone=z) for e, z in ZONES.items()],
        datetime(2027, 3, 1, tzinfo=UTC),
    )
    return settings


def _article(store, key: str, published: datetime) -> None:
    from publisher.model import Draft

    store.articles.ingest(
        [
            Draft(
                key=key,
                slug=key,
                title=f"News {key}",
                summary_html="<p>x</p>",
                content_html="<p>x</p>",
                truncated=False,
                published=published,
            )
        ],
        guid_authority="x",
        now=published,
        source="t",
    )


def _received(transport) -> dict[str, int]:
    counts: dict[str, int] = {}
    for message in transport.sent:
        counts[message.recipient] = counts.get(message.recipient, 0) + 1
    return counts


def test_local_time_readers_each_get_the_monday_issue_at_eight_in_their_own_zone(store, make_settings):
    """Two Mondays: London goes to summer time (28 March 2027) and Sydney leaves it (4 April 2027)
    between them; a restart falls between the waves; one reader moves zone mid-issue."""
    from zoneinfo import ZoneInfo

    from publisher.jobs import publish_due, start_up
    from publisher.transports import MemoryTransport

    settings = _local_setup(store, make_settings)
    transport = MemoryTransport()

    def at(moment: datetime) -> Publication:
        return Publication(settings, store, clock=fixed(moment), transport=transport)

    def utc(*fields: int) -> datetime:
        return datetime(*fields, tzinfo=UTC)

    weeks = [  # (Monday, then 08:00 in Sydney, London and Los Angeles, in UTC)
        (utc(2027, 3, 22), utc(2027, 3, 21, 21), utc(2027, 3, 22, 8), utc(2027, 3, 22, 15)),
        (utc(2027, 4, 5), utc(2027, 4, 4, 22), utc(2027, 4, 5, 7), utc(2027, 4, 5, 15)),
    ]
    for week, (monday, sydney, london, los_angeles) in enumerate(weeks, start=1):
        _article(store, f"w{week}", monday - timedelta(days=2))
        before = dict(_received(transport))
        first_wave = sydney - timedelta(hours=3)  # 08:00 Monday at UTC+14: the issue is built
        publish_due(at(first_wave))
        issue = store.issues.get("weekly", week)
        assert issue is not None and issue.state == "sending" and _received(transport) == before
        publish_due(at(sydney - timedelta(minutes=1)))
        assert _received(transport) == before
        publish_due(at(sydney))
        assert _received(transport).get("sydney@example.org", 0) == week
        assert _received(transport).get("london@example.org", 0) == week - 1
        start_up(at(sydney + timedelta(hours=1)))  # `publisher run` restarted between the waves
        publish_due(at(london - timedelta(minutes=1)))
        assert _received(transport).get("london@example.org", 0) == week - 1
        if week == 1:  # the LA reader moves to London after London's wave: still one copy, at LA's time
            store.subscribers.update(store.subscribers.get("la@example.org").id, london, timezone="Europe/London")
        publish_due(at(london))
        publish_due(at(london + timedelta(minutes=30)))
        assert _received(transport).get("london@example.org", 0) == week
        assert _received(transport).get("default@example.org", 0) == week
        assert _received(transport).get("la@example.org", 0) == week - 1
        publish_due(at(los_angeles))
        publish_due(at(los_angeles + timedelta(hours=2)))
        assert _received(transport) == dict.fromkeys(ZONES, week)  # exactly once each
        assert store.issues.get("weekly", week).state == "sent" and len(store.issues.list("weekly")) == week
        for row in store.deliveries.rows(issue.id):
            zone = ZoneInfo(ZONES[row["email"]] or "Europe/London")
            local = row["delivered_at"].astimezone(zone)
            assert (local.weekday(), local.hour, local.minute) == (0, 8, 0), (row["email"], local)
        if week == 1:  # the move counts from the next issue on
            store.subscribers.update(store.subscribers.get("la@example.org").id, london, timezone="America/Los_Angeles")


def test_publisher_schedule_shows_a_local_time_newsletters_waves(store, make_settings):
    settings = _local_setup(store, make_settings)
    rows = Publication(settings, store, clock=fixed(datetime(2027, 3, 17, tzinfo=UTC))).schedule()
    row = next(r for r in rows if r["id"] == "newsletter:weekly")
    assert [(w["zone"], w["local"], w["readers"]) for w in row["waves"]] == [
        ("Australia/Sydney", "2027-03-22T08:00:00+11:00", 1),
        ("Europe/London", "2027-03-22T08:00:00+00:00", 2),
        ("America/Los_Angeles", "2027-03-22T08:00:00-07:00", 1),
    ]


def test_a_local_time_slot_missed_at_its_first_wave_still_reaches_the_later_waves(store, make_settings):
    """The service was down from before the first wave (UTC+14) until London's morning: the issue is
    built then, the readers whose morning has passed get it at once, Los Angeles at its own time."""
    from publisher.transports import MemoryTransport

    settings = _local_setup(store, make_settings)
    _article(store, "w1", datetime(2027, 3, 20, tzinfo=UTC))
    transport = MemoryTransport()
    london = datetime(2027, 3, 22, 8, 0, tzinfo=UTC)
    start_up(Publication(settings, store, clock=fixed(london), transport=transport))
    assert {m.recipient for m in transport.sent} == {"sydney@example.org", "london@example.org", "default@example.org"}
    publish_due(
        Publication(settings, store, clock=fixed(datetime(2027, 3, 22, 15, 0, tzinfo=UTC)), transport=transport)
    )
    assert sorted(m.recipient for m in transport.sent) == sorted(ZONES)


def test_a_hand_built_local_time_issue_goes_out_at_the_schedules_wall_clock_time(store, make_settings, tmp_path):
    """Issue 16 review: `digest build` on Saturday 08:46 UTC (no slot, or `--slot 2027-03-22T08:00`)
    made waves at 22:46 (or 22:00) local time; the header and `schedule` said Sunday; `digest send`
    said "sent" with every reader still waiting for their wave."""
    from publisher.transports import MemoryTransport

    settings = _local_setup(store, make_settings)
    _article(store, "w1", datetime(2027, 3, 19, tzinfo=UTC))
    saturday = datetime(2027, 3, 20, 8, 46, tzinfo=UTC)
    pub = Publication(settings, store, clock=fixed(saturday), transport=MemoryTransport())
    built = pub.build("weekly")  # the next slot: Monday 08:00 where it comes first (UTC+14)
    assert built.issue is not None and built.issue.slot == datetime(2027, 3, 21, 18, 0, tzinfo=UTC)
    again = pub.build("weekly", datetime(2027, 3, 22, 8, 0))  # a wall-clock --slot names the same slot
    assert again.existed and again.issue is not None and again.issue.number == 1
    shown = pub.preview("weekly", tmp_path / "preview")
    assert "Monday 22 March 2027" in shown.files["html"].read_text(encoding="utf-8")
    summary = shown.files["txt"].read_text(encoding="utf-8").splitlines()[2]
    assert summary == "1 new article"  # a first issue: no "since" (its lookback start means nothing to a reader)
    waiting = next(row for row in pub.schedule() if row["id"] == "send:weekly:1")
    assert waiting["slot_local"] == "2027-03-22T08:00:00"
    first_wave = datetime(2027, 3, 21, 18, 0, tzinfo=UTC)  # 08:00 Monday at UTC+14: the issue starts
    sent = Publication(settings, store, clock=fixed(first_wave), transport=MemoryTransport()).send("weekly")
    summary = sent.as_json()
    assert summary["status"] == "sending" and summary["state"] == "sending" and summary["delivered"] == 0
    assert [(w["zones"], w["due"], w["local"], w["left"]) for w in summary["waves"]] == [
        (["Australia/Sydney"], "2027-03-21T21:00:00+00:00", "2027-03-22T08:00", 1),
        (["Europe/London"], "2027-03-22T08:00:00+00:00", "2027-03-22T08:00", 2),
        (["America/Los_Angeles"], "2027-03-22T15:00:00+00:00", "2027-03-22T08:00", 1),
    ]
    row = next(row for row in pub.schedule() if row["id"] == "newsletter:weekly")
    assert next((w["issue"], w["zones"]) for w in row["sending_waves"]) == (1, ["Australia/Sydney"])
    assert row["slot_local"] == "2027-03-22T08:00:00" and row["grace_seconds"] == (3 + 26) * 3600


def test_digest_send_on_a_local_time_newsletter_builds_the_next_slot_and_waits_for_it(store, make_settings):
    from publisher.transports import MemoryTransport

    settings = _local_setup(store, make_settings)
    _article(store, "w1", datetime(2027, 3, 19, tzinfo=UTC))
    transport = MemoryTransport()
    pub = Publication(settings, store, clock=fixed(datetime(2027, 3, 20, 8, 46, tzinfo=UTC)), transport=transport)
    outcome = pub.send("weekly")
    assert outcome.status == "skipped" and "Mon 2027-03-22 08:00 in each reader’s time zone" in outcome.reason
    assert store.issues.get("weekly", 1).slot == datetime(2027, 3, 21, 18, 0, tzinfo=UTC) and transport.sent == []


def test_the_retry_jobs_log_line_counts_what_it_delivered(store, make_settings, tmp_path, caplog):
    from publisher.jobs import run_job

    settings = _setup(store, make_settings, tmp_path, require_approval=True)
    publish_due(Publication(settings, store, clock=fixed(SLOT + timedelta(minutes=1))))  # a draft
    approve(store, "weekly", None, SLOT + timedelta(minutes=30))
    with caplog.at_level("INFO", logger="publisher.jobs"):
        run_job(Publication(settings, store, clock=fixed(SLOT + timedelta(minutes=31))), "retry", "")
    assert "job retry: 1 issues sent or retried: 5 delivered, 0 failed, 0 deferred, 0 taken over" in caplog.text


def test_now_sends_a_local_time_issue_to_every_reader_at_once(store, make_settings):
    """Issue 16 leftovers: `digest send --now` on a local-time newsletter built an issue for this
    instant whose waves came at this wall-clock time in each zone (Saturday 08:46 UTC made waves at
    22:46 the next day in UTC+14's date). `--now` means now, for everyone: no waves."""
    from publisher.transports import MemoryTransport

    settings = _local_setup(store, make_settings)
    _article(store, "w1", datetime(2027, 3, 19, tzinfo=UTC))
    transport = MemoryTransport()
    saturday = datetime(2027, 3, 20, 8, 46, tzinfo=UTC)
    pub = Publication(settings, store, clock=fixed(saturday), transport=transport)
    sent = pub.send("weekly", immediately=True).as_json()
    assert (sent["status"], sent["state"], sent["delivered"], sent["waves"]) == ("sent", "sent", 4, [])
    assert _received(transport) == dict.fromkeys(ZONES, 1)
    for row in store.deliveries.rows(store.issues.get("weekly", 1).id):
        assert saturday <= row["delivered_at"] < saturday + timedelta(minutes=1), row

    # An approved issue for Monday's slot, sent on Saturday with --now: everyone, now.
    _article(store, "w2", saturday + timedelta(minutes=5))
    later = Publication(settings, store, clock=fixed(saturday + timedelta(hours=1)), transport=transport)
    assert later.build("weekly").issue.number == 2
    assert later.send("weekly").status == "skipped"  # without --now it waits for the readers' Monday
    assert later.send("weekly", immediately=True).as_json()["delivered"] == 4
    assert _received(transport) == dict.fromkeys(ZONES, 2)


def test_now_sends_the_waves_left_of_a_local_time_issue_at_once(store, make_settings):
    from publisher.transports import MemoryTransport

    settings = _local_setup(store, make_settings)
    _article(store, "w1", datetime(2027, 3, 19, tzinfo=UTC))
    transport = MemoryTransport()
    sydney = datetime(2027, 3, 21, 21, 0, tzinfo=UTC)  # Monday 08:00 in Sydney
    Publication(settings, store, clock=fixed(sydney - timedelta(hours=3))).build("weekly")  # the first wave
    pub = Publication(settings, store, clock=fixed(sydney), transport=transport)
    waiting = pub.send("weekly").as_json()
    assert waiting["status"] == "sending" and _received(transport) == {"sydney@example.org": 1}
    assert len(waiting["waves"]) == 2
    rest = pub.send("weekly", immediately=True).as_json()
    assert (rest["status"], rest["waves"]) == ("resumed", [])
    assert _received(transport) == dict.fromkeys(ZONES, 1) and store.issues.get("weekly", 1).state == "sent"
