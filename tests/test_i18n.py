"""The email in the publication's language: gettext catalogues chosen by `site.language`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser

import pytest

from publisher import i18n
from publisher.model import Article
from publisher.render import render_digest
from publisher.selection import Digest
from tests.helpers import REPO

SLOT = datetime(2025, 10, 6, 8, tzinfo=UTC)  # a Monday
# Every English word or phrase the digest templates and the render write (msgids, month and day names).
ENGLISH = [
    "View this issue",
    "browser",
    "Issue ",
    "Continue reading",
    "More new articles",
    "…and",
    "Read this issue",
    "You are receiving",
    "subscribed to it",
    "Forwarded to you",
    "Subscribe here",
    "Preferences",
    "Unsubscribe",
    "new article",
    "min read",
    "By Ada",
    " and Grace",
    "Monday",
    "October",
    "September",
    "more",
]


def article(n: int, **fields) -> Article:
    return Article(
        **{
            "guid": f"g{n}",
            "slug": f"histoire-{n}",
            "title": f"Histoire {n}",
            "summary_html": "<p>Première phrase. Deuxième phrase.</p>",
            "content_html": "<p>" + "mot " * 500 + "fin.</p>",
            "truncated": n % 2 == 0,
            "published": SLOT - timedelta(hours=n),
            "updated": SLOT - timedelta(hours=n),
            "id": n,
            "authors": ("Ada Lovelace", "Grace Hopper") if n == 1 else (),
        }
        | fields
    )


def render(make_settings, language: str, **newsletter):
    settings = make_settings(
        {
            "site": {"title": "Le Quotidien", "language": language},
            "newsletters": {"weekly": {"title": "La Semaine", "max_articles": 3, "site_link": True, **newsletter}},
        }
    )
    articles = [article(n) for n in range(1, 60)]
    digest = Digest("weekly", 4, SLOT, tuple(articles[:3]), tuple(articles[3:]), SLOT - timedelta(days=7))
    return render_digest(digest, settings=settings, newsletter=settings.newsletter("weekly"))


def visible_text(page: str) -> str:
    """The words a reader sees: tag contents and alt/aria-label text, not CSS or the markup."""
    page = re.sub(r"<(style|head)[^>]*>.*?</\1>", " ", page, flags=re.S)
    labels = " ".join(re.findall(r'(?:aria-label|alt)="([^"]*)"', page))
    return re.sub(r"<[^>]+>", " ", page) + " " + labels


def test_a_french_publication_gets_every_template_string_in_french(make_settings):
    rendered = render(make_settings, "fr")
    seen = visible_text(rendered.html)
    for part, text in (("html", seen), ("text", rendered.text), ("subject", rendered.subject)):
        left = [phrase for phrase in ENGLISH if phrase in text]
        assert not left, f"English left in the {part} part: {left}"
    for french in (
        "Voir ce numéro dans votre navigateur",
        "Numéro 4",
        "lundi 6 octobre 2025",
        "59 nouveaux articles depuis le 29 septembre",
        "Par Ada Lovelace et Grace Hopper",
        "2 min de lecture",
        "Lire la suite →",
        "Autres nouveaux articles",
        "Se désabonner",
        "Préférences",
        "On vous l’a transféré ?",
        "Abonnez-vous ici",
        "Lire les articles de ce numéro sur Le Quotidien →",
    ):
        assert french in seen, french
    assert "Vous recevez La Semaine parce que" in " ".join(rendered.text.split())
    assert rendered.subject == "Histoire 1 + 58 autres"
    assert '<html lang="fr"' in rendered.html


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("de", ["Montag, 6. Oktober 2025", "Weiterlesen →", "Abbestellen"]),
        ("es", ["lunes, 6 de octubre de 2025", "Seguir leyendo →", "Darse de baja"]),
        ("fr-CA", ["lundi 6 octobre 2025", "Lire la suite →"]),  # a region uses its language's catalogue
        ("pt", ["Monday 6 October 2025", "Continue reading →", "Unsubscribe"]),  # no catalogue: English
    ],
)
def test_german_and_spanish_are_shipped_and_other_languages_fall_back_to_english(make_settings, language, words):
    seen = visible_text(render(make_settings, language).html)
    for word in words:
        assert word in seen, word


def test_every_shipped_catalogue_translates_every_message_of_the_templates():
    """The emails, the archive, the subscriber's pages and mails (templates/web/) and the site."""
    used = set()
    folders = [REPO / "templates" / name for name in ("email", "archive", "web", "site")]
    for template in (path for folder in folders for path in folder.glob("*.*") if path.is_file()):
        used |= set(re.findall(r'_\("([^"]+)"', template.read_text(encoding="utf-8")))
    assert len(used) > 70
    for language in ("fr", "de", "es"):
        messages = i18n.translations(language)._catalog  # type: ignore[attr-defined]
        missing = sorted(message for message in used if not messages.get(message))
        assert not missing, f"{language}: {missing}"
        assert all(value for value in messages.values()), language


def test_french_topic_headings_and_the_archive_page_are_in_french(make_settings):
    """Issue 16 review: the heading of articles of no topic said "More" (`== MORE ==`), and the
    view-in-browser page said "Issue 1" and "Continue reading →" on a French site."""
    from dataclasses import replace

    from publisher.render import context
    from publisher.templates import environment, render_template

    settings = make_settings(
        {
            "site": {"title": "Le Quotidien", "language": "fr"},
            "topics": [{"name": "asia", "label": "Asie", "tags": ["asia"]}],
            "newsletters": {"weekly": {"title": "La Semaine", "sections": "topics"}},
        }
    )
    newsletter = settings.newsletter("weekly")
    articles = (article(1, tags=("asia",)), article(2))
    digest = replace(Digest("weekly", 4, SLOT, articles, (), None), topics=tuple(settings.topics))
    rendered = render_digest(digest, settings=settings, newsletter=newsletter)
    assert "== ASIE ==" in rendered.text and "== AUTRES NOUVELLES ==" in rendered.text
    assert "MORE" not in rendered.text and ">More<" not in rendered.html
    values = {**context(digest, settings, newsletter), "subject": rendered.subject}
    page = visible_text(render_template(environment(settings), "archive/issue.html.j2", values))
    for french in ("Numéro 4", "Lire la suite →", "Autres nouvelles", "Asie"):
        assert french in page, french
    left = [phrase for phrase in ("Issue ", "Continue reading", "More") if phrase in page]
    assert not left, left


def test_the_french_text_part_spaces_its_colons_and_wraps_the_footer_on_the_address(make_settings):
    """Issue 16 review: "Lire la suite:" lacked French spacing; the footer broke at 52 characters
    (the wrap measured the 35-character placeholder token); "…/subscribe." glued the period on."""
    from publisher.message import compile_message

    settings = make_settings(
        {"site": {"title": "Le Quotidien", "language": "fr"}, "newsletters": {"weekly": {"title": "La Semaine"}}}
    )
    rendered = render(make_settings, "fr")
    for label in ("Lire la suite", "Préférences", "Se désabonner", "Voir ce numéro dans votre navigateur"):
        assert f"{label}\u00a0:" in rendered.text, label
    assert "/subscribe." not in rendered.text and "/subscribe\n" in rendered.text
    compiled = compile_message(rendered, settings=settings, newsletter=settings.newsletter("weekly"), issue_number=4)
    raw = compiled.personalise(
        subscriber_id=7,
        email="ann@example.org",
        name="Ann",
        unsubscribe_url="https://news.example.org/u/1",
        preferences_url="https://news.example.org/p/1",
    )
    text = BytesParser(policy=policy.default).parsebytes(raw).get_body(("plain",)).get_content()
    footer = text.replace("\r\n", "\n").split("\n-- \n")[1].splitlines()
    assert footer[0].startswith("Vous recevez La Semaine parce que ann@example.org s’y est"), footer
    assert 57 <= len(footer[0]) <= 72, footer  # filled as if the placeholder were an address, not a token
