"""An article's image for the email: absolute https, explicit width, alt text; never a broken one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from publisher.images import COLUMN_WIDTH, MIN_SIZE, Image, first_image

PAGE = "https://news.example.org/a-story/"


def test_the_first_usable_image_is_taken_with_its_alt_and_a_width_that_fits():
    content = '<p><img src="https://cdn.example.org/big.jpg" alt="A  river" width="1200" height="800"></p>'
    assert first_image(content, base=PAGE, alt="Title") == Image(
        "https://cdn.example.org/big.jpg", "A river", COLUMN_WIDTH, 384
    )


def test_relative_sources_resolve_against_the_article_and_alt_falls_back_to_the_title():
    image = first_image('<img src="/media/photo.png" width="800">', base=PAGE, alt="A story")
    assert image == Image("https://news.example.org/media/photo.png", "A story", COLUMN_WIDTH, None)


def test_images_that_would_show_broken_or_tiny_are_left_out():
    left_out = [
        '<img src="http://cdn.example.org/plain-http.jpg">',  # not https: blocked or warned about
        '<img src="data:image/png;base64,iVBORw0KGgo=">',
        '<img alt="no source">',
        '<img src="https://t.example.org/pixel.gif" width="1" height="1">',  # a tracking pixel
        '<img src="https://cdn.example.org/icon.png" width="32">',
        '<img src="javascript:alert(1)" width="300">',
        '<img src="https://t.example.org/open.gif">',  # no size: a tracking pixel shown at 576 px
        '<img src="https://cdn.example.org/a.jpg" width="100%">',
        '<img src="https://cdn.example.org/a.jpg" style="width:300px;height:200px">',
        '<img src="https://cdn.example.org/a.jpg" height="300">',
    ]
    for markup in left_out:
        assert first_image(markup, base="http://news.example.org/", alt="x") is None, markup
    both = left_out[3] + '<img src="https://cdn.example.org/real.jpg" width="300">'
    assert first_image(both, base=PAGE) == Image("https://cdn.example.org/real.jpg", "", 300, None)


def test_the_content_comes_before_the_summary():
    content, summary = (
        '<img src="https://a.example/c.jpg" width="400">',
        '<img src="https://a.example/s.jpg" width="400">',
    )
    assert first_image(content, summary).src == "https://a.example/c.jpg"
    assert first_image("<p>no image</p>", summary).src == "https://a.example/s.jpg"


def test_a_forged_size_leaves_the_image_out_instead_of_failing_the_issue():
    forged = ["²", "9" * 5000, "-300", "3e5", "٣٠٠", "300.5", "0x12c", "99999999"]
    for value in forged:
        for markup in (
            f'<img src="https://a.example/i.jpg" width="{value}" height="300">',
            f'<img src="https://a.example/i.jpg" width="300" height="{value}">',
        ):
            image = first_image(markup)
            assert image is None, markup
    tall = first_image(f'<img src="https://a.example/i.jpg" width="300" height="{"9" * 300}">')
    assert tall is None


@given(st.text(), st.text(), st.text())
def test_any_image_markup_gives_an_image_that_fits_or_none(src: str, width: str, height: str):
    markup = f"<p><img src={src!r} width={width!r} height={height!r}></p>"
    image = first_image(markup, base=PAGE)
    assert image is None or (image.src.startswith("https://") and MIN_SIZE <= image.width <= COLUMN_WIDTH)
