"""What test modules share: paths, the CI rule for missing components, the CLI's command list, and
the textpage captures with the facts the tests assert about them.

Two sets of captures, each two captures of one front page taken at different times:

- "ours": tests/data/, a fictional cycling club's front page written for these tests; always present.
- "seeds": the publication's real captures in ../shared/seeds/ (PUBLISHER_TEST_SEEDS overrides the
  folder). Tests on them skip when the folder is missing, and fail instead when CI=true.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest

from publisher.cli import cli
from publisher.model import Issue

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
SEEDS = Path(os.environ.get("PUBLISHER_TEST_SEEDS") or REPO.parent / "shared" / "seeds")
SEEDS_MISSING = "../shared/seeds not present"
SCREENSHOTS = Path(os.environ.get("PUBLISHER_SCREENSHOTS") or REPO / "screenshots")  # in .gitignore
IN_CI = os.environ.get("CI", "").lower() == "true"

EARLY_AS_OF = datetime(2025, 9, 30, tzinfo=UTC)  # both sets were captured at these times
LATE_AS_OF = datetime(2025, 10, 20, tzinfo=UTC)


def require(condition: bool, what: str) -> None:
    """Skip locally when a real component is missing; in CI a missing component is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required when CI=true")
    pytest.skip(f"{what} is not available")


def all_commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command and subcommand of the CLI, as word tuples: ("digest", "send"), …"""
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from all_commands(command, (*prefix, name))


@dataclass(frozen=True)
class Capture:
    """One capture file, the time it was taken, and how many articles it lists."""

    path: Path
    as_of: datetime
    count: int


@dataclass(frozen=True)
class ListTeaser:
    """A teaser whose body holds one bulleted list."""

    title: str
    starts: str
    items: int
    ends: str


@dataclass(frozen=True)
class Captures:
    """Two overlapping captures of one front page (early, then late) and what is known about them."""

    name: str
    site_title: str
    early: Capture
    late: Capture
    issue_1: tuple[str, ...]  # the early capture's titles in page order: a first digest holds them all
    issue_2: tuple[str, ...]  # the late capture's titles that the early one lacks, in page order
    early_teasers: int  # articles of the early capture that end in "Continue reading …"
    a_teaser: str  # one of them
    list_teaser: ListTeaser  # one of them, with a bulleted list
    shared_slug: str  # an article in both captures …
    shared_position: int  # … and its place in the early capture (0 = newest)
    slugs: tuple[tuple[str, str], ...]  # (title, slug) pairs that show the slug rule

    @property
    def shared(self) -> int:
        """Articles in both captures."""
        return self.late.count - len(self.issue_2)

    @property
    def total(self) -> int:
        """Articles after importing both captures."""
        return self.early.count + len(self.issue_2)

    def require(self) -> None:
        """The seed captures are optional locally and required under CI=true."""
        if all(capture.path.is_file() for capture in (self.early, self.late)):
            return
        reason = f"{SEEDS_MISSING} (looked in {SEEDS})"
        if IN_CI:
            pytest.fail(f"{reason}; the seeds are required when CI=true")
        pytest.skip(reason)


OURS = Captures(
    name="ours",
    site_title="Alderbrook Wheelers",
    early=Capture(DATA / "capture_early.txt", EARLY_AS_OF, 15),
    late=Capture(DATA / "capture_late.txt", LATE_AS_OF, 14),
    issue_1=(
        "Autumn club-run calendar",
        "Lanterns on the towpath",
        "Maeve O’Brien’s hill-climb record – and what’s next?",
        "Ask the mechanic: ‘Why does my chain skip?’",
        "Café stop review: The Kettle & Crank",
        "Committee notes, September",
        "Is a gravel bike worth it?",
        "Don't forget your lights",
        "Junior section: ten new riders, one very muddy field",
        "The long way round: 200 km to the coast and back",
        "Lost property",
        "“Slow is smooth”: notes from the bike-handling clinic",
        "Route of the month: Heron Lane and the two fords",
        "Fixing a puncture in under five minutes",
        "Welcome to our new members",
    ),
    issue_2=(
        "Results: the club’s 10-mile time trial, round 6",
        "Winter kit swap – bring what you don’t wear",
        "Remembering Tom Hale, 1941 – 2025",
        "Ask the mechanic: tubeless or not?",
        "What’s a chaingang, and should I try one?",
        "New café stop: Ferris & Daughters, Upper Alder",
        "AGM: date, agenda and how to vote",
        "Night ride to the observatory",
        "Ten things we learned from the reliability ride",
        "Rain, wind and 43 finishers: the Harvest Hundred",
    ),
    early_teasers=11,
    a_teaser="Is a gravel bike worth it?",
    list_teaser=ListTeaser(
        title="Maeve O’Brien’s hill-climb record – and what’s next?",
        starts="<p>On a grey Saturday morning Maeve O’Brien climbed Gallows Bank",
        items=4,
        ends="which she has not yet returned.</p>",
    ),
    shared_slug="maeve-obriens-hill-climb-record-and-whats-next",
    shared_position=2,
    slugs=(
        ("Maeve O’Brien’s hill-climb record – and what’s next?", "maeve-obriens-hill-climb-record-and-whats-next"),
        ("Ask the mechanic: ‘Why does my chain skip?’", "ask-the-mechanic-why-does-my-chain-skip"),
        ("Café stop review: The Kettle & Crank", "cafe-stop-review-the-kettle-crank"),
        ("Don't forget your lights", "dont-forget-your-lights"),
        ("“Slow is smooth”: notes from the bike-handling clinic", "slow-is-smooth-notes-from-the-bike-handling-clinic"),
        ("Is a gravel bike worth it?", "is-a-gravel-bike-worth-it"),
    ),
)

SEED_CAPTURES = Captures(
    name="seeds",
    site_title="Friends of the East",
    early=Capture(SEEDS / "002_3b97ff2f221fe4bf.txt", EARLY_AS_OF, 19),
    late=Capture(SEEDS / "000_8c5c9c0abe0dc27a.txt", LATE_AS_OF, 20),
    issue_1=(
        "The traditional friendship between Laos and China is at its best in history",
        "Li Qiang issues rallying call for development at UN",
        "China and Cuba show that a better world is not only possible – it is being built day by day",
        "China’s Premier champions peace, justice and development at UN General Assembly",
        "Xi Jinping at the UN Climate Summit: Green and low-carbon transition is the trend of the time",
        "Is China a threat?",
        "Communist forces played the main role in defeating Japanese militarism",
        "Xi Jinping: At all times, our work must be for the people and we must do our best to improve "
        "the well-being of all the people",
        "BRICS countries seek common stand on ‘tariff wars’",
        "Li Qiang: The Global South should stand at the forefront of global governance reform",
        "Reject Western Marxism, defend the socialist countries, and stand with the peoples of the world "
        "against imperialism",
        "Young people can build improved people-to-people relations between China and Britain",
        "China is a force for peace and progress, that’s why the world needs China",
        "Xi Jinping sets out programme for heightened cooperation with Central Asia",
        "China will continue to be a stabilising force for peace and progress",
        "Remarks marking the 26th anniversary of the NATO bombing of Yugoslavia",
        "Tongogara Memorial Talk: African liberation and China",
        "Lula: Latin America, the Caribbean and China show it is possible to fight climate change without "
        "sacrificing growth and justice",
        "Xi Jinping: Writing a new chapter in building a China-LAC Community with a Shared Future",
    ),
    issue_2=(
        "Premier Li Qiang joins celebrations of the 80th anniversary of the Workers’ Party of Korea in Pyongyang",
        "Tianjin Declaration advances roadmap for Shanghai Cooperation Organisation",
        "China, Russia, Pakistan and Iran reject US return to Afghanistan",
        "Cuba-China diplomatic relations: 65 years from history to the future",
        "DPRK foreign minister: Consolidating and developing relations with China is an unwavering stance",
        "China strongly condemns US misuse of veto to shield Israel",
        "Symbolic significance of Western states’ recognition of Palestine",
        "Chinese leaders meet guests from Brazil, Timor-Leste, Hungary, Bulgaria, Romania and Greece",
        "Portugal reinforces sound relations with China",
        "Xi Jinping meets the leaders of Zimbabwe, Slovakia, Congo, Serbia and Indonesia",
        "China-Vietnam relations of comrades and brothers underlined in three high-level meetings",
        "China and Cuba build on the friendship established by Chairman Mao and Fidel Castro",
        "Xi meets Lao president",
        "China, Russia and Mongolia strengthen three-way friendship in Beijing",
        "Xi Jinping meets leaders from Uzbekistan, Pakistan, Turkmenistan, Iran, Malaysia and Tajikistan",
        "Kim Jong Un’s first China visit in six years draws world attention",
        "Special friendship with Cambodia reflected in high-level visits",
        "Xi Jinping meets leaders from Armenia, Belarus, Maldives, Azerbaijan, Kyrgyzstan, India and Türkiye",
    ),
    early_teasers=15,
    a_teaser="Is China a threat?",
    list_teaser=ListTeaser(
        title="Li Qiang issues rallying call for development at UN",
        starts="<p>During his recent visit to New York",
        items=4,
        ends="global development.</p>",
    ),
    shared_slug="chinas-premier-champions-peace-justice-and-development-at-un-general-assembly",
    shared_position=3,
    slugs=(
        (
            "China’s Premier champions peace, justice and development at UN General Assembly",
            "chinas-premier-champions-peace-justice-and-development-at-un-general-assembly",
        ),
        ("BRICS countries seek common stand on ‘tariff wars’", "brics-countries-seek-common-stand-on-tariff-wars"),
        ("Is China a threat?", "is-china-a-threat"),
    ),
)

CAPTURE_SETS = {captures.name: captures for captures in (OURS, SEED_CAPTURES)}


# --- returned mail (tests/data/inbound/) ---------------------------------------------------------

CORPUS = DATA / "inbound"
SAMPLE_TOKEN = "a" * 29


def crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def make_issue(store, subject: str, now: datetime, number: int) -> Issue:
    """An approved issue stored straight into the issues table (the inbound tests need only its id)."""
    from sqlalchemy import insert

    from publisher.store.schema import issues

    with store.engine.begin() as connection:
        issue_id = connection.execute(
            insert(issues).values(
                newsletter="weekly",
                number=number,
                slot=now + timedelta(days=7 * number),
                state="approved",
                watermark=now,
                subject=subject,
                created_at=now,
            )
        ).inserted_primary_key[0]
    return Issue(newsletter="weekly", number=number, slot=now, state="approved", id=issue_id, article_ids=(1,))


# --- a small publication -----------------------------------------------------------------------


def three_articles_and_readers(store, settings, now: datetime, readers: int, newsletter: str = "weekly") -> None:
    """Articles 0-2, published one, two and three days before `now`, and `readers` confirmed
    subscribers of `newsletter` (r0@example.org, r1@example.org, ...)."""
    from publisher.model import Draft, Subscriber

    store.articles.ingest(
        [
            Draft(
                key=f"a{i}",
                slug=f"a{i}",
                title=f"Article {i}",
                summary_html="<p>x</p>",
                content_html="<p>x</p>",
                truncated=False,
                published=now - timedelta(days=i + 1),
            )
            for i in range(3)
        ],
        site_url=settings.site.url,
        guid_authority="x",
        now=now,
        source="t",
    )
    store.subscribers.upsert_many(
        [Subscriber(email=f"r{i}@example.org", status="confirmed", newsletters=(newsletter,)) for i in range(readers)],
        now,
    )


def dkim_key(folder: Path) -> tuple[Path, bytes]:
    """A fresh 1024-bit RSA key for DKIM tests, and the DNS TXT record that publishes it."""
    import base64
    import subprocess

    key = folder / "dkim.pem"
    made = subprocess.run(["openssl", "genrsa", "-out", str(key), "1024"], check=False, capture_output=True)
    require(made.returncode == 0, "openssl (to make a key)")
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"], capture_output=True, check=True
    ).stdout
    return key, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
