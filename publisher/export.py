"""The static export: the whole public site as files any web server or CDN can serve.

Pages are the bytes the app serves (`/x/` → `x/index.html`), next to copies of the feeds, the
newsletter archives and the static assets. A file is written only when its bytes change, so an
unchanged re-export writes nothing; files an earlier export wrote that no longer exist (an
article's tag removed, say) are deleted, and nothing else in the folder is touched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from publisher.errors import SiteError
from publisher.site import Site, export_name

MANIFEST = ".publisher-export"  # the files the last export wrote, one per line


@dataclass
class ExportReport:
    out: Path
    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)

    @property
    def files(self) -> int:
        return len(self.written) + self.unchanged


def copied(root: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    """(name in the export, source file) for every file under `root` (hidden temporaries skipped)."""
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts):
            yield f"{prefix}/{path.relative_to(root).as_posix()}", path


def contents(site: Site, feeds: Path, archive: Path, static: Path) -> Iterator[tuple[str, bytes | Path]]:
    """Everything the export holds: rendered pages first, then the copied folders."""
    for path in site.paths():
        page = site.render(path)
        if page is not None:
            yield export_name(path), page.body
    yield "404.html", site.not_found().body
    yield from copied(feeds, "feeds")
    yield from copied(archive, "archive")
    yield from copied(static, "static")


def replace_if_changed(path: Path, data: bytes) -> bool:
    """Write `path` through a temporary file and a rename, unless it holds `data` already.

    Unlike the feeds, export files are not fsynced one by one (thousands of syncs would take most
    of the export's time): a crash can lose the newest export, never leave half a file served."""
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return True


def export_site(site: Site, out: Path, *, feeds: Path, archive: Path, static: Path) -> ExportReport:
    """Write the site into `out`; see the module's docstring."""
    report = ExportReport(out)
    names: set[str] = set()
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, data in contents(site, feeds, archive, static):
            if name in names and name.startswith("archive/"):
                continue  # the site's own /archive/ page wins over a stray archive/index.html
            names.add(name)
            body = data.read_bytes() if isinstance(data, Path) else data
            if replace_if_changed(out / name, body):
                report.written.append(name)
            else:
                report.unchanged += 1
        report.removed = _remove_stale(out, names)
        replace_if_changed(out / MANIFEST, "".join(f"{name}\n" for name in sorted(names)).encode())
    except OSError as error:
        where = error.filename or out
        raise SiteError(
            f"cannot write the site export {where}: {error.strerror or error} (check [site] export_dir or --out)"
        ) from None
    return report


def _remove_stale(out: Path, names: set[str]) -> list[str]:
    manifest = out / MANIFEST
    before = manifest.read_text(encoding="utf-8").splitlines() if manifest.exists() else []
    stale = sorted(name for name in before if name and name not in names)
    for name in stale:
        (out / name).unlink(missing_ok=True)
    return stale
