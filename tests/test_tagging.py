"""Tags for content that has none: `[[sources]] tags`, `[[tag_rules]]` on import, and
`publisher articles --retag` — so the seed publication's untagged captures sort into topics."""

import json
import tomllib
from pathlib import Path

from click.testing import CliRunner

from publisher.cli import cli
from publisher.config import settings_from_dict
from publisher.tagging import tags_for
from tests.helpers import SEED_CAPTURES

BASE = '[site]\nurl = "https://news.example.org"\npostal_address = "1 Example Road, Testville"\n\n'
RULES = """
[[tag_rules]]
tag = "Asia"
match = ["Laos", "Central Asia", "DPRK"]

[[tag_rules]]
tag = "climate"
match = "climate (change|summit)|low-carbon"
"""


def _run(config: Path, *args: str):
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


def _rules(tmp_path: Path, text: str = RULES):
    return settings_from_dict(tomllib.loads(BASE + text), tmp_path / "config.toml").tag_rules


def test_rules_match_whole_words_or_a_regular_expression_in_title_and_text(tmp_path):
    rules = _rules(tmp_path)
    assert tags_for("News from laos", "", "", (), (), rules) == ("Asia",)  # any case
    assert tags_for("Laotian food", "", "", (), (), rules) == ()  # whole words only
    assert tags_for("A report", "<p>On the <em>Climate Summit</em> today</p>", "", (), (), rules) == ("climate",)
    # the article's own tags first, then the source's, then earned ones; a tag is never doubled
    assert tags_for("Laos", "", "", ("asia", "x"), ("feeds", "X"), rules) == ("asia", "x", "feeds")


def test_untagged_seed_captures_get_tags_on_import_and_from_their_source(tmp_path):
    SEED_CAPTURES.require()
    config = tmp_path / "config.toml"
    source = SEED_CAPTURES.early.path
    config.write_text(
        BASE + f'[[sources]]\npath = "{source}"\nformat = "textpage"\ntags = ["front page"]\n' + RULES,
        encoding="utf-8",
    )
    assert _run(config, "import", "--as-of", SEED_CAPTURES.early.as_of.isoformat()).exit_code == 0
    articles = {a["title"]: a["tags"] for a in json.loads(_run(config, "articles", "--json").output)}
    assert all(tags[0] == "front page" for tags in articles.values())
    assert "Asia" in articles["The traditional friendship between Laos and China is at its best in history"]
    assert (
        "climate"
        in articles["Xi Jinping at the UN Climate Summit: Green and low-carbon transition is the trend of the time"]
    )
    assert (tmp_path / "feeds" / "tags" / "asia" / "rss.xml").exists()
    again = _run(config, "import", "--as-of", SEED_CAPTURES.early.as_of.isoformat())
    assert f"0 added, 0 updated, {SEED_CAPTURES.early.count} unchanged" in again.output  # the same tags again


def test_retag_applies_new_rules_to_what_is_stored(tmp_path):
    SEED_CAPTURES.require()
    config = tmp_path / "config.toml"
    config.write_text(BASE, encoding="utf-8")
    early = SEED_CAPTURES.early
    _run(config, "import", str(early.path), "--as-of", early.as_of.isoformat())
    assert all(not a["tags"] for a in json.loads(_run(config, "articles", "--json").output))

    config.write_text(BASE + RULES, encoding="utf-8")
    result = _run(config, "articles", "--retag")
    assert result.exit_code == 0 and "retagged" in result.output
    tagged = {a["title"]: a["tags"] for a in json.loads(_run(config, "articles", "--json").output)}
    assert tagged["The traditional friendship between Laos and China is at its best in history"] == ["Asia"]
    assert (tmp_path / "feeds" / "tags" / "asia" / "rss.xml").exists()
    assert "retagged 0 articles" in _run(config, "articles", "--retag").output  # nothing left to add
    again = _run(config, "import", str(early.path), "--as-of", early.as_of.isoformat())
    assert f"0 added, 0 updated, {early.count} unchanged" in again.output  # retag wrote what import would


def test_a_bad_rule_is_a_one_line_error_naming_the_key(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(BASE + '[[tag_rules]]\ntag = "x"\nmatch = "(unclosed"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "articles"])
    assert result.exit_code == 1 and "tag_rules[0].match: not a regular expression" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_words_that_start_or_end_with_punctuation_match_as_words(tmp_path):
    rules = _rules(tmp_path, '[[tag_rules]]\ntag = "code"\nmatch = ["C++", ".NET", "F#"]\n')
    assert tags_for("Why C++ is back", "", "", (), (), rules) == ("code",)
    assert tags_for("Moving to .NET 9", "", "", (), (), rules) == ("code",)
    assert tags_for("F# at work", "", "", (), (), rules) == ("code",)
    assert tags_for("Nothing here: C+, ASP.NETwork, F", "", "", (), (), rules) == ()


def test_a_rule_in_another_script_tags_and_its_tag_selects(tmp_path):

    rules = _rules(tmp_path, '[[tag_rules]]\ntag = "экономика"\nmatch = ["рубль", "инфляция"]\n')
    assert tags_for("Рубль укрепился", "", "", (), (), rules) == ("экономика",)  # not dropped
    assert tags_for("Погода", "", "", ("中国经济",), (), rules) == ("中国经济",)


def test_a_rule_that_could_backtrack_without_end_is_refused_at_load(tmp_path):
    config = tmp_path / "config.toml"
    for regex in ("(a+)+$", "(\\\\w+\\\\s?)*x", "(a|aa)*b"):
        config.write_text(BASE + f'[[tag_rules]]\ntag = "x"\nmatch = "{regex}"\n', encoding="utf-8")
        result = CliRunner().invoke(cli, ["--config", str(config), "articles"])
        assert result.exit_code == 1 and "tag_rules[0].match:" in result.output, regex
        assert "exponential time" in result.output and len(result.output.strip().splitlines()) == 1
    rules = _rules(tmp_path, '[[tag_rules]]\ntag = "x"\nmatch = "(?>a+)+;|climate (change|summit)"\n')
    assert tags_for("On climate change", "", "", (), (), rules) == ("x",)  # atomic groups never backtrack


def test_rules_read_a_bounded_prefix_of_a_huge_article(tmp_path):
    rules = _rules(tmp_path, '[[tag_rules]]\ntag = "late"\nmatch = ["needle"]\n')
    assert tags_for("Title", "", "<p>needle</p>", (), (), rules) == ("late",)
    assert tags_for("Title", "", "<p>" + "hay " * 1_000_000 + "needle</p>", (), (), rules) == ()
