"""The textpage importer on the real seed captures and on small hand-made ones."""

from datetime import UTC, datetime, timedelta

import pytest

from publisher.errors import ContentError
from publisher.importers.textpage import parse_textpage, read_textpage
from tests.conftest import AS_OF_000, AS_OF_002, SEED_000, SEED_002

FIRST_TITLES_002 = [
    "The traditional friendship between Laos and China is at its best in history",
    "Li Qiang issues rallying call for development at UN",
    "China and Cuba show that a better world is not only possible – it is being built day by day",
    "China’s Premier champions peace, justice and development at UN General Assembly",
]
LAST_TITLE_002 = "Xi Jinping: Writing a new chapter in building a China-LAC Community with a Shared Future"


def test_seed_002_gives_19_articles_in_page_order():
    drafts = read_textpage(SEED_002, as_of=AS_OF_002)
    assert len(drafts) == 19
    assert [d.title for d in drafts[:4]] == FIRST_TITLES_002
    assert drafts[-1].title == LAST_TITLE_002
    assert [d.published for d in drafts] == [AS_OF_002 - timedelta(minutes=i) for i in range(19)]


def test_seed_002_teasers_and_full_posts():
    drafts = {d.title: d for d in read_textpage(SEED_002, as_of=AS_OF_002)}
    assert sum(d.truncated for d in drafts.values()) == 15
    full = [d.title for d in drafts.values() if not d.truncated]
    assert "Is China a threat?" not in full
    assert len(full) == 4
    teaser = drafts["Li Qiang issues rallying call for development at UN"]
    assert teaser.content_html.startswith("<p>During his recent visit to New York")
    assert teaser.content_html.count("<ul>") == 1 and teaser.content_html.count("<li>") == 4
    assert teaser.content_html.endswith("global development.</p>")


def test_no_continue_reading_survives_and_typography_is_kept():
    for seed, as_of in ((SEED_002, AS_OF_002), (SEED_000, AS_OF_000)):
        for draft in read_textpage(seed, as_of=as_of):
            assert "Continue reading" not in draft.content_html
            assert "Continue reading" not in draft.summary_html
    text = "".join(d.content_html for d in read_textpage(SEED_002, as_of=AS_OF_002))
    for mark in "’–“”":
        assert mark in text


def test_overlapping_articles_are_identical_in_both_captures():
    first = {d.slug: d for d in read_textpage(SEED_002, as_of=AS_OF_002)}
    second = {d.slug: d for d in read_textpage(SEED_000, as_of=AS_OF_000)}
    shared = first.keys() & second.keys()
    assert len(shared) == 2
    for slug in shared:
        assert first[slug].content_html == second[slug].content_html
    assert len(second) - len(shared) == 18


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
        parse_textpage(text, where="capture.txt", as_of=AS_OF_002)


def test_slugs_are_wordpress_style():
    drafts = {d.title: d.slug for d in read_textpage(SEED_002, as_of=AS_OF_002)}
    assert drafts["China’s Premier champions peace, justice and development at UN General Assembly"] == (
        "chinas-premier-champions-peace-justice-and-development-at-un-general-assembly"
    )
    assert drafts["BRICS countries seek common stand on ‘tariff wars’"] == (
        "brics-countries-seek-common-stand-on-tariff-wars"
    )


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
