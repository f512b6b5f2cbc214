"""Loading config.toml: defaults, validation errors that name the key, the environment."""

import multiprocessing
import os
import re
import secrets
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from publisher.cli import cli
from publisher.config import _create_key_file, check_web_secrets, load_settings
from publisher.errors import ConfigError
from tests.helpers import REPO


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_bundled_example_config_loads():
    settings = load_settings(REPO / "config.toml")
    weekly = settings.newsletter("weekly")
    assert weekly.lookback == timedelta(days=30)
    assert settings.site.url == "http://localhost:8080"
    assert settings.sources[0].format == "markdown"
    assert settings.feeds.dir == REPO / "feeds"


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    settings = load_settings(_write(tmp_path, '[feeds]\ndir = "out/feeds"\n'))
    assert settings.feeds.dir == tmp_path / "out" / "feeds"
    assert settings.database.url == f"sqlite:///{tmp_path / 'publisher.db'}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[site]\ntitel = "x"\n', r"config\.toml: unknown key site\.titel; known keys: title"),
        ('[feeds]\nlimit = "ten"\n', r"config\.toml: feeds\.limit: expected an integer, got 'ten'"),
        ("[feeds]\nlimit = 0\n", r"feeds\.limit must be at least 1"),
        ('[delivery]\ntransport = "pigeon"\n', r"delivery\.transport must be one of smtp, maildir"),
        (
            '[delivery.smtp]\npassword = "hunter2"\n',
            r"unknown key delivery\.smtp\.password \(secrets come from the environment\)",
        ),
        ('[newsletters.weekly]\nlookback = "soon"\n', r"newsletters\.weekly\.lookback: expected a duration"),
        ('[newsletters.weekly]\ntimezone = "Mars/Base"\n', r"newsletters\.weekly\.timezone: unknown time zone"),
        ('[[sources]]\nformat = "textpage"\n', r"\[sources\[0\]\] is missing required key path"),
        ("[colour]\nx = 1\n", r"unknown section \[colour\]"),
        ('[site]\nurl = "news.example.org"\n', r"site\.url must be an absolute http\(s\) URL"),
        ("[site\n", r"config\.toml: invalid TOML"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(_write(tmp_path, text))


@pytest.mark.parametrize(
    "text",
    [
        '[inbound]\nsoft_bounce_half_life = "1000000000d"\n',
        '[inbound]\nsoft_bounce_half_life = "36501d"\n',
        "[inbound]\nsoft_bounce_half_life = 100000000000000\n",
        '[newsletters.weekly]\nlookback = "99999999999999999999w"\n',
    ],
)
def test_a_duration_too_long_is_a_one_line_error_naming_the_key(tmp_path, text):
    """It was an OverflowError traceback from every command."""
    from click.testing import CliRunner

    from publisher.cli import cli

    config = _write(tmp_path, '[site]\npostal_address = "1 Sample Street, Exampletown"\n' + text)
    result = CliRunner().invoke(cli, ["--config", str(config), "subscribers", "list"])
    assert result.exit_code == 1, result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    key = "inbound.soft_bounce_half_life" if "inbound" in text else "newsletters.weekly.lookback"
    assert f"{key} must be at most 100 years (36500d)" in result.output


def test_a_duration_of_a_hundred_years_is_taken(tmp_path):
    settings = load_settings(_write(tmp_path, '[inbound]\nsoft_bounce_half_life = "36500d"\n'))
    assert settings.inbound.soft_bounce_half_life.days == 36500


def test_missing_config_file_suggests_init(tmp_path):
    with pytest.raises(ConfigError, match=r"no such config file \(create one with `publisher init`\)"):
        load_settings(tmp_path / "nope.toml")


NEW_KEY = "new-key-2c6a9e1f5d3b7a0c8e4f2d6b1a9c5e73"
OLD_KEY = "old-key-8d1e5b7f3a9c2e6d0b4f8a1c7e3d5b92"


def test_environment_overrides_and_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("PUBLISHER_DATABASE_URL", "postgresql+psycopg://db/x")
    monkeypatch.setenv("PUBLISHER_SMTP_PASSWORD", "s3cret")
    monkeypatch.setenv("PUBLISHER_SMTP_PORT", "2525")
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", f"{NEW_KEY}, {OLD_KEY}")
    settings = load_settings(_write(tmp_path, ""))
    assert settings.database.url == "postgresql+psycopg://db/x"
    assert settings.delivery.smtp.password == "s3cret" and settings.delivery.smtp.port == 2525
    assert settings.secret_keys == (NEW_KEY, OLD_KEY)
    assert "s3cret" not in repr(settings)


def test_a_key_file_is_generated_once_when_no_key_is_in_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("PUBLISHER_SECRET_KEY", raising=False)
    first = load_settings(_write(tmp_path, "")).secret_keys
    again = load_settings(tmp_path / "config.toml").secret_keys
    key_file = tmp_path / ".publisher-secret"
    assert first == again and len(first[0]) >= 32
    assert key_file.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    "weak",
    [
        "a",
        "x" * 64,
        "abababababababababababababababababab",
        f"{NEW_KEY}, short",
        "passwordpasswordpasswordpassword1234",
        "0123456789abcdef0123456789abcdef",
    ],
)
def test_a_weak_secret_key_is_refused(tmp_path, monkeypatch, weak):
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", weak)
    with pytest.raises(ConfigError, match=r"^PUBLISHER_SECRET_KEY: a secret key must be at least 32 random characters"):
        load_settings(_write(tmp_path, ""))


def test_generated_keys_are_accepted(tmp_path, monkeypatch):
    for key in [*(secrets.token_urlsafe(32) for _ in range(200)), *(secrets.token_hex(16) for _ in range(200))]:
        monkeypatch.setenv("PUBLISHER_SECRET_KEY", key)
        assert load_settings(_write(tmp_path, "")).secret_keys == (key,)


def test_a_secret_key_of_only_commas_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", ", ,")
    with pytest.raises(ConfigError, match=r"^PUBLISHER_SECRET_KEY holds no key"):
        load_settings(_write(tmp_path, ""))


def test_imap_without_encryption_is_refused_except_to_loopback(tmp_path):
    imap = '[delivery]\nreturn_path = "bounces@example.org"\n'
    imap += '[inbound.imap]\nhost = "{}"\nusername = "bounces"\nsecurity = "none"\n'
    with pytest.raises(ConfigError, match=r'inbound\.imap\.security = "none" .* not \'imap\.example\.org\''):
        load_settings(_write(tmp_path, imap.format("imap.example.org")))
    for host in ("127.0.0.1", "localhost", "::1"):
        assert load_settings(_write(tmp_path, imap.format(host))).inbound.imap.host == host


def test_a_weak_key_in_the_key_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("PUBLISHER_SECRET_KEY", raising=False)
    (tmp_path / ".publisher-secret").write_text("secret\n")
    with pytest.raises(ConfigError, match=r"\.publisher-secret: a secret key must be at least 32"):
        load_settings(_write(tmp_path, ""))


def test_a_key_file_written_meanwhile_by_another_process_is_kept(tmp_path):
    key_file = tmp_path / ".publisher-secret"
    key_file.write_text(f"{NEW_KEY}\n")
    os.chmod(key_file, 0o600)
    _create_key_file(key_file)  # lost the race: another process created the file after our check
    assert key_file.read_text() == f"{NEW_KEY}\n"
    assert [p.name for p in tmp_path.iterdir()] == [".publisher-secret"]


def _load_keys(config: str, barrier) -> tuple[str, ...]:
    barrier.wait()
    return load_settings(config).secret_keys


def test_processes_starting_together_share_one_generated_key(tmp_path, monkeypatch):
    monkeypatch.delenv("PUBLISHER_SECRET_KEY", raising=False)
    config = str(_write(tmp_path, ""))
    context = multiprocessing.get_context("fork")
    barrier = context.Manager().Barrier(6)
    with context.Pool(6) as pool:
        keys = pool.starmap(_load_keys, [(config, barrier)] * 6)
    assert len(set(keys)) == 1 and len(keys[0]) == 1
    assert (tmp_path / ".publisher-secret").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[web]\nport = 99999\n", r"web\.port must be a port number from 1 to 65535, got 99999"),
        ('[scheduler]\nfeeds_interval = "0s"\n', r"scheduler\.feeds_interval must be at least 1s"),
        ("[delivery]\nbatch_size = 0\n", r"delivery\.batch_size must be at least 1"),
    ],
)
def test_values_that_make_no_sense_are_refused(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(_write(tmp_path, text))


def test_retry_max_shorter_than_retry_first_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"delivery\.retry_max \(0:01:00\) is shorter than delivery\.retry_first"):
        load_settings(_write(tmp_path, '[delivery]\nretry_first = "5m"\nretry_max = "1m"\n'))


def test_a_public_http_site_url_is_warned_about_but_loopback_is_not(tmp_path):
    from publisher.config import settings_warnings

    public = load_settings(_write(tmp_path, '[site]\nurl = "http://news.example.org"\n'))
    assert "unsubscribe links in mail should be https" in settings_warnings(public)[0]
    assert settings_warnings(load_settings(_write(tmp_path, '[site]\nurl = "https://news.example.org"\n'))) == []
    assert settings_warnings(load_settings(_write(tmp_path, '[site]\nurl = "http://127.0.0.1:8080"\n'))) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[delivery]\nreturn_path = "bounces+x@example.org"\n', r"delivery\.return_path must be an address like"),
        ('[delivery]\nreturn_path = "bounces"\n', r"delivery\.return_path must be an address like"),
        ('[inbound]\nlisten = "2526"\n', r'inbound\.listen must be HOST:PORT such as "127\.0\.0\.1:2526"'),
        ('[inbound]\nprotocol = "pop3"\n', r"inbound\.protocol must be one of smtp, lmtp"),
        ('[inbound.imap]\nhost = "imap.example.org"\n', r"inbound\.imap\.username is required"),
        ('[inbound.imap]\nsecurity = "ssl"\n', r"inbound\.imap\.security must be one of tls, starttls, none"),
        (
            '[inbound.imap]\npassword = "x"\n',
            r"unknown key inbound\.imap\.password \(secrets come from the environment\)",
        ),
        ('[webhooks.mailgun]\nsigning_key = "x"\n', r"unknown key webhooks\.mailgun\.signing_key \(secrets come"),
        ('[webhooks.postmark]\nusername = "hook"\n', r"webhooks\.postmark needs both username and password_env"),
        (
            '[webhooks.ses]\nsigning_cert_url_pattern = "("\n',
            r"webhooks\.ses\.signing_cert_url_pattern is not a regular",
        ),
    ],
)
def test_inbound_and_webhook_settings_are_checked(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(_write(tmp_path, text))


RETURN_PATH = '[delivery]\nreturn_path = "bounces@news.example.org"\n'
IMAP = '[inbound.imap]\nhost = "imap.example.org"\nusername = "bounces"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[inbound]\nlisten = "127.0.0.1:2526"\n', r"inbound\.listen is set but delivery\.return_path is not"),
        (IMAP, r"inbound\.imap\.host is set but delivery\.return_path is not"),
        (RETURN_PATH + '[inbound]\nsoft_bounce_half_life = "0s"\n', r"soft_bounce_half_life must be greater than 0"),
        ("[delivery]\nsoft_bounce_limit = 0\n", r"delivery\.soft_bounce_limit must be at least 1"),
        (RETURN_PATH + IMAP + "port = 70000\n", r"inbound\.imap\.port must be a port number from 1 to 65535"),
        (RETURN_PATH + IMAP + "port = 0\n", r"inbound\.imap\.port must be a port number from 1 to 65535"),
    ],
)
def test_intake_settings_that_could_never_work_are_refused_at_load(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(_write(tmp_path, text))


def test_intake_with_a_return_path_loads(tmp_path):
    settings = load_settings(_write(tmp_path, RETURN_PATH + '[inbound]\nlisten = "127.0.0.1:2526"\n' + IMAP))
    assert settings.inbound.listen == "127.0.0.1:2526" and settings.inbound.imap.port == 993


def test_a_mailgun_signing_key_too_short_to_be_one_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HOOK_KEY", "k")
    config = _write(tmp_path, '[webhooks.mailgun]\nsigning_key_env = "HOOK_KEY"\n')
    with pytest.raises(ConfigError, match=r"webhooks\.mailgun\.signing_key_env: the key in HOOK_KEY is too short"):
        load_settings(config)
    monkeypatch.setenv("HOOK_KEY", "4f1c9e7a2b5d8c3e6a0f9b1d7e4c2a58")
    assert load_settings(config).webhooks.mailgun.signing_key == "4f1c9e7a2b5d8c3e6a0f9b1d7e4c2a58"


@pytest.mark.parametrize("password", [None, ""])
def test_a_missing_or_empty_imap_password_is_reported_before_connecting(tmp_path, monkeypatch, password):
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", "config-test-4c1e9a7b2d8f3e6051a9c7d4b2e8f1a3")
    if password is None:
        monkeypatch.delenv("PUBLISHER_IMAP_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("PUBLISHER_IMAP_PASSWORD", password)
    # A host nothing answers on: reaching the login would be a connection error, not this one.
    imap = IMAP.replace("imap.example.org", "127.0.0.1").replace('bounces"\n', 'bounces"\nport = 9\n')
    config = _write(tmp_path, f'[database]\nurl = "sqlite:///{tmp_path}/p.db"\n' + RETURN_PATH + imap)
    result = CliRunner().invoke(cli, ["--config", str(config), "inbound", "poll"])
    assert result.exit_code == 1
    assert "PUBLISHER_IMAP_PASSWORD is not set or is empty" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[metrics]\ntoken_env = "NOT_SET_ANYWHERE_42"\n', "metrics.token_env"),
        ('[webhooks.mailgun]\nsigning_key_env = "NOT_SET_ANYWHERE_42"\n', "webhooks.mailgun.signing_key_env"),
    ],
)
def test_a_web_only_secret_is_needed_by_the_web_app_not_by_the_cli(tmp_path, monkeypatch, text, key):
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", "config-test-4c1e9a7b2d8f3e6051a9c7d4b2e8f1a3")
    config = _write(tmp_path, f'[database]\nurl = "sqlite:///{tmp_path}/p.db"\n{text}')
    added = CliRunner().invoke(
        cli,
        ["--config", str(config), "admin", "add-user", "ada@example.org", "--password-stdin"],
        input="correct horse battery staple\n",
    )
    assert added.exit_code == 0, added.output  # a CLI command that serves no web page runs without it
    with pytest.raises(ConfigError, match=rf"{re.escape(key)} names the environment variable NOT_SET_ANYWHERE_42"):
        check_web_secrets(load_settings(config))  # what the web app does when it starts


def test_inbound_secrets_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PUBLISHER_IMAP_PASSWORD", "imap-secret")
    monkeypatch.setenv("HOOK_KEY", "mailgun-secret-7f3a9c1e5b2d")
    settings = load_settings(
        _write(
            tmp_path,
            '[delivery]\nreturn_path = "bounces@example.org"\n'
            '[inbound.imap]\nhost = "imap.example.org"\nusername = "bounces"\n'
            '[webhooks.mailgun]\nsigning_key_env = "HOOK_KEY"\n',
        )
    )
    assert (
        settings.inbound.imap.password == "imap-secret"
        and settings.webhooks.mailgun.signing_key == "mailgun-secret-7f3a9c1e5b2d"
    )
    assert "imap-secret" not in repr(settings) and "mailgun-secret" not in repr(settings)


TOPICS = """
[[topics]]
name = "politics"
label = "Politics"
tags = ["politics", "elections"]

[[topics]]
name = "sport"
tags = ["sport"]
"""


def test_topics_map_names_to_tags_and_label_defaults_to_the_name(tmp_path):
    settings = load_settings(
        _write(tmp_path, TOPICS + '\n[newsletters.weekly]\nsections = "topics"\ndeliver = "local"\n')
    )
    assert [(t.name, t.label, t.tags) for t in settings.topics] == [
        ("politics", "Politics", ("politics", "elections")),
        ("sport", "sport", ("sport",)),
    ]
    weekly = settings.newsletter("weekly")
    assert weekly.by_topic and weekly.sections == () and weekly.local


def test_the_old_web_topics_still_load_with_a_deprecation_warning(tmp_path):
    from click.testing import CliRunner

    from publisher.cli import cli

    path = _write(tmp_path, '[web]\ntopics = ["politics", "sport"]\n')
    assert [(t.name, t.tags) for t in load_settings(path).topics] == [
        ("politics", ("politics",)),
        ("sport", ("sport",)),
    ]
    result = CliRunner().invoke(cli, ["--config", str(path), "articles"])
    assert result.exit_code == 0 and "web.topics is deprecated: write [[topics]] tables" in result.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[topics]]\nname = "x"\n', r"topics\[0\]\.tags must name at least one article tag"),
        ('[[topics]]\nname = "x"\ntags = ["a"]\n[[topics]]\nname = "x"\ntags = ["b"]\n', "'x' is used twice"),
        ('[web]\ntopics = ["a"]\n' + TOPICS, "web.topics and \\[\\[topics\\]\\] are both set"),
        (
            '[newsletters.weekly]\ndeliver = "reader"\n',
            r"newsletters\.weekly\.deliver must be one of newsletter, local",
        ),
        ('[[tag_rules]]\ntag = "x"\nmatch = []\n', r"tag_rules\[0\]\.match: expected a list of words or a regular"),
        ('[[sources]]\npath = "a"\ntags = "x"\n', r"sources\[0\]\.tags: expected a list of strings"),
        ('[newsletters.weekly]\nsections = "topic"\n', r'newsletters\.weekly\.sections: "topics" \(a section per'),
        ('[newsletters.weekly]\nsections = "topics"\n', r'sections = "topics" needs \[\[topics\]\] tables'),
    ],
)
def test_topic_and_tag_mistakes_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(_write(tmp_path, text))


def test_a_time_zone_that_is_no_place_is_refused_at_load(tmp_path):
    from publisher.config import settings_from_dict

    base = {"site": {"url": "https://news.example.org", "postal_address": "1 Example Road, Testville"}}
    for zone in ("America", "Etc", "A" * 100_000, "localtime", "Factory", "posix/UTC", "right/UTC"):
        with pytest.raises(ConfigError, match=r"site\.timezone: unknown time zone"):
            settings_from_dict({"site": {**base["site"], "timezone": zone}}, tmp_path / "config.toml")
        with pytest.raises(ConfigError, match=r"newsletters\.weekly\.timezone: unknown time zone"):
            settings_from_dict({**base, "newsletters": {"weekly": {"timezone": zone}}}, tmp_path / "config.toml")


def test_the_init_config_shows_the_bounce_settings_commented_out_and_they_load(tmp_path, monkeypatch):
    from datetime import UTC, datetime

    from publisher.scaffold import scaffold

    scaffold(tmp_path / "news", now=datetime(2025, 10, 20, tzinfo=UTC))
    text = (tmp_path / "news" / "config.toml").read_text()
    assert load_settings(tmp_path / "news" / "config.toml").delivery.return_path == ""  # off as written
    assert '# return_path = "bounces@news.example.org"' in text and "# [inbound]" in text
    setting = re.compile(r"^# (\[[a-z.]+\]|[a-z_]+ = .*)$", re.MULTILINE)
    (tmp_path / "news" / "config.toml").write_text(setting.sub(r"\1", text))
    settings = load_settings(tmp_path / "news" / "config.toml")
    assert settings.delivery.return_path == "bounces@news.example.org"
    assert settings.inbound.listen == "127.0.0.1:2526" and settings.inbound.imap.host == "imap.example.org"
