"""The textpage importer on each set of captures (ours, the real seeds) and on small hand-made ones."""

from datetime import UTC, datetime, timedelta

import pytest

from publisher.errors import ContentError
from publisher.importers.textpage import parse_textpage, read_textpage
from tests.helpers import OURS

AS_OF = datetime(2025, 9, 30, tzinfo=UTC)


def test_the_early_capture_gives_its_articles_in_page_order(captures):
    early = captures.early
    drafts = read_textpage(early.path, as_of=early.as_of)
    assert len(drafts) == early.count
    assert [d.title for d in drafts] == list(captures.issue_1)
    assert [d.published for d in drafts] == [early.as_of - timedelta(minutes=i) for i in range(early.count)]


def test_teasers_and_full_posts(captures):
    drafts = {d.title: d for d in read_textpage(captures.early.path, as_of=captures.early.as_of)}
    assert sum(d.truncated for d in drafts.values()) == captures.early_teasers
    full = [d.title for d in drafts.values() if not d.truncated]
    assert captures.a_teaser not in full
    assert len(full) == captures.early.count - captures.early_teasers
    expected = captures.list_teaser
    teaser = drafts[expected.title]
    assert teaser.truncated
    assert teaser.content_html.startswith(expected.starts)
    assert teaser.content_html.count("<ul>") == 1 and teaser.content_html.count("<li>") == expected.items
    assert teaser.content_html.endswith(expected.ends)


def test_no_continue_reading_survives_and_typography_is_kept(captures):
    for capture in (captures.early, captures.late):
        for draft in read_textpage(capture.path, as_of=capture.as_of):
            assert "Continue reading" not in draft.content_html
            assert "Continue reading" not in draft.summary_html
    text = "".join(d.content_html for d in read_textpage(captures.early.path, as_of=captures.early.as_of))
    for mark in "’–“”":
        assert mark in text


def test_overlapping_articles_are_identical_in_both_captures(captures):
    first = {d.slug: d for d in read_textpage(captures.early.path, as_of=captures.early.as_of)}
    second = {d.slug: d for d in read_textpage(captures.late.path, as_of=captures.late.as_of)}
    shared = first.keys() & second.keys()
    assert len(shared) == captures.shared > 0
    assert captures.shared_slug in shared
    for slug in shared:
        assert first[slug].content_html == second[slug].content_html
        assert first[slug].summary_html == second[slug].summary_html
    assert [d.title for d in second.values() if d.slug not in shared] == list(captures.issue_2)


def test_our_captures_exercise_every_rule_of_the_format():
    """Guards tests/data: if an edit there drops a rule, this says which."""
    early = {d.title: d for d in read_textpage(OURS.early.path, as_of=OURS.early.as_of)}
    late = {d.title: d for d in read_textpage(OURS.late.path, as_of=OURS.late.as_of)}
    raw = OURS.early.path.read_text(encoding="utf-8")
    # A full post opens the file; its headings, one equal to the next teaser's title, stay inside it.
    calendar = early["Autumn club-run calendar"]
    assert not calendar.truncated and raw.startswith("Autumn club-run calendar\n")
    for heading in ("Sunday social rides", "Wednesday chaingang", "Lanterns on the towpath"):
        assert f"<p>{heading}</p>" in calendar.content_html
    # The teaser's title is the last line above the marker that equals it.
    assert early["Lanterns on the towpath"].content_html.startswith("<p>Forty riders")
    # A run of bullets is one list, and a paragraph right after it is not an item.
    assert calendar.content_html.count("<ul>") == 1 and calendar.content_html.count("<li>") == 4
    assert "</li></ul>\n<p>If a ride is cancelled" in calendar.content_html
    # Indented bullets are items too.
    assert late["Ten things we learned from the reliability ride"].content_html.count("<li>") == 10
    assert "\n  • " in raw
    # A title line is compared trimmed; a longer line that starts with the title is body text.
    route = early["Route of the month: Heron Lane and the two fords"]
    assert "Route of the month: Heron Lane and the two fords  \n" in raw
    assert "<p>Route of the month: Heron Lane and the two fords, printed on one page</p>" in route.content_html
    # Full posts: several, one closing the file, each with more than its first paragraph.
    full = [d for d in early.values() if not d.truncated]
    assert [d.title for d in full] == [
        "Autumn club-run calendar",
        "Committee notes, September",
        "Lost property",
        "Welcome to our new members",
    ]
    assert all(d.summary_html != d.content_html for d in full)
    # Typography, including the single quotes, stays as written; HTML-special characters are escaped.
    assert "‘Why does my chain skip?’" in raw
    assert "&amp; Crank" in early["Café stop review: The Kettle & Crank"].content_html
    # Articles are separated by one blank line or more.
    assert "\n\n\n" in OURS.late.path.read_text(encoding="utf-8")


CAPTURE = """\
A full post without a marker

It has a paragraph.

A heading inside it

  • first item
  • second item
Closing words.

The teaser title

Teaser paragraph one.
The teaser title

Teaser paragraph two, after a line repeating the title.

Continue reading The teaser title

Last full post

Only text.
"""


def test_hand_made_capture_follows_the_format_rules():
    as_of = datetime(2026, 1, 1, tzinfo=UTC)
    drafts = parse_textpage(CAPTURE, where="capture.txt", as_of=as_of)
    assert [d.title for d in drafts] == ["A full post without a marker", "The teaser title", "Last full post"]
    full, teaser, last = drafts
    assert not full.truncated and teaser.truncated and not last.truncated
    assert "<p>A heading inside it</p>" in full.content_html
    assert "<ul><li>first item</li><li>second item</li></ul>\n<p>Closing words.</p>" in full.content_html
    # The title is the *last* matching line above the marker.
    assert teaser.content_html == "<p>Teaser paragraph two, after a line repeating the title.</p>"
    assert full.slug == "a-full-post-without-a-marker"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 1, "empty"),
        ("   \n\n", 1, "empty"),
        ("Something\n\nContinue reading Missing title\n", 3, "no line above"),
        ("Same\n\nSame\n\nbody\n\nContinue reading Same\n\nSame\n\nx\nContinue reading Same\n", 3, "appears twice"),
    ],
)
def test_malformed_captures_name_the_file_and_line(text, line, message):
    with pytest.raises(ContentError, match=rf"^capture\.txt:{line}: .*{message}"):
        parse_textpage(text, where="capture.txt", as_of=AS_OF)


def test_slugs_are_wordpress_style(captures):
    slugs = {d.title: d.slug for d in read_textpage(captures.early.path, as_of=captures.early.as_of)}
    for title, slug in captures.slugs:
        assert slugs[title] == slug


@pytest.mark.parametrize(
    "text",
    [
        ("x" * 50_000 + "\nteaser\nContinue reading " + "x" * 50_000 + "\n") * 2,  # the same long title twice
        "•" * 50_000 + "\n",  # a title with nothing to slug
        "Continue reading " + "y" * 50_000 + "\n",  # a marker without its title
    ],
    ids=["twice", "no-slug", "marker"],
)
def test_error_messages_stay_short_whatever_the_title(text):
    with pytest.raises(ContentError) as raised:
        parse_textpage(text, where="c.txt", as_of=datetime(2025, 1, 1, tzinfo=UTC))
    assert len(str(raised.value)) < 300 and "\n" not in str(raised.value)
