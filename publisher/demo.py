"""`publisher demo`: the whole pipeline on the bundled sample publication, in one folder.

Import the sample articles, build the feeds, add sample subscribers, preview the weekly digest,
send its first issue into a local maildir outbox, and write the web archive: everything a
newcomer needs to see the product work, with nothing to configure and no mail leaving the machine.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from publisher.clock import fixed
from publisher.config import Settings
from publisher.errors import PublisherError
from publisher.publication import Publication
from publisher.resources import sample_dir

MARKER = ".publisher-demo"
SAMPLE_SUBSCRIBERS = (
    ("ada@example.org", "Ada Lovelace"),
    ("grace@example.org", "Grace Hopper"),
    ("tim@example.org", "Tim Berners-Lee"),
)
_CONFIG = """\
# Written by `publisher demo`. Every key is described in docs/configuration.md.
[site]
title = "The publisher sample"
url = "http://127.0.0.1:{port}"
description = "Notes on building a newsletter and feed publisher."
postal_address = "1 Sample Street, Exampletown, EX1 2MP"

[[sources]]
path = "{content}"
format = "markdown"

[delivery]
transport = "maildir"
maildir = "outbox"

[newsletters.weekly]
title = "The publisher weekly"
from = "The publisher sample <newsletter@127.0.0.1>"
schedule = "0 8 * * mon"
lookback = "3650d"

[web]
port = {port}
"""


@dataclass
class DemoReport:
    folder: Path
    settings: Settings
    steps: list[str] = field(default_factory=list)


def prepare_folder(folder: Path) -> None:
    """Start from an empty folder; only a folder an earlier demo made is ever cleared."""
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARKER).exists():
            raise PublisherError(f"{folder} exists and was not made by `publisher demo`; choose another --dir")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("made by publisher demo; safe to delete\n")


def run_demo(folder: Path, now: datetime, *, port: int = 8080) -> DemoReport:
    prepare_folder(folder)
    config = folder / "config.toml"
    content = (sample_dir() / "content").resolve()
    config.write_text(_CONFIG.format(content=content.as_posix(), port=port), encoding="utf-8")
    with Publication.open(config, clock=fixed(now)) as publication:
        report = DemoReport(folder, publication.settings)
        _pipeline(publication, report)
    return report


def _pipeline(publication: Publication, report: DemoReport) -> None:
    steps, settings = report.steps, publication.settings
    (imported,) = publication.import_sources().reports
    added = len(imported.added)
    steps.append(f"imported {added} article{'' if added == 1 else 's'} from {imported.source}")
    feeds = publication.build_feeds()
    steps.append(f"built {len(feeds.files)} feed files (RSS, Atom, JSON Feed; site and per tag)")
    for email, name in SAMPLE_SUBSCRIBERS:
        publication.add_subscriber(email, name=name, newsletters=("weekly",), confirmed=True)
    steps.append(f"added {len(SAMPLE_SUBSCRIBERS)} confirmed sample subscribers")
    preview = publication.preview("weekly", settings.base_dir / "preview")
    steps.append(f"previewed the weekly digest: {preview.files.get('html') or preview.note}")
    outcome = publication.send("weekly")
    if outcome.issue is None or outcome.report is None:
        steps.append(f"weekly: {outcome.reason}")
        return
    issue, sent = outcome.issue, outcome.report
    summary = f"{sent.get('delivered')} delivered, {sent.get('failed')} failed, {sent.get('deferred')} deferred"
    count = len(issue.article_ids)
    steps.append(f"sent issue {issue.number} ({count} article{'' if count == 1 else 's'}): {summary}")
    steps.append(f"  subject: {issue.subject}")
