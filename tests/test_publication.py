"""`Publication`, the library object: what a script (or the CLI) gets when it calls it."""

from datetime import UTC, datetime

import pytest

from publisher import Publication
from publisher.clock import fixed
from publisher.errors import DeliveryError
from publisher.model import IssueState
from publisher.transports import MemoryTransport
from tests.helpers import three_articles_and_readers

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def _publication(make_settings, store, **site) -> tuple[Publication, MemoryTransport]:
    settings = make_settings({"site": site, "newsletters": {"weekly": {"lookback": "30d"}}}, database_url=store.url)
    three_articles_and_readers(store, settings, NOW, readers=4)
    sent = MemoryTransport()
    return Publication(settings, store, clock=fixed(NOW), transport=sent), sent


def test_send_builds_sends_and_reports_the_contract(make_settings, store):
    publication, sent = _publication(make_settings, store)
    outcome = publication.send("weekly")
    assert outcome.status == "sent" and outcome.issue is not None
    assert outcome.as_json() | {"articles": 3, "recipients": 4, "delivered": 4} == outcome.as_json()
    assert sorted(m.recipient for m in sent.sent) == [f"r{i}@example.org" for i in range(4)]
    assert publication.issues("weekly")[0].state == IssueState.SENT
    assert publication.send("weekly").status == "skipped"  # nothing new: nothing sent twice


def test_no_mail_goes_out_without_a_postal_address(make_settings, store):
    publication, sent = _publication(make_settings, store, postal_address="")
    with pytest.raises(DeliveryError, match=r"site\.postal_address is empty"):
        publication.send("weekly")
    assert sent.sent == []
    assert [issue.state for issue in publication.issues("weekly")] == [IssueState.APPROVED]  # kept for later
