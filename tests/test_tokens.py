"""Signed links: the links a send puts in every message."""

from itsdangerous import URLSafeSerializer

from publisher import tokens

KEYS = ("newest-key-7c1e9a3f5b2d8e4a6c0f7b3d9a5e1c82", "older-key-2b8d4f6a1c3e5g7i9k0m2o4q6s8u0w1y")


def test_links_signed_during_a_send_are_the_links_itsdangerous_signs_and_open_after_a_key_rotation():
    for subscriber_id in (1, 4_210, 2**31 - 1):
        link = tokens.unsubscribe_url("https://news.example.org", KEYS, subscriber_id, "weekly")
        token = link.rsplit("/", 1)[1]
        # links already in readers' mailboxes were signed by itsdangerous: the same bytes, so they keep working
        assert token == URLSafeSerializer(list(reversed(KEYS)), salt=tokens.UNSUBSCRIBE).dumps(
            [subscriber_id, "weekly"]
        )
        assert tokens.verify(KEYS, tokens.UNSUBSCRIBE, token) == [subscriber_id, "weekly"]
        # a newer key is added: the link still opens
        assert tokens.verify(("brand-new-key-0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c", *KEYS), tokens.UNSUBSCRIBE, token)
        preferences = tokens.preferences_url("https://news.example.org", KEYS, subscriber_id).rsplit("/", 1)[1]
        assert tokens.verify(KEYS, tokens.PREFERENCES, preferences) == subscriber_id
