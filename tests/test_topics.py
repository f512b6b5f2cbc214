"""Topics that select: on the seed publication with three topics mapped to tags, each reader gets
exactly their topics' articles, a reader of all gets all, a reader whose topic had nothing gets no
mail (counted), and the issue is rendered once per distinct edition, not once per reader."""

import html
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser

from publisher.clock import fixed
from publisher.model import Subscriber
from publisher.publication import Publication
from publisher.transports import MemoryTransport
from tests.helpers import SEED_CAPTURES

SLOT = datetime(2025, 10, 6, 8, 0, tzinfo=UTC)  # the Monday after the early capture
TOPICS = [
    {"name": "asia", "label": "Asia", "tags": ["asia"]},
    {"name": "americas", "label": "The Americas", "tags": ["americas"]},
    {"name": "sport", "label": "Sport", "tags": ["sport"]},
]
RULES = [
    {"tag": "asia", "match": ["Laos", "Vietnam", "Central Asia", "DPRK", "Korea", "Cambodia", "Mongolia"]},
    {"tag": "americas", "match": r"\b(Cuba|Lula|Latin America|Caribbean|Brazil)\b"},
    {"tag": "sport", "match": ["football", "Olympic"]},
]
READERS = {
    "asia@example.org": ("asia",),
    "asia2@example.org": ("asia",),
    "americas@example.org": ("americas",),
    "sport@example.org": ("sport",),
    "both@example.org": ("asia", "americas"),
    "everything@example.org": (),
    "all@example.org": ("asia", "americas", "sport"),
    "all2@example.org": ("sport", "americas", "asia"),
}


def _publication(store, make_settings, transport, **newsletter) -> Publication:
    settings = make_settings(
        {
            "topics": TOPICS,
            "tag_rules": RULES,
            "newsletters": {"weekly": {"lookback": "30d", "max_articles": 30, **newsletter}},
        },
        database_url=store.url,
    )
    return Publication(settings, store, clock=fixed(SLOT), transport=transport)


def _html(raw: bytes) -> str:
    part = BytesParser(policy=policy.default).parsebytes(raw).get_body(("html",))
    assert part is not None
    return html.unescape(part.get_content())


def test_each_reader_gets_their_topics_articles_rendered_once_per_edition(store, make_settings):
    SEED_CAPTURES.require()
    transport = MemoryTransport()
    pub = _publication(store, make_settings, transport, sections="topics")
    pub.import_sources([str(SEED_CAPTURES.early.path)], fmt="textpage", as_of=SEED_CAPTURES.early.as_of)
    store.subscribers.upsert_many(
        [Subscriber(email=e, status="confirmed", newsletters=("weekly",), topics=t) for e, t in READERS.items()], SLOT
    )
    tagged = {a.title: set(a.tags) for a in pub.articles()}
    asia = {title for title, tags in tagged.items() if "asia" in tags}
    americas = {title for title, tags in tagged.items() if "americas" in tags}
    assert "The traditional friendship between Laos and China is at its best in history" in asia
    assert "China and Cuba show that a better world is not only possible – it is being built day by day" in americas
    assert asia and americas and not asia <= americas and asia | americas != set(tagged)

    outcome = pub.send("weekly")

    mails = {message.recipient: _html(message.data) for message in transport.sent}
    wanted = {"asia": asia, "americas": americas}
    for email, topics in READERS.items():
        if topics == ("sport",):
            assert email not in mails  # nothing new in sport: no mail
            continue
        expected = (
            set(tagged) if set(topics) in (set(), set(wanted) | {"sport"}) else set().union(*map(wanted.get, topics))
        )
        shown = {title for title in tagged if title in mails[email]}
        assert shown == expected, email
    assert "Asia" in mails["both@example.org"] and "The Americas" in mails["both@example.org"]
    assert outcome.report is not None
    assert outcome.report.get("delivered") == len(READERS) - 1 and outcome.report.get("skipped") == 1
    assert outcome.as_json()["skipped"] == 1
    # editions: asia, americas, asia + americas, everything (no topics = all topics): 4 renders, 8 readers
    assert outcome.report.renders == 4
    assert store.issues.get("weekly", 1).state == "sent"


def test_without_topics_configured_everyone_gets_the_whole_issue_from_one_render(store, make_settings):
    SEED_CAPTURES.require()
    transport = MemoryTransport()
    settings = make_settings({"newsletters": {"weekly": {"lookback": "30d"}}}, database_url=store.url)
    pub = Publication(settings, store, clock=fixed(SLOT), transport=transport)
    pub.import_sources([str(SEED_CAPTURES.early.path)], fmt="textpage", as_of=SEED_CAPTURES.early.as_of)
    store.subscribers.upsert_many(
        [Subscriber(email=e, status="confirmed", newsletters=("weekly",), topics=t) for e, t in READERS.items()], SLOT
    )
    outcome = pub.send("weekly")
    assert outcome.report is not None and outcome.report.renders == 1
    assert len(transport.sent) == len(READERS)


def test_the_preview_of_a_topics_newsletter_has_a_section_per_topic(store, make_settings, tmp_path):
    SEED_CAPTURES.require()
    pub = _publication(store, make_settings, MemoryTransport(), sections="topics")
    pub.import_sources([str(SEED_CAPTURES.early.path)], fmt="textpage", as_of=SEED_CAPTURES.early.as_of)
    preview = pub.preview("weekly", tmp_path / "preview")
    assert preview.rendered is not None
    page = preview.files["html"].read_text(encoding="utf-8")
    # a heading per topic, in the [[topics]] order, the rest under "Other news"; Sport had nothing new
    assert page.index(">Asia<") < page.index(">The Americas<") < page.index(">Other news<")
    assert ">More new articles<" not in page  # all 19 fit: the overflow heading is distinct from "Other news"
    assert ">Sport<" not in page


def test_a_topics_digest_opens_on_its_first_section_and_keeps_every_topic_heading(store, make_settings, tmp_path):
    """Issue 16 review: the subject and preview line named the newest article although it came in
    the last section; with a small max_articles a topic's heading vanished while an article of no
    topic kept its place; the meta line showed raw tag slugs under the topic headings."""
    SEED_CAPTURES.require()
    settings = make_settings(
        {
            # first a topic the newest article (on Laos) is not in
            "topics": [{"name": "climate", "label": "Climate", "tags": ["climate"]}, TOPICS[1], TOPICS[0]],
            "tag_rules": [*RULES, {"tag": "climate", "match": ["Climate Summit"]}],
            "newsletters": {"weekly": {"lookback": "30d", "max_articles": 2, "sections": "topics"}},
        },
        database_url=store.url,
    )
    pub = Publication(settings, store, clock=fixed(SLOT), transport=MemoryTransport())
    pub.import_sources([str(SEED_CAPTURES.early.path)], fmt="textpage", as_of=SEED_CAPTURES.early.as_of)
    preview = pub.preview("weekly", tmp_path / "preview")
    assert preview.rendered is not None
    page = preview.files["html"].read_text(encoding="utf-8")
    # every topic's heading kept, in the [[topics]] order, although max_articles is 2
    assert page.index(">Climate<") < page.index(">The Americas<") < page.index(">Asia<")
    assert ">Other news<" not in page.split(">More new articles<")[0]  # no-topic articles wait in "More"
    assert preview.rendered.subject.startswith("Xi Jinping at the UN Climate Summit")  # the first one shown
    body = page[page.index("<body") :]
    assert body.index(">Climate<") < body.index(">Xi Jinping at the UN Climate Summit") < body.index(">The Americas<")
    text = preview.files["txt"].read_text(encoding="utf-8")
    assert "· Asia" in text or "· The Americas" in text
    assert "· asia" not in text and "· americas" not in text


def test_a_dry_run_counts_the_readers_who_would_get_nothing_for_their_topics(store, make_settings):
    SEED_CAPTURES.require()
    pub = _publication(store, make_settings, MemoryTransport())
    pub.import_sources([str(SEED_CAPTURES.early.path)], fmt="textpage", as_of=SEED_CAPTURES.early.as_of)
    store.subscribers.upsert_many(
        [Subscriber(email=e, status="confirmed", newsletters=("weekly",), topics=t) for e, t in READERS.items()], SLOT
    )
    outcome = pub.send("weekly", dry_run=True)
    assert outcome.dry_run_recipients == len(READERS) - 1 and outcome.dry_run_nothing == 1  # sport: nothing new
    assert outcome.as_json()["skipped"] == 1
    assert store.issues.list("weekly") == []


def test_topics_of_tags_in_other_scripts_select_only_their_articles(store, make_settings):
    from datetime import timedelta

    from publisher.model import Draft

    transport = MemoryTransport()
    settings = make_settings(
        {
            "topics": [
                {"name": "economy", "label": "Экономика", "tags": ["экономика"]},
                {"name": "politics", "label": "Политика", "tags": ["политика"]},
            ],
            "newsletters": {"weekly": {"lookback": "30d"}},
        },
        database_url=store.url,
    )
    pub = Publication(settings, store, clock=fixed(SLOT), transport=transport)
    drafts = [
        Draft(
            key=f"k{i}",
            slug=f"k{i}",
            title=title,
            summary_html="<p>x</p>",
            content_html="<p>x</p>",
            truncated=False,
            published=SLOT - timedelta(days=1 + i),
            tags=(tag,),
        )
        for i, (title, tag) in enumerate([("Rouble holds", "Экономика"), ("Election day", "Политика")])
    ]
    store.articles.ingest(drafts, site_url=settings.site.url, guid_authority="x", now=SLOT, source="t")
    store.subscribers.upsert_many(
        [Subscriber(email="econ@example.org", status="confirmed", newsletters=("weekly",), topics=("economy",))], SLOT
    )
    assert pub.send("weekly").status == "sent"
    (mail,) = [_html(message.data) for message in transport.sent]
    assert "Rouble holds" in mail and "Election day" not in mail
