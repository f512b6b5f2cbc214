"""/metrics: Prometheus's text format, read from the store, so work done by other processes shows."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from sink import SinkHandler, free_port, smtp_sink

from publisher import verp
from publisher.cli import cli
from publisher.publication import Publication
from publisher.store import Store
from publisher.web import ServerThread, create_app, make_metrics_server, make_server
from tests.helpers import CORPUS, SAMPLE_TOKEN

with warnings.catch_warnings():
    # Starlette asks for httpx2 in its test client; httpx is what the project uses.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from starlette.testclient import TestClient

KEY = "metrics-test-5d2f8a61c9e4b7031f6a8d2c4e9b1a77"
METRICS_TOKEN = "scrape-9f3c7a15e2d84b6c0a1f"


def run(config: Path, *args: str):
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


@pytest.fixture
def config(tmp_path, database_url, monkeypatch) -> Path:
    monkeypatch.setenv("PUBLISHER_SECRET_KEY", KEY)
    monkeypatch.setenv("PUBLISHER_METRICS_TOKEN", METRICS_TOKEN)
    path = tmp_path / "config.toml"
    path.write_text(
        '[site]\nurl = "https://news.example.org"\npostal_address = "1 Example Road, Testville"\n'
        f'[database]\nurl = "{database_url}"\n[newsletters.weekly]\nlookback = "3650d"\n'
        '[delivery]\nreturn_path = "bounces@news.example.org"\n'
        '[metrics]\ntoken_env = "PUBLISHER_METRICS_TOKEN"\n',
        encoding="utf-8",
    )
    return path


def scrape(client) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, parsed by prometheus-client's own parser: (name, labels) -> value."""
    answer = client.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def test_counters_move_when_another_process_sends_an_issue_and_takes_in_a_bounce(config, our_captures):
    assert run(config, "import", str(our_captures.late.path), "--as-of", datetime.now(UTC).isoformat()).exit_code == 0
    for n in range(3):
        assert run(config, "subscribers", "add", f"r{n}@d{n}.example", "--confirmed").exit_code == 0
    with Publication.open(config) as web, TestClient(create_app(web)) as client:
        before = scrape(client)
        assert before[("publisher_store_up", ())] == 1
        assert before[("publisher_subscribers", (("status", "confirmed"),))] == 3
        for zero in (  # every documented series is there before anything happened, at 0
            ("publisher_delivered_total", (("newsletter", "weekly"),)),
            ("publisher_delivery_failures_total", (("newsletter", "weekly"),)),
            ("publisher_inbound_messages_total", (("kind", "bounce"),)),
            ("publisher_inbound_messages_total", (("kind", "complaint"),)),
            ("publisher_suppressed", (("reason", "hard_bounce"),)),
            ("publisher_suppressed", (("reason", "complaint"),)),
        ):
            assert before[zero] == 0, zero
        assert before[("publisher_bounces_total", (("type", "hard"),))] == 0
        assert before[("publisher_run_duration_seconds_count", (("kind", "import"), ("name", "")))] == 1
        assert before[("publisher_run_duration_seconds_count", (("kind", "feeds"), ("name", "")))] >= 1

        handler = SinkHandler()
        with smtp_sink(handler) as port:  # `digest send` is another Publication, as in another process
            text = config.read_text().replace("[delivery]\n", '[delivery]\ntransport = "smtp"\n', 1)
            config.write_text(f'{text}[delivery.smtp]\nhost = "127.0.0.1"\nport = {port}\n')
            sent = json.loads(run(config, "digest", "send", "weekly", "--json").output)
        assert sent["delivered"] == 3 and len(handler.received()) == 3
        after_send = scrape(client)
        assert after_send[("publisher_delivered_total", (("newsletter", "weekly"),))] == 3
        assert after_send[("publisher_issues", (("newsletter", "weekly"), ("state", "sent")))] == 1
        assert after_send[("publisher_ledger_backlog", ())] == 0
        assert after_send[("publisher_send_rate_per_second", ())] > 0

        store = Store.open(web.settings.database.url)
        try:
            issue = store.issues.list("weekly")[0]
            reader = store.subscribers.get("r0@d0.example").id
        finally:
            store.close()
        token = verp.make_token((KEY,), issue.id, reader)
        bounce = config.parent / "bounce.eml"
        bounce.write_bytes((CORPUS / "gmail-dsn.eml").read_bytes().replace(SAMPLE_TOKEN.encode(), token.encode()))
        assert run(config, "inbound", "import", str(bounce)).exit_code == 0
        after_bounce = scrape(client)
        assert after_bounce[("publisher_bounces_total", (("type", "hard"),))] == 1
        assert after_bounce[("publisher_inbound_messages_total", (("kind", "bounce"),))] == 1
        assert after_bounce[("publisher_suppressed", (("reason", "hard_bounce"),))] == 1
        assert after_bounce[("publisher_subscribers", (("status", "bounced"),))] == 1
        requests = ("publisher_http_requests_total", (("method", "GET"), ("route", "/metrics"), ("status", "200")))
        assert after_bounce[requests] == 2  # the two scrapes before this one, counted by their route


def test_metrics_need_the_token_or_the_separate_address(config, monkeypatch):
    with Publication.open(config) as publication, TestClient(create_app(publication)) as client:
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"authorization": "Bearer " + METRICS_TOKEN[:-1] + "x"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Bearer")
        assert "publisher_" not in wrong.text

    listen = free_port()
    config.write_text(
        config.read_text().replace('token_env = "PUBLISHER_METRICS_TOKEN"', f'listen = "127.0.0.1:{listen}"')
    )
    with Publication.open(config) as publication:
        server = make_server(publication, port=free_port(), log_level="warning")
        with TestClient(server.config.app) as client:
            assert client.get("/metrics").status_code == 404  # not on the public address without a token
        metrics_server = make_metrics_server(server)
        assert metrics_server is not None
        thread = ServerThread(metrics_server, "metrics")
        try:
            for _ in range(100):
                if metrics_server.started:
                    break
                thread.thread.join(0.05)
            answer = httpx.get(f"http://127.0.0.1:{listen}/metrics", timeout=10)
        finally:
            thread.stop()
    assert answer.status_code == 200
    names = {family.name for family in text_string_to_metric_families(answer.text)}
    assert {"publisher_issues", "publisher_deliveries", "publisher_ledger_backlog", "publisher_http_requests"} <= names


def test_an_unknown_method_or_path_adds_no_series_of_its_own(config):
    with Publication.open(config) as publication, TestClient(create_app(publication)) as client:
        for n in range(30):
            client.request(f"X-CUSTOM-{n}", "/")
            client.get(f"/admin/no-such-page-{n}")
            client.get(f"/no-such-page-{n}")
        samples = scrape(client)
    requests = {labels for name, labels in samples if name == "publisher_http_requests_total"}
    methods = {dict(labels)["method"] for labels in requests}
    routes = {dict(labels)["route"] for labels in requests}
    assert "other" in methods and not any(method.startswith("X-CUSTOM") for method in methods)
    assert not any("no-such-page" in route for route in routes), routes
    assert len(requests) < 10, requests


def test_a_taken_metrics_port_names_the_setting_to_change():
    import socket

    from publisher.errors import PublisherError
    from publisher.web import check_address

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(PublisherError, match=r"set \[metrics\] listen"):
            check_address("127.0.0.1", port, "[metrics] listen")


def test_a_short_metrics_token_is_refused_in_one_line(config, monkeypatch):
    from publisher.config import load_settings
    from publisher.errors import ConfigError

    monkeypatch.setenv("PUBLISHER_METRICS_TOKEN", "short")
    with pytest.raises(ConfigError, match=r"metrics token in PUBLISHER_METRICS_TOKEN is too short"):
        load_settings(config)
