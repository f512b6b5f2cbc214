"""Mail that came back, read from files: single .eml files, mbox files and maildirs.

Reading is idempotent (each message is recorded once, by its digest), so a maildir can be
imported again after more mail arrived; the files are left as they are. A folder is read as a
maildir when it holds `new/` or `cur/`, or is one of those; any other folder for its `.eml`
files, and the other files in it are counted as skipped. A message that cannot be recorded is
kept as `unknown` (see `intake`) and the import goes on.
"""

from __future__ import annotations

import logging
import mailbox
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from publisher.config import Settings
from publisher.errors import PublisherError
from publisher.inbound.intake import take
from publisher.store import Store

log = logging.getLogger("publisher.inbound")
_MAILDIR_PARTS = ("new", "cur")


@dataclass
class ImportReport:
    kinds: Counter = field(default_factory=Counter)
    duplicates: int = 0
    failed: int = 0  # could not be recorded at all (each one warned about, by name)
    skipped: list[Path] = field(default_factory=list)  # files in a folder that are not .eml
    outcomes: Counter = field(default_factory=Counter)  # what was done: Recorded.outcome
    lines: list[str] = field(default_factory=list)  # one per message: where, kind, action

    @property
    def total(self) -> int:
        return sum(self.kinds.values()) + self.duplicates


def messages(path: Path, skipped: list[Path] | None = None) -> Iterator[tuple[str, bytes]]:
    """(where, raw bytes) for each message under `path`: a maildir (or its new/ or cur/), a folder
    of .eml files, an mbox or one file. Files of a folder that are not .eml go to `skipped`."""
    if path.is_dir():
        if any((path / sub).is_dir() for sub in _MAILDIR_PARTS):
            for sub in _MAILDIR_PARTS:
                yield from _maildir_folder(path / sub)
        elif path.name in _MAILDIR_PARTS and any((path.parent / sub).is_dir() for sub in ("new", "cur", "tmp")):
            yield from _maildir_folder(path)
        else:
            yield from _eml_files(path, skipped if skipped is not None else [])
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


def _maildir_folder(folder: Path) -> Iterator[tuple[str, bytes]]:
    for item in sorted(folder.glob("*")) if folder.is_dir() else []:
        if item.is_file() and not item.name.startswith("."):
            yield str(item), item.read_bytes()


def _eml_files(folder: Path, skipped: list[Path]) -> Iterator[tuple[str, bytes]]:
    for item in sorted(folder.rglob("*")):
        if not item.is_file() or any(part.startswith(".") for part in item.relative_to(folder).parts):
            continue
        if item.suffix.lower() == ".eml":
            yield str(item), item.read_bytes()
        else:
            skipped.append(item)


def import_paths(store: Store, settings: Settings, paths: list[Path], now: datetime) -> ImportReport:
    """Read and act on every message under `paths`; one that cannot be recorded does not stop the rest."""
    report = ImportReport()
    for path in paths:
        if not path.exists():
            raise PublisherError(f"{path}: no such file or directory")
        skipped: list[Path] = []
        for where, raw in messages(path, skipped):
            recorded = take(store, settings, raw, now, source="file", where=where)
            if recorded is None:
                report.failed += 1
                report.lines.append(f"{where}: failed: could not be recorded")
            elif recorded.duplicate:
                report.duplicates += 1
            else:
                report.kinds[recorded.kind] += 1
            if recorded is not None:
                report.outcomes[recorded.outcome] += 1
                report.lines.append(f"{where}: {recorded.kind}: {recorded.action}")
        if skipped:
            report.skipped.extend(skipped)
            log.warning("%s: %s", path, skipped_note(len(skipped)))
    return report


def skipped_note(count: int) -> str:
    files = "file" if count == 1 else "files"
    return (
        f"{count} {files} skipped (not .eml): for a maildir, point at the maildir itself "
        "(the folder holding new/ and cur/)"
    )
