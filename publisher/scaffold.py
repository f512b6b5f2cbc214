"""`publisher init`: a new publication folder from the bundled sample."""

from __future__ import annotations

import re
import shutil
from datetime import datetime
from pathlib import Path

from publisher.errors import PublisherError
from publisher.resources import sample_dir, templates_dir

_CONFIG = """\
# Your publication. Every key is described in docs/configuration.md of publisher.

[site]
title = "{title}"
url = "http://localhost:8080"
description = "What this publication is about."
language = "en"
# Required before any mail goes out: the law in many countries wants a real postal address in every email.
postal_address = ""
timezone = "UTC"

[database]
url = "sqlite:///publisher.db"

[[sources]]
path = "content"
format = "markdown"

[feeds]
dir = "feeds"
limit = 50

[delivery]
transport = "maildir"   # "smtp" to send through a relay; see [delivery.smtp]
maildir = "outbox"
# A bounce address: each message's envelope sender becomes bounces+<signed token>@ that domain,
# so bounces and complaints name whom they are about. See docs/deliverability.md.
# return_path = "bounces@news.example.org"

[templates]
dir = "templates"

[newsletters.weekly]
title = "{title} weekly"
from = "{title} <newsletter@localhost>"
schedule = "0 8 * * mon"
timezone = "UTC"
min_articles = 1
max_articles = 20
lookback = "7d"

# Reading what comes back (needs delivery.return_path above): an SMTP/LMTP receiver that the
# bounce domain's MX hands mail to, and/or an IMAP mailbox polled by `publisher run`
# (its password in the environment variable PUBLISHER_IMAP_PASSWORD).
# [inbound]
# listen = "127.0.0.1:2526"
# [inbound.imap]
# host = "imap.example.org"
# username = "bounces@news.example.org"
"""


_DATE_LINE = re.compile(r"^date: .*$", re.MULTILINE)


def scaffold(directory: Path, *, now: datetime, force: bool = False) -> list[Path]:
    """Write config.toml, content/ with a sample article dated `now` (so the first digest has
    something new in it), and templates/; return what was written."""
    config = directory / "config.toml"
    if config.exists() and not force:
        raise PublisherError(f"{config} already exists (use --force to overwrite)")
    directory.mkdir(parents=True, exist_ok=True)
    title = directory.resolve().name.replace("-", " ").replace("_", " ").title() or "My publication"
    config.write_text(_CONFIG.format(title=title.replace('"', "")), encoding="utf-8")
    written = [config]
    sample = sample_dir() / "content" / "welcome.md"
    (directory / "content").mkdir(exist_ok=True)
    target = directory / "content" / sample.name
    if force or not target.exists():
        text = _DATE_LINE.sub(f"date: {now.replace(microsecond=0).isoformat()}", sample.read_text(encoding="utf-8"), 1)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    templates = directory / "templates"
    shutil.copytree(templates_dir(), templates, dirs_exist_ok=True)
    written.append(templates)
    return written
