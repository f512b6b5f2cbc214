"""Moving a publication from SQLite to PostgreSQL keeps every article and subscriber."""

from click.testing import CliRunner

from publisher.cli import cli


def test_db_copy_from_sqlite_to_postgresql(tmp_path, postgres_url, captures):
    config = tmp_path / "config.toml"
    config.write_text('[site]\nurl = "https://news.example.org"\n[newsletters.weekly]\n', encoding="utf-8")
    runner = CliRunner()
    base = ["--config", str(config)]
    early = captures.early
    runner.invoke(cli, [*base, "import", str(early.path), "--as-of", early.as_of.isoformat()], catch_exceptions=False)
    runner.invoke(cli, [*base, "subscribers", "add", "ann@example.org", "--confirmed"], catch_exceptions=False)
    before = runner.invoke(cli, [*base, "articles", "--json"]).output
    copied = runner.invoke(cli, [*base, "db", "copy", postgres_url], catch_exceptions=False)
    assert copied.exit_code == 0 and f"articles         {early.count} rows" in copied.output
    moved = ["--config", str(config)]
    env = {"PUBLISHER_DATABASE_URL": postgres_url}
    assert runner.invoke(cli, [*moved, "articles", "--json"], env=env).output == before
    listed = runner.invoke(cli, [*moved, "subscribers", "list"], env=env).output
    assert "ann@example.org" in listed
    # New rows get fresh ids after the copy (sequences were moved past the copied ids).
    added = runner.invoke(cli, [*moved, "subscribers", "add", "bo@example.org"], env=env)
    assert added.exit_code == 0
    again = runner.invoke(cli, [*base, "db", "copy", postgres_url])
    assert again.exit_code == 1 and "already has rows" in again.stderr
