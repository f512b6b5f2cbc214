"""Selecting an issue's articles: the pure rules with a fixed clock, then each set of captures end to end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from publisher.config import NewsletterSettings, SourceSettings
from publisher.content import import_sources
from publisher.issues import build_issue, render_issue
from publisher.model import Article
from publisher.selection import Selection, Skipped, sections, select

SLOT = datetime(2025, 10, 20, 8, 0, tzinfo=UTC)


def newsletter(**overrides) -> NewsletterSettings:
    return NewsletterSettings(name="weekly", title="Weekly", from_="News <news@example.org>", **overrides)


def article(id: int, published: datetime, *tags: str) -> Article:
    return Article(
        guid=f"g{id}",
        slug=f"a{id}",
        title=f"Article {id}",
        origin=f"https://x/a{id}/",
        summary_html="<p>Teaser</p>",
        content_html="<p>Teaser</p><p>More</p>",
        truncated=True,
        published=published,
        updated=published,
        tags=tags,
        id=id,
    )


def titles(chosen: Selection) -> list[str]:
    return [a.title for a in chosen.articles]


def hours_ago(hours: float) -> datetime:
    return SLOT - timedelta(hours=hours)


def choose(articles, *, watermark=None, sent=(), now=SLOT, force=False, **settings):
    return select(
        articles,
        watermark=watermark,
        sent_ids=set(sent),
        newsletter=newsletter(**settings),
        slot=SLOT,
        now=now,
        force=force,
    )


def test_a_first_issue_takes_what_was_published_within_the_lookback_newest_first():
    old, recent, newest = article(1, hours_ago(24 * 8)), article(2, hours_ago(48)), article(3, hours_ago(1))
    chosen = choose([old, recent, newest], lookback=timedelta(days=7))
    assert titles(chosen) == ["Article 3", "Article 2"]
    assert chosen.since == SLOT - timedelta(days=7)
    assert chosen.watermark == newest.published


def test_the_watermark_is_the_newest_publication_time_of_the_previous_issue_not_its_send_time():
    watermark = hours_ago(100)  # the previous issue's newest article
    before, late_import = article(1, hours_ago(101)), article(2, hours_ago(99))
    chosen = choose([before, late_import], watermark=watermark)
    assert titles(chosen) == ["Article 2"]  # imported after that issue went out, still picked up


def test_an_article_published_at_the_same_moment_as_the_watermark_is_not_lost():
    watermark = hours_ago(24)  # e.g. two date-only Markdown posts of the same day
    sent, twin = article(1, watermark), article(2, watermark)
    assert titles(choose([sent, twin], watermark=watermark, sent=[1])) == ["Article 2"]


def test_an_article_already_sent_in_this_newsletter_is_never_sent_again_even_when_redated():
    redated = article(1, hours_ago(2))
    chosen = choose([redated, article(2, hours_ago(3))], watermark=hours_ago(50), sent=[1])
    assert titles(chosen) == ["Article 2"]


def test_future_dated_articles_wait_for_their_time():
    chosen = choose([article(1, SLOT + timedelta(hours=1)), article(2, hours_ago(1))])
    assert titles(chosen) == ["Article 2"]


def test_at_most_max_articles_and_the_rest_are_overflow_newest_first():
    many = [article(i, hours_ago(i)) for i in range(1, 8)]
    chosen = choose(many, max_articles=3)
    assert titles(chosen) == ["Article 1", "Article 2", "Article 3"]
    assert [a.title for a in chosen.overflow] == ["Article 4", "Article 5", "Article 6", "Article 7"]
    assert chosen.count == 7 and chosen.watermark == many[0].published


def test_fewer_than_min_articles_is_skipped_and_says_why():
    skipped = choose([article(1, hours_ago(1)), article(2, hours_ago(2))], min_articles=3)
    assert isinstance(skipped, Skipped)
    assert skipped.reason == "skipped: 2 new articles, minimum 3"
    assert str(choose([], min_articles=1)) == "skipped: 0 new articles, minimum 1"


def test_force_lowers_the_minimum_to_one_but_never_builds_an_empty_issue():
    assert titles(choose([article(1, hours_ago(1))], min_articles=5, force=True)) == ["Article 1"]
    assert isinstance(choose([], min_articles=5, force=True), Skipped)


def test_include_and_exclude_tags_compare_as_slugs():
    items = [
        article(1, hours_ago(1), "China"),
        article(2, hours_ago(2), "Climate Change"),
        article(3, hours_ago(3), "china", "Opinion"),
        article(4, hours_ago(4)),
    ]
    assert titles(choose(items, include_tags=("CHINA",))) == ["Article 1", "Article 3"]
    assert titles(choose(items, exclude_tags=("opinion", "climate-change"))) == ["Article 1", "Article 4"]


def test_sections_group_by_the_first_matching_tag_in_configured_order():
    items = [
        article(1, hours_ago(1), "World"),
        article(2, hours_ago(2), "China", "World"),
        article(3, hours_ago(3)),
        article(4, hours_ago(4), "china"),
    ]
    grouped = sections(items, ("China", "World", "Empty"))
    assert [(name, [a.id for a in group]) for name, group in grouped] == [
        ("China", [2, 4]),
        ("World", [1]),
        ("More", [3]),
    ]
    assert sections(items, ()) == [("", items)]


# -- the captures, end to end through the store---------------------------------------------------


def _import(store, settings, seed, as_of):
    import_sources(store, settings, [SourceSettings(path=str(seed), format="textpage")], as_of=as_of, now=as_of)


def test_the_captures_give_issue_1_then_exactly_the_new_articles_then_a_skip(
    make_settings, database_url, store, captures
):
    settings = make_settings(
        {
            "newsletters": {
                "weekly": {
                    "title": "Weekly",
                    "schedule": "0 8 * * mon",
                    "lookback": "7d",
                    "min_articles": 1,
                    "max_articles": 20,
                }
            }
        },
        database_url=database_url,
    )
    early, late = captures.early, captures.late
    _import(store, settings, early.path, early.as_of)
    first_slot = datetime(2025, 10, 6, 8, tzinfo=UTC)
    first = build_issue(store, settings, "weekly", first_slot, first_slot)
    assert first.number == 1 and first.state == "approved" and not first.overflow_ids
    assert [a.title for a in store.articles.by_ids(first.article_ids)] == list(captures.issue_1)

    _import(store, settings, late.path, late.as_of)
    second_slot = datetime(2025, 10, 20, 8, tzinfo=UTC)
    second = build_issue(store, settings, "weekly", second_slot, second_slot)
    assert second.number == 2
    assert [a.title for a in store.articles.by_ids(second.article_ids)] == list(captures.issue_2)
    assert second.watermark == max(a.published for a in store.articles.by_ids(second.article_ids))
    rendered = render_issue(store, settings, second)
    new = len(captures.issue_2)  # 18 in the seeds
    assert f"{new} new articles since 30 September" in rendered.html
    lead = store.articles.by_ids(second.article_ids[:1])[0]
    assert rendered.preheader and rendered.preheader.rstrip("…") in " ".join(lead.summary_html.split())  # first words
    assert len(rendered.subject) <= 78 and rendered.subject.endswith(f"+ {new - 1} more")

    third_slot = datetime(2025, 10, 27, 8, tzinfo=UTC)
    third = build_issue(store, settings, "weekly", third_slot, third_slot)
    assert isinstance(third, Skipped)
    assert third.reason == "skipped: 0 new articles, minimum 1"
    assert [i.number for i in store.issues.list("weekly")] == [1, 2]


@pytest.mark.parametrize(("lookback", "expected"), [("7d", "all"), ("30m", "all"), ("10m", 10)])
def test_the_first_issue_lookback_counts_back_from_the_slot(make_settings, tmp_path, captures, lookback, expected):
    """One article a minute back from the capture time: 10 minutes reach 10 of them, 30 minutes reach all."""
    from publisher.store import Store

    settings = make_settings(
        {"newsletters": {"weekly": {"lookback": lookback}}}, database_url=f"sqlite:///{tmp_path / 'p.db'}"
    )
    store = Store.open(settings.database.url)
    early = captures.early
    assert 10 < early.count <= 30
    _import(store, settings, early.path, early.as_of)
    issue = build_issue(store, settings, "weekly", early.as_of, early.as_of)
    assert len(issue.article_ids) == (early.count if expected == "all" else expected)
    store.close()


def test_sent_issues_are_archived_as_pages_an_index_and_an_issues_feed(make_settings, tmp_path, captures):
    import json

    from publisher.archive import write_archive
    from publisher.store import Store

    settings = make_settings(
        {"newsletters": {"weekly": {"title": "Weekly"}}}, database_url=f"sqlite:///{tmp_path / 'p.db'}"
    )
    store = Store.open(settings.database.url)
    _import(store, settings, captures.early.path, captures.early.as_of)
    slot = datetime(2025, 10, 6, 8, tzinfo=UTC)
    issue = build_issue(store, settings, "weekly", slot, slot)
    assert write_archive(store, settings, "weekly")[0].name == "index.html"  # nothing sent yet: no page
    store.issues.transition("weekly", issue.number, "sending", slot)
    written = {path.relative_to(tmp_path).as_posix() for path in write_archive(store, settings, "weekly")}
    assert written == {
        "archive/weekly/1.html",
        "archive/weekly/index.html",
        "feeds/newsletters/weekly/rss.xml",
        "feeds/newsletters/weekly/atom.xml",
        "feeds/newsletters/weekly/feed.json",
    }
    page = (tmp_path / "archive/weekly/1.html").read_text()
    assert captures.issue_1[0] in page and "@@" not in page and '<html lang="en">' in page
    assert 'href="1.html"' in (tmp_path / "archive/weekly/index.html").read_text()
    feed = json.loads((tmp_path / "feeds/newsletters/weekly/feed.json").read_text())
    assert feed["items"][0]["url"] == "https://news.example.org/archive/weekly/1.html"
    assert feed["items"][0]["id"].startswith("tag:news.example.org,")
    assert write_archive(store, settings, "weekly") == []  # unchanged files are not rewritten
    store.close()


def test_the_digest_commands_build_list_approve_cancel_and_preview(tmp_path, captures):
    import email
    import email.policy
    import json

    from click.testing import CliRunner

    from publisher.cli import cli

    config = tmp_path / "config.toml"
    config.write_text(
        '[site]\nurl = "https://news.example.org"\n\n[newsletters.weekly]\n'
        'lookback = "5000d"\nrequire_approval = true\n',
        encoding="utf-8",
    )

    def run(*args: str):
        return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)

    early = captures.early
    assert run("import", str(early.path), "--as-of", early.as_of.isoformat()).exit_code == 0
    preview = run("digest", "preview", "weekly", "--out", str(tmp_path / "preview"))
    assert preview.exit_code == 0, preview.output
    assert f"articles: {early.count} (+0 linked as more)" in preview.output
    raw = (tmp_path / "preview" / "weekly-1.eml").read_bytes()
    assert not email.message_from_bytes(raw, policy=email.policy.default).defects
    assert run("digest", "issues", "weekly", "--json").output.strip() == "[]"  # a preview stores nothing

    built = run("digest", "build", "weekly", "--slot", "2025-10-06T08:00:00+00:00")
    assert "built issue 1 [draft]" in built.output and f"{early.count} articles" in built.output
    again = run("digest", "build", "weekly", "--slot", "2025-10-06T09:00:00+01:00")  # the same instant
    assert "already built: issue 1 [draft]" in again.output
    assert "issue 1 [approved]" in run("digest", "approve", "weekly").output
    listed = json.loads(run("digest", "issues", "weekly", "--json").output)
    assert [(i["number"], i["state"], i["articles"]) for i in listed] == [(1, "approved", early.count)]
    skipped = run("digest", "build", "weekly", "--slot", "2025-10-13T08:00:00+00:00")
    assert skipped.exit_code == 0 and "skipped: 0 new articles, minimum 1" in skipped.output
    assert "issue 1 [cancelled]" in run("digest", "cancel", "weekly", "1").output
    wrong = run("digest", "approve", "weekly", "1")
    assert wrong.exit_code == 1 and "is cancelled; it cannot become approved" in wrong.output
    assert run("digest", "issues", "nope").exit_code == 1


def _drafts(store, settings, *published):
    from publisher.model import Draft

    store.articles.ingest(
        [
            Draft(
                key=f"k{i}",
                slug=f"k{i}",
                title=f"Article {i}",
                summary_html="<p>x</p>",
                content_html="<p>x</p>",
                truncated=False,
                published=moment,
            )
            for i, moment in enumerate(published, start=1)
        ],
        site_url=settings.site.url,
        guid_authority="x",
        now=max(published),
        source="t",
    )


@pytest.mark.parametrize("later_issue_first", [False, True])
def test_articles_of_a_cancelled_issue_go_into_the_next_one(store, make_settings, later_issue_first):
    from publisher.issues import cancel

    settings = make_settings({"newsletters": {"weekly": {"lookback": "7d"}}}, database_url=store.url)
    _drafts(store, settings, SLOT - timedelta(days=2), SLOT - timedelta(days=1))
    first = build_issue(store, settings, "weekly", SLOT, SLOT)
    if later_issue_first:  # another issue went out after it, with a later watermark
        late_date = SLOT + timedelta(days=3)
        from publisher.model import Draft

        store.articles.ingest(
            [
                Draft(
                    key="late",
                    slug="late",
                    title="Late",
                    summary_html="<p>x</p>",
                    content_html="<p>x</p>",
                    truncated=False,
                    published=late_date,
                )
            ],
            site_url=settings.site.url,
            guid_authority="x",
            now=late_date,
            source="t",
        )
        build_issue(store, settings, "weekly", SLOT + timedelta(days=4), SLOT + timedelta(days=4))
    cancel(store, "weekly", first.number, SLOT + timedelta(days=5))
    later = SLOT + timedelta(days=14)
    again = build_issue(store, settings, "weekly", later, later, force=True)
    assert [a.title for a in store.articles.by_ids(again.article_ids)] == ["Article 2", "Article 1"]


def test_two_posts_of_the_same_day_both_go_out(store, make_settings):
    settings = make_settings({"newsletters": {"weekly": {"lookback": "7d"}}}, database_url=store.url)
    day = SLOT - timedelta(days=1)
    _drafts(store, settings, day)
    build_issue(store, settings, "weekly", SLOT, SLOT)
    from publisher.model import Draft

    store.articles.ingest(
        [
            Draft(
                key="twin",
                slug="twin",
                title="Twin",
                summary_html="<p>x</p>",
                content_html="<p>x</p>",
                truncated=False,
                published=day,
            )
        ],
        site_url=settings.site.url,
        guid_authority="x",
        now=SLOT,
        source="t",
    )
    later = SLOT + timedelta(days=7)
    second = build_issue(store, settings, "weekly", later, later)
    assert [a.title for a in store.articles.by_ids(second.article_ids)] == ["Twin"]


def test_each_section_keeps_its_newest_article_in_full_before_the_rest_fill_max_articles():
    world = [article(i, hours_ago(i), "World") for i in range(1, 5)]
    china = article(9, hours_ago(9), "China")
    chosen = choose([*world, china], max_articles=2, sections=("China", "World"))
    assert titles(chosen) == ["Article 1", "Article 9"]
    assert [a.title for a in chosen.overflow] == ["Article 2", "Article 3", "Article 4"]
    grouped = sections(chosen.articles, ("China", "World"))
    assert [(title, [a.title for a in items]) for title, items in grouped] == [
        ("China", ["Article 9"]),
        ("World", ["Article 1"]),
    ]
    reasons = {v.article.title: v.reason.value for v in chosen.verdicts}
    assert reasons == {
        "Article 1": "in",
        "Article 9": "in",
        "Article 2": "more",
        "Article 3": "more",
        "Article 4": "more",
    }


def test_a_late_import_dated_before_the_watermark_is_in_and_a_back_catalogue_is_too_old():
    from dataclasses import replace

    watermark, built = hours_ago(48), hours_ago(24)
    late = replace(article(1, hours_ago(49)), first_seen=hours_ago(2))  # imported after the build
    seen = replace(article(2, hours_ago(50)), first_seen=hours_ago(47))  # was there at the build
    ancient = replace(article(3, watermark - timedelta(days=30)), first_seen=hours_ago(1))
    chosen = select(
        [late, seen, ancient],
        watermark=watermark,
        built_at=built,
        sent_ids=set(),
        newsletter=newsletter(lookback=timedelta(days=7)),
        slot=SLOT,
        now=SLOT,
    )
    assert titles(chosen) == ["Article 1"]
    assert {v.article.title: v.reason.value for v in chosen.verdicts} == {"Article 1": "in", "Article 3": "too-old"}
    assert chosen.watermark == watermark  # an issue of late articles never moves the watermark back
