"""Teasers: cut at a sentence, keeping the article's links and emphasis."""

from __future__ import annotations

import pytest

from publisher.importers.textpage import read_textpage
from publisher.teasers import blocks_html, blocks_text, html_blocks, sentence_ends, shorten

ARTICLE = (
    '<h2>Notes</h2><p>The club met on <em>Tuesday</em>. Read the <a href="https://example.org/minutes">full '
    "minutes</a> online. H.E. Thongloun Sisoulith, the President, visited on 4-6 September. "
    "Mr. Smith said it was <strong>good</strong>! The end</p><ul><li>One item.</li><li>Two items.</li></ul>"
)


def test_a_shortened_teaser_ends_on_a_sentence_and_keeps_links_and_emphasis():
    kept, shortened = shorten(html_blocks(ARTICLE), 70)
    assert shortened
    assert blocks_html(kept) == (
        "<p>Notes</p><p>The club met on <em>Tuesday</em>. Read the "
        '<a href="https://example.org/minutes">full minutes</a> online.</p>'
    )
    assert blocks_text(kept) == (
        "Notes\n\nThe club met on Tuesday. Read the full minutes <https://example.org/minutes> online."
    )


def test_abbreviations_and_initials_do_not_end_a_sentence():
    text = html_blocks(ARTICLE)[1].text
    ends = [text[:end].rsplit(" ", 1)[-1] for end in sentence_ends(text)]
    assert ends == ["Tuesday.", "online.", "September.", "good!"]  # not "H.E." nor "Mr."


def test_an_emphasis_cut_in_the_middle_is_closed():
    block = html_blocks("<p>One <strong>two. Three</strong> four.</p>")[0]
    kept, _ = shorten([block], 12)
    assert blocks_html(kept) == "<p>One <strong>two.</strong></p>"


def test_a_first_sentence_longer_than_the_budget_is_kept_whole_up_to_twice_it():
    blocks = html_blocks("<p>" + "word " * 15 + "end. Next sentence.</p>")
    kept, _ = shorten(blocks, 60)
    assert kept[0].text.endswith("end.")
    kept, _ = shorten(html_blocks("<p>" + "word " * 40 + "end.</p>"), 60)
    assert kept[0].text.endswith("word…") and len(kept[0].text) <= 61


def test_unsafe_links_and_images_are_dropped_and_headings_become_paragraphs():
    blocks = html_blocks('<h1>Title</h1><p><a href="javascript:alert(1)">x</a> <img src="https://a/b.png"> y</p>')
    assert blocks_html(blocks) == "<p>Title</p><p>x y</p>"


@pytest.mark.parametrize("limit", [600, 300])
def test_every_teaser_of_a_capture_ends_on_a_sentence(captures, limit):
    for draft in read_textpage(captures.early.path, as_of=captures.early.as_of):
        kept, shortened = shorten(html_blocks(draft.summary_html), limit)
        if shortened and kept:
            last = kept[-1].text
            assert last.rstrip('”’")]').endswith((".", "!", "?", "…", ":")) or kept[-1].kind == "li", last[-80:]
            assert sum(len(block.text) for block in kept) <= 2 * limit


def test_the_preview_line_is_the_sentences_that_fit_or_a_cut_first_sentence():
    from publisher.teasers import first_sentences

    blocks = html_blocks("<p>Short one. Then a second sentence that is rather longer than the first.</p><p>No.</p>")
    assert first_sentences(blocks, 30) == "Short one."
    assert first_sentences(blocks, 200) == blocks[0].text
    long = html_blocks("<p>" + "word " * 60 + "end.</p>")
    assert first_sentences(long, 50) == ("word " * 9).strip() + "…"
    assert first_sentences((), 50) == ""


def test_a_one_megabyte_paragraph_is_cut_on_a_sentence_in_linear_work():
    """The abbreviation check read the whole text before each full stop: a 70 KB paragraph took
    50 s to render, a 1 MB one hours. Now each stop looks at the few characters before it."""
    sentence = "Dr. Smith met the U.S. team at No. 10 and left. "
    paragraph = sentence * (1_000_000 // len(sentence))
    ends = sentence_ends(paragraph)
    assert len(ends) == paragraph.count("left.")  # abbreviations still end no sentence
    kept, cut = shorten(html_blocks(f"<p>{paragraph}</p>"), 200)
    assert cut and kept[0].text.endswith("left.") and len(kept[0].text) <= 200


def test_relative_links_resolve_against_a_base_and_go_without_one():
    fragment = '<p>See <a href="/a/b">this</a>, <a href="https://x.example/">that</a> and <a href="#top">up</a>.</p>'
    (block,) = html_blocks(fragment, base="https://news.example.org/story/")
    assert block.html == (
        'See <a href="https://news.example.org/a/b">this</a>, <a href="https://x.example/">that</a> and '
        '<a href="https://news.example.org/story/#top">up</a>.'
    )
    (dropped,) = html_blocks(fragment, base="")  # nowhere to resolve them: the words stay, the links go
    assert dropped.html == 'See this, <a href="https://x.example/">that</a> and up.'
    (kept,) = html_blocks(fragment)  # the site's own pages keep links as written
    assert '<a href="/a/b">' in kept.html
