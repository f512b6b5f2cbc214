"""Mail that came back, read from files: single .eml files, mbox files and maildirs.

Reading is idempotent (each message is recorded once, by its digest), so a maildir can be
imported again after more mail arrived; the files are left as they are.
"""

from __future__ import annotations

import mailbox
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from publisher.config import Settings
from publisher.errors import PublisherError
from publisher.feedback import receive
from publisher.store import Store


@dataclass
class ImportReport:
    kinds: Counter = field(default_factory=Counter)
    duplicates: int = 0
    lines: list[str] = field(default_factory=list)  # one per message: where, kind, action

    @property
    def total(self) -> int:
        return sum(self.kinds.values()) + self.duplicates


def messages(path: Path) -> Iterator[tuple[str, bytes]]:
    """(where, raw bytes) for each message under `path`: a maildir, a folder of .eml files, an mbox or one file."""
    if path.is_dir():
        if any((path / sub).is_dir() for sub in ("cur", "new")):
            for sub in ("new", "cur"):
                for item in sorted((path / sub).glob("*")) if (path / sub).is_dir() else []:
                    if item.is_file() and not item.name.startswith("."):
                        yield str(item), item.read_bytes()
            return
        for item in sorted(path.rglob("*.eml")):
            yield str(item), item.read_bytes()
        return
    try:
        with path.open("rb") as handle:
            head = handle.read(5)
    except OSError as error:
        raise PublisherError(f"{path}: cannot read: {error.strerror}") from None
    if head == b"From ":
        box = mailbox.mbox(path, create=False)
        try:
            for number, key in enumerate(box.keys(), start=1):
                yield f"{path}#{number}", box.get_bytes(key)
        finally:
            box.close()
        return
    yield str(path), path.read_bytes()


def import_paths(store: Store, settings: Settings, paths: list[Path], now: datetime) -> ImportReport:
    """Read and act on every message under `paths`."""
    report = ImportReport()
    for path in paths:
        if not path.exists():
            raise PublisherError(f"{path}: no such file or directory")
        for where, raw in messages(path):
            recorded = receive(store, settings, raw, now, source="file")
            if recorded.duplicate:
                report.duplicates += 1
            else:
                report.kinds[recorded.kind] += 1
            report.lines.append(f"{where}: {recorded.kind}: {recorded.action}")
    return report
