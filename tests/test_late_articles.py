"""No article is left out silently: late imports go in the next issue, a back catalogue is reported.

Each scenario runs on SQLite and PostgreSQL, through `Publication` as the CLI and the timetable
use it, with a clock the test moves.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from publisher.cli import cli
from publisher.jobs import run_slot
from publisher.model import Subscriber
from publisher.publication import Publication
from publisher.selection import Reason
from publisher.transports import MemoryTransport
from tests.helpers import SEED_CAPTURES, require

SEED_002, AS_OF_002 = SEED_CAPTURES.early.path, SEED_CAPTURES.early.as_of  # September
SEED_000, AS_OF_000 = SEED_CAPTURES.late.path, SEED_CAPTURES.late.as_of  # October
ISSUE_2 = SEED_CAPTURES.issue_2

FIRST_SLOT = datetime(2025, 10, 6, 8, tzinfo=UTC)  # Mondays
SECOND_SLOT = datetime(2025, 10, 20, 8, tzinfo=UTC)
THIRD_SLOT = datetime(2025, 10, 27, 8, tzinfo=UTC)


class Clock:
    """A clock the test moves."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def _publication(make_settings, database_url: str, clock: Clock, **newsletter) -> Publication:
    settings = make_settings(
        {"newsletters": {"weekly": {"schedule": "0 8 * * mon", "lookback": "7d", **newsletter}}},
        database_url=database_url,
    )
    pub = Publication(settings, clock=clock, transport=MemoryTransport())
    people = [Subscriber(email=f"r{i}@example.org", status="confirmed", newsletters=("weekly",)) for i in range(3)]
    pub.store.subscribers.upsert_many(people, clock())
    return pub


def _markdown(folder: Path, slug: str, title: str, published: datetime, tags: str = "[]") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{slug}.md"
    path.write_text(
        f"---\ntitle: {title}\ndate: {published.isoformat()}\ntags: {tags}\n---\nA paragraph about {title}.\n",
        encoding="utf-8",
    )
    return path


def _capture(path: Path, titles: list[str]) -> Path:
    """A front-page capture in the textpage format: teasers, newest first."""
    blocks = [f"{title}\nA teaser about {title.lower()}.\nContinue reading {title}" for title in titles]
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def _titles(pub: Publication, ids) -> list[str]:
    return [article.title for article in pub.store.articles.by_ids(ids)]


def _late_article_scenario(pub, clock, tmp_path, first_capture, first_as_of, second_capture, second_as_of):
    """Import, send, import a late article, import again, send: returns (issue 1, issue 2, late title)."""
    clock.moment = first_as_of
    pub.import_sources([str(first_capture)], fmt="textpage", as_of=first_as_of)
    clock.moment = FIRST_SLOT
    first = run_slot(pub, "weekly", FIRST_SLOT)
    assert first.outcome == "sent", first.detail
    newest = max(a.published for a in pub.store.articles.by_ids(first.issue.article_ids))
    clock.moment = FIRST_SLOT + timedelta(minutes=10)
    late = _markdown(tmp_path / "late", "late-post", "A back-dated post", newest - timedelta(hours=1))
    pub.import_sources([str(late)])
    clock.moment = second_as_of
    pub.import_sources([str(second_capture)], fmt="textpage", as_of=second_as_of)
    clock.moment = SECOND_SLOT
    second = run_slot(pub, "weekly", SECOND_SLOT)
    assert second.outcome == "sent", second.detail
    clock.moment = THIRD_SLOT
    third = run_slot(pub, "weekly", THIRD_SLOT)
    assert third.outcome == "skipped" and third.detail == "skipped: 0 new articles, minimum 1"
    return first.issue, second.issue


def test_the_seeds_with_a_late_article_between_them_send_all_of_it_then_skip(make_settings, database_url, tmp_path):
    require(SEED_000.exists() and SEED_002.exists(), f"the seed captures in {SEED_000.parent}")
    clock = Clock(AS_OF_002)
    pub = _publication(make_settings, database_url, clock)
    _first, second = _late_article_scenario(pub, clock, tmp_path, SEED_002, AS_OF_002, SEED_000, AS_OF_000)
    assert _titles(pub, second.article_ids) == [*ISSUE_2, "A back-dated post"]
    assert not second.overflow_ids
    assert len(pub.transport.sent) == 6  # two issues, three readers
    pub.close()


def test_captures_of_our_own_with_a_late_article_between_them_send_all_of_it(make_settings, database_url, tmp_path):
    september = _capture(tmp_path / "september.txt", [f"September story {i}" for i in range(1, 6)])
    october = _capture(
        tmp_path / "october.txt",
        [*(f"October story {i}" for i in range(1, 5)), *(f"September story {i}" for i in (1, 2))],
    )
    clock = Clock(AS_OF_002)
    pub = _publication(make_settings, database_url, clock)
    first, second = _late_article_scenario(pub, clock, tmp_path, september, AS_OF_002, october, AS_OF_000)
    assert _titles(pub, first.article_ids) == [f"September story {i}" for i in range(1, 6)]
    assert _titles(pub, second.article_ids) == [*(f"October story {i}" for i in range(1, 5)), "A back-dated post"]
    pub.close()


def _run(config: Path, *args: str):
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


def test_a_back_catalogue_older_than_lookback_sends_nothing_and_the_preview_says_too_old(
    make_settings, database_url, tmp_path
):
    clock = Clock(AS_OF_002)
    pub = _publication(make_settings, database_url, clock)
    _markdown(tmp_path / "new", "fresh", "Fresh news", FIRST_SLOT - timedelta(days=1))
    pub.import_sources([str(tmp_path / "new")])
    clock.moment = FIRST_SLOT
    assert run_slot(pub, "weekly", FIRST_SLOT).outcome == "sent"
    clock.moment = FIRST_SLOT + timedelta(days=1)
    for i in range(200):
        _markdown(tmp_path / "archive", f"old-{i}", f"Old story {i}", AS_OF_002 - timedelta(days=60, hours=i))
    assert len(pub.import_sources([str(tmp_path / "archive")]).reports[0].added) == 200
    shown = pub.preview("weekly", tmp_path / "preview")
    assert shown.digest is None and shown.files == {}
    too_old = [v.article.title for v in shown.verdicts if v.reason == Reason.TOO_OLD]
    assert len(too_old) == 200 and "Old story 0" in too_old
    clock.moment = SECOND_SLOT
    skipped = run_slot(pub, "weekly", SECOND_SLOT)
    assert skipped.outcome == "skipped" and skipped.detail == "skipped: 0 new articles, minimum 1"
    assert len(pub.transport.sent) == 3  # only the first issue
    pub.close()


def _config(tmp_path: Path, database_url: str, **newsletter: str) -> Path:
    lines = [f"{key} = {value}" for key, value in newsletter.items()]
    config = tmp_path / "config.toml"
    config.write_text(
        '[site]\nurl = "https://news.example.org"\npostal_address = "1 Example Road"\n\n'
        f'[database]\nurl = "{database_url}"\n\n'
        '[delivery]\ntransport = "maildir"\nmaildir = "outbox"\n\n'
        '[newsletters.weekly]\nlookback = "7d"\n' + "\n".join(lines) + "\n",
        encoding="utf-8",
    )
    return config


def test_the_preview_gives_every_candidate_a_reason_and_json_the_same(database_url, tmp_path, monkeypatch):
    """Every `Reason` shows up: in, more, too old, excluded tag, future-dated, already sent, next issue."""
    config = _config(tmp_path, database_url, max_articles="1", exclude_tags='["hidden"]', require_approval="true")
    now = datetime.now(UTC).replace(microsecond=0)
    content = tmp_path / "content"
    _markdown(content, "first", "First issue story", now - timedelta(days=3))
    assert _run(config, "import", str(content)).exit_code == 0
    slot = (now - timedelta(days=2)).isoformat()
    assert "built issue 1" in _run(config, "digest", "build", "weekly", "--slot", slot).output
    assert _run(config, "digest", "approve", "weekly").exit_code == 0
    sent = _run(config, "digest", "send", "weekly", "--now", "--json")
    assert json.loads(sent.output)["status"] == "sent", sent.output
    _markdown(content, "newer", "Newer story", now - timedelta(hours=1))
    _markdown(content, "new", "New story", now - timedelta(hours=2))
    _markdown(content, "ancient", "Ancient story", now - timedelta(days=40))
    _markdown(content, "secret", "Hidden story", now - timedelta(hours=3), tags="[hidden]")
    _markdown(content, "tomorrow", "Tomorrow's story", now + timedelta(days=1))
    # the first issue's newest article sits on the watermark: a candidate, already sent
    assert _run(config, "import", str(content)).exit_code == 0
    shown = json.loads(_run(config, "digest", "preview", "weekly", "--json", "--out", str(tmp_path / "p")).output)
    reasons = {item["title"]: item["reason"] for item in shown["candidates"]}
    assert reasons == {
        "Newer story": "in",
        "New story": "more",
        "Ancient story": "too-old",
        "Hidden story": "excluded-tag",
        "Tomorrow's story": "future-dated",
        "First issue story": "already-sent",
    }
    text = _run(config, "digest", "preview", "weekly", "--out", str(tmp_path / "p")).output
    assert "too-old" in text and "Ancient story" in text and "1 held back: older than lookback" in text

    slot = (now - timedelta(minutes=1)).isoformat()
    assert "built issue 2" in _run(config, "digest", "build", "weekly", "--slot", slot).output
    _markdown(content, "later", "Later story", now - timedelta(minutes=5))
    assert _run(config, "import", str(content)).exit_code == 0
    pending = json.loads(_run(config, "digest", "preview", "weekly", "--json", "--out", str(tmp_path / "p")).output)
    after = {item["title"]: item["reason"] for item in pending["candidates"]}
    assert after["Later story"] == "next-issue" and after["Newer story"] == "in" and after["New story"] == "more"
    assert set(reasons.values()) | set(after.values()) == {reason.value for reason in Reason}


def test_every_preview_reason_is_documented():
    docs = (Path(__file__).resolve().parent.parent / "docs" / "digests.md").read_text(encoding="utf-8")
    missing = [reason.value for reason in Reason if f"`{reason.value}`" not in docs]
    assert not missing, f"docs/digests.md does not explain the preview reasons {missing}"
