"""Message assembly: headers a mail client reads, MIME structure, QP bodies filled per recipient, DKIM."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest

from publisher.message import Signer, compile_message, message_id, qp_encode
from publisher.model import RenderedIssue, new_placeholders
from tests.helpers import dkim_key

NOW = datetime(2025, 10, 20, 8, 0, tzinfo=UTC)
URL = "https://news.example.org/unsubscribe/WzEsIndlZWtseSJd.tKf4Sxjfga-jH5PBdE6LI5LLALw"
PLACEHOLDERS = new_placeholders()
NAME, EMAIL, UNSUBSCRIBE, PREFERENCES = (
    PLACEHOLDERS[key] for key in ("name", "email", "unsubscribe_url", "preferences_url")
)
RENDERED = RenderedIssue(
    newsletter="weekly",
    subject="Weekly: the Workers’ Party – “80 years”",
    preheader="",
    html=f'<p>Hello {NAME},</p><p style="color: #333">Read on.</p><a href="{UNSUBSCRIBE}">Unsubscribe</a>',
    text=f"Hello {NAME},\n\nRead on: café ☕\n.a line that starts with a dot\nUnsubscribe: {UNSUBSCRIBE}\n"
    f"Preferences: {PREFERENCES} (for {EMAIL})\n",
    placeholders=PLACEHOLDERS,
)


@pytest.fixture
def settings(make_settings):
    return make_settings(
        {
            "newsletters": {
                "weekly": {
                    "title": "The Weekly",
                    "from": "The Weekly <weekly@news.example.org>",
                    "reply_to": "editor@news.example.org",
                }
            }
        }
    )


def personalised(settings, rendered=RENDERED, signer=None, **values) -> bytes:
    compiled = compile_message(
        rendered, settings=settings, newsletter=settings.newsletter("weekly"), issue_number=7, signer=signer
    )
    fields = {
        "subscriber_id": 42,
        "email": "zoe@example.com",
        "name": "Zoë O’Neil",
        "unsubscribe_url": URL,
        "preferences_url": "https://news.example.org/preferences/abc",
        "date": NOW,
        "message_id": message_id("news.example.org", "weekly", 7, 42),
    } | values
    return compiled.personalise(**fields)


def parse(data: bytes):
    return message_from_bytes(data, policy=policy.default)


def test_headers_a_mail_client_reads(settings):
    message = parse(personalised(settings))
    assert message["From"] == "The Weekly <weekly@news.example.org>"
    assert message["Reply-To"] == "editor@news.example.org"
    assert message["To"] == "Zoë O’Neil <zoe@example.com>"
    assert message["Subject"] == RENDERED.subject
    assert message["Date"] == "Mon, 20 Oct 2025 08:00:00 +0000"
    assert message["Message-ID"] == "<weekly.7.42@news.example.org>"
    assert message["List-Id"] == "The Weekly <weekly.news.example.org>"
    assert message["List-Unsubscribe"] == (f"<{URL}>, <mailto:weekly@news.example.org?subject=unsubscribe%20weekly>")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Feedback-ID"] == "7:weekly:newsletter:news.example.org"
    assert message["MIME-Version"] == "1.0"
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert {part["Content-Transfer-Encoding"] for part in parts} == {"quoted-printable"}


def test_bodies_are_filled_exactly(settings):
    text, html = (part.get_content() for part in parse(personalised(settings)).iter_parts())
    expected = RENDERED.text
    for key, value in {
        "name": "Zoë O’Neil",
        "email": "zoe@example.com",
        "unsubscribe_url": URL,
        "preferences_url": "https://news.example.org/preferences/abc",
    }.items():
        expected = expected.replace(PLACEHOLDERS[key], value)
    assert text.replace("\r\n", "\n") == expected
    assert f'<a href="{URL}">' in html and "Hello Zoë O’Neil," in html


def test_values_are_html_escaped_in_the_html_part(settings):
    html = list(parse(personalised(settings, name='<b>"Bob" & co</b>')).iter_parts())[1].get_content()
    assert "Hello &lt;b&gt;&quot;Bob&quot; &amp; co&lt;/b&gt;," in html


def test_wire_format_crlf_short_lines_no_leading_dots(settings):
    data = personalised(settings, name="." + "ü" * 200)
    assert b"\n" not in data.replace(b"\r\n", b"")
    lines = data.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998
    body = data.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    assert not any(line.startswith(b".") for line in lines)
    assert data.isascii()


def test_header_values_cannot_add_headers(settings):
    rendered = RenderedIssue(
        newsletter="weekly", subject="Hi\r\nBcc: evil@example.com", preheader="", html="<p>x</p>", text="x"
    )
    message = parse(
        personalised(
            settings, rendered, name="Eve\r\nBcc: evil@example.com\x00", email="eve@example.com\r\nCc: x@example.com"
        )
    )
    assert message["Bcc"] is None and message["Cc"] is None
    assert message["Subject"] == "Hi  Bcc: evil@example.com"
    assert "\n" not in message["To"] and "eve@example.com" in message["To"]


def test_placeholders_survive_any_position_and_any_value(settings):
    rng = random.Random(7)
    alphabet = "abc xyz=.é’☕\t-" + "\n"
    for _ in range(150):
        tokens = list(PLACEHOLDERS.values())
        pieces = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120))) for _ in range(4)]
        text = "".join(piece + rng.choice(tokens) for piece in pieces)
        values = {
            "name": "".join(rng.choice(alphabet.strip()) for _ in range(rng.randint(0, 90))),
            "unsubscribe_url": URL + "=" * rng.randint(0, 3),
            "email": "a@b.example",
            "preferences_url": "." + "p" * rng.randint(0, 150),
        }
        rendered = RenderedIssue(
            newsletter="weekly", subject="s", preheader="", html="<p>x</p>", text=text, placeholders=PLACEHOLDERS
        )
        data = personalised(settings, rendered, **values)
        body = data.split(b"\r\n\r\n", 2)[2]
        assert max(len(line) for line in body.split(b"\r\n")) <= 76
        assert not any(line.startswith(b".") for line in data.split(b"\r\n"))
        expected = text
        for key, value in values.items():
            expected = expected.replace(PLACEHOLDERS[key], value)
        got = next(parse(data).iter_parts()).get_content().replace("\r\n", "\n")
        assert got.rstrip("\n") == expected.rstrip("\n")  # the CRLF before the boundary is the boundary's


def test_qp_encodes_trailing_white_space_and_equals():
    assert qp_encode("a = b \nend\t")[0] == "a =3D b=20\r\nend=09"
    assert qp_encode("a = b \nend\t", final=False)[0] == "a =3D b=20\r\nend\t"  # a placeholder follows


def test_message_ids_are_unique_per_recipient(settings):
    compiled = compile_message(RENDERED, settings=settings, newsletter=settings.newsletter("weekly"), issue_number=1)
    ids = {
        parse(compiled.personalise(subscriber_id=i, email=f"r{i}@x.example", unsubscribe_url=URL))["Message-ID"]
        for i in range(50)
    }
    assert len(ids) == 50 and all(i.endswith("@news.example.org>") for i in ids)


def test_dkim_signature_covers_the_list_headers_and_verifies(settings, tmp_path):
    import dkim

    key, record = dkim_key(tmp_path)
    signer = Signer(b"s1", b"news.example.org", key.read_bytes())
    data = personalised(settings, signer=signer)
    assert data.startswith(b"DKIM-Signature:")
    signed = signed_headers(data)
    assert {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "reply-to",
        "content-type",
        "mime-version",
        "list-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
    } <= set(signed)
    assert signed.count("from") == 2  # over-signed: a second From added on the way breaks the signature

    def dns(name, timeout=5):
        return record if name == b"s1._domainkey.news.example.org." else None

    assert dkim.verify(data, dnsfunc=dns)
    rendered = RenderedIssue(
        newsletter="weekly",
        subject="s  with   spaces",
        preheader="",
        html="<p>a  \t b</p>\n\n<p>@@NAME@@</p>",
        text="x  y \n@@NAME@@  z\n\n",
    )
    for name in ("Two  Spaces", "   ", "Zoë\t\tTabs ", "." * 200):
        assert dkim.verify(personalised(settings, rendered, signer=signer, name=name), dnsfunc=dns), name
    tampered = data.replace(b"Hello", b"Hallo", 1)
    assert not dkim.verify(tampered, dnsfunc=dns)
    head, _, body = data.partition(b"\r\n\r\n")
    for added in (b"From: Bank <security@bank.example>", b"Reply-To: thief@example.net"):
        assert not dkim.verify(head + b"\r\n" + added + b"\r\n\r\n" + body, dnsfunc=dns), added


def signed_headers(data: bytes) -> list[str]:
    """The header names a message's DKIM-Signature lists in h=, lower-cased, in order."""
    signature = parse(data)["DKIM-Signature"]
    return [h.strip().lower() for h in re.search(r"h=([^;]+)", signature)[1].split(":")]


def test_no_name_makes_a_header_line_longer_than_smtp_allows(settings):
    for name in ("x" * 1200, "Zoë " * 300):
        data = personalised(settings, name=name)
        assert max(len(line) for line in data.split(b"\r\n")) <= 998
        assert parse(data)["To"].addresses[0].addr_spec == "zoe@example.com"


def test_a_reply_to_with_a_non_ascii_name_keeps_its_address_readable(make_settings):
    settings = make_settings({"newsletters": {"weekly": {"reply_to": "Zoë Editor <zoe@news.example.org>"}}})
    message = parse(personalised(settings))
    assert message["Reply-To"].addresses[0].addr_spec == "zoe@news.example.org"
    assert message["Reply-To"].addresses[0].display_name == "Zoë Editor"


def test_sign_up_mails_are_built_and_dkim_signed_like_issues(make_settings, tmp_path):
    """The confirmation mail goes through publisher.message: CRLF, QP, and a DKIM signature that verifies."""
    import dkim

    from publisher.signup import Mailer
    from publisher.transports import MemoryTransport

    key, record = dkim_key(tmp_path)
    settings = make_settings(
        {
            "newsletters": {"weekly": {"title": "The Weekly", "from": "The Weekly <weekly@news.example.org>"}},
            "delivery": {"dkim": {"selector": "s1", "domain": "news.example.org", "key_file": str(key)}},
        }
    )
    sent = MemoryTransport()
    mailer = Mailer(settings, sent)
    result = mailer.send(
        "confirm",
        "zoë@example.com",
        ["weekly"],
        subscriber_id=7,
        now=NOW,
        confirm_url="https://news.example.org/confirm/x",
        expiry="7 days",
        titles=["The Weekly"],
    )
    assert result.outcome == "delivered"
    data = sent.sent[0].data
    assert data.startswith(b"DKIM-Signature:") and b"\n" not in data.replace(b"\r\n", b"")
    assert dkim.verify(data, dnsfunc=lambda name, timeout=5: record)
    signed = signed_headers(data)
    assert {"to", "subject", "date", "message-id", "content-type", "mime-version"} <= set(signed)
    assert signed.count("from") == 2
    message = parse(data)
    assert message["Auto-Submitted"] == "auto-generated" and message["From"] == "The Weekly <weekly@news.example.org>"
    assert "https://news.example.org/confirm/x" in message.get_content()
