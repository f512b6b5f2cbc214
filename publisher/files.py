"""Owner-only files: whatever holds addresses, names or keys is created readable by us alone."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700


def create_private(path: Path) -> None:
    """Create an empty owner-only file if none is there (SQLite then gives its -wal and -shm
    files the same mode); an existing file is left as it is."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path`, owner-only from the first byte (an existing file is made so too)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(descriptor, "wb") as handle:
        os.fchmod(handle.fileno(), PRIVATE_FILE)
        handle.write(data)


def private_folder(path: Path) -> None:
    """Create `path` (and its parents) with the last folder owner-only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(PRIVATE_FOLDER)
