"""The CSV files uploaded for an import, kept on disk between the preview and the confirmation.

One private folder per web app (made with mkdtemp: owner-only, unguessable), one folder per
operator in it, one folder per upload in that: `<root>/<operator id>/<upload id>/<file name>`.
What is kept is bounded: an upload expires after `max_age` seconds, an operator keeps only their
newest `per_operator`, and all of them together stay under `max_bytes` (the oldest go first).
`close()` deletes the whole folder when the web app shuts down.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from publisher.errors import SubscriberError
from publisher.files import write_private

EXPIRED = "this import has expired: upload the file again"


@dataclass
class Uploads:
    max_age: float = 3600.0
    per_operator: int = 3
    max_bytes: int = 100 * 1024 * 1024
    root: Path | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def keep(self, operator: int, name: str, data: bytes) -> tuple[str, Path]:
        """Store `data` as `name` for `operator`; its id (what the confirmation form sends back) and path."""
        with self._lock:
            upload_id = secrets.token_hex(16)
            folder = self._folder() / str(operator) / upload_id
            folder.mkdir(mode=0o700, parents=True)
            path = folder / name
            write_private(path, data)
            self._sweep()
            return upload_id, path

    def find(self, operator: int, upload_id: str) -> Path:
        """The file `operator` kept under `upload_id`; a SubscriberError once it is gone."""
        if len(upload_id) != 32 or any(c not in "0123456789abcdef" for c in upload_id):
            raise SubscriberError(EXPIRED)
        with self._lock:
            self._sweep()
            found = list((self._folder() / str(operator) / upload_id).glob("*"))
        if len(found) != 1:
            raise SubscriberError(EXPIRED)
        return found[0]

    def discard(self, path: Path) -> None:
        with self._lock:
            shutil.rmtree(path.parent, ignore_errors=True)

    def close(self) -> None:
        """Delete every kept upload (the web app is shutting down)."""
        with self._lock:
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None

    def kept(self) -> list[Path]:
        """The kept files, oldest first."""
        if self.root is None:
            return []
        files = [path for path in self.root.glob("*/*/*") if path.is_file()]
        return sorted(files, key=lambda path: path.stat().st_mtime_ns)

    def _folder(self) -> Path:
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="publisher-console-uploads-"))
        return self.root

    def _sweep(self) -> None:
        files = self.kept()
        cutoff = time.time() - self.max_age
        gone = {path for path in files if path.stat().st_mtime < cutoff}
        by_operator: dict[str, list[Path]] = {}
        for path in files:
            by_operator.setdefault(path.parent.parent.name, []).append(path)
        for own in by_operator.values():
            gone.update(own[: -self.per_operator])  # all but the newest few
        total = sum(path.stat().st_size for path in files if path not in gone)
        for path in files:  # the oldest first, until the rest fit
            if total <= self.max_bytes:
                break
            if path not in gone:
                gone.add(path)
                total -= path.stat().st_size
        for path in gone:
            shutil.rmtree(path.parent, ignore_errors=True)
