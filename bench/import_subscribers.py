"""How long `publisher subscribers import` takes, and that its memory does not grow with the file.

    .venv/bin/python bench/import_subscribers.py                          # 100,000 rows, SQLite and PostgreSQL
    .venv/bin/python bench/import_subscribers.py --sizes 100000 1000000
    .venv/bin/python bench/import_subscribers.py --databases sqlite

For each size it writes a Mailchimp-shaped export (23 columns, as Mailchimp writes them: names,
opt-in and confirm times, tags; every 50th row tagged VIP) into a temporary folder, then runs the
whole command as a user does, in a child process:

    publisher subscribers import FILE --confirmed --map tag:Weekly=weekly --map tag:VIP=daily

into an empty database (SQLite in the temporary folder; PostgreSQL at PUBLISHER_TEST_POSTGRES or
127.0.0.1:5432/test, in a fresh schema dropped afterwards), and once more over the same database
(every row an existing address: the update path). It reports the wall time, the child's CPU
time (user + system: steadier than wall time on a shared machine; the database server's own work
on PostgreSQL is not in it) and peak RSS (`wait4`'s rusage), and rows per second.

The child runs from compiled bytecode, as an installed package does (pip compiles it at install
time): PYTHONDONTWRITEBYTECODE is dropped from its environment and the bytecode goes into the
temporary folder (PYTHONPYCACHEPREFIX), written by an untimed import of ten rows into each
database before any timing (the prefix holds the libraries' bytecode too, so the database
drivers, loaded only when a command connects, must be compiled then, not in a timed run).

Target: under 5 s per 100,000 rows; peak RSS about the same for 100,000 and 1,000,000 rows.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy

ROOT = Path(__file__).resolve().parent.parent
POSTGRES = os.environ.get("PUBLISHER_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
HEADER = [
    "Email Address", "First Name", "Last Name", "Address", "Phone Number", "Birthday", "MEMBER_RATING",
    "OPTIN_TIME", "OPTIN_IP", "CONFIRM_TIME", "CONFIRM_IP", "LATITUDE", "LONGITUDE", "GMTOFF", "DSTOFF",
    "TIMEZONE", "CC", "REGION", "LAST_CHANGED", "LEID", "EUID", "NOTES", "TAGS",
]  # fmt: skip


def write_export(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for n in range(rows):
            day = f"2022-{1 + n % 12:02d}-{1 + n % 28:02d}"
            tags = '"Weekly","VIP"' if n % 50 == 0 else '"Weekly"'
            writer.writerow(
                [f"reader{n}@example.com", f"First{n}", "Last", "", "", "", n % 5 + 1, f"{day} 09:00:00",
                 "203.0.113.7", f"{day} 09:05:00", "203.0.113.7", "", "", "0", "0", "Europe/London", "GB", "ENG",
                 f"{day} 09:05:00", str(100000000 + n), f"e{n:08x}", "", tags]
            )  # fmt: skip


def database(kind: str, folder: Path) -> tuple[str, callable]:
    """A database URL for one run, and how to clean it up."""
    if kind == "sqlite":
        path = folder / f"bench-{uuid.uuid4().hex[:6]}.db"
        return f"sqlite:///{path}", lambda: None
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(POSTGRES)
    with admin.begin() as connection:
        connection.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))

    def drop() -> None:
        with admin.begin() as connection:
            connection.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()

    return f"{POSTGRES}?options=-csearch_path%3D{schema}", drop


def child_environment(folder: Path, kinds: list[str]) -> dict[str, str]:
    """The environment of every child: bytecode cached in `folder`, written now by an import of
    ten rows into each kind of database (what a timed run loads, and nothing timed)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(folder / "pycache")
    export = folder / "warm-up.csv"
    write_export(export, 10)
    for kind in kinds:
        url, drop = database(kind, folder)
        try:
            run_import(write_config(folder, url), export, env)
        finally:
            drop()
    return env


def write_config(folder: Path, url: str) -> Path:
    config = folder / "config.toml"
    config.write_text(
        f'[site]\nurl = "https://news.example.org"\n[database]\nurl = "{url}"\n'
        "[newsletters.weekly]\n[newsletters.daily]\n",
        encoding="utf-8",
    )
    return config


def run_import(config: Path, export: Path, env: dict[str, str]) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds, peak RSS in KiB and the last output line of one `subscribers import`."""
    command = [sys.executable, "-m", "publisher", "--config", str(config), "subscribers", "import", str(export)]
    command += ["--confirmed", "--map", "tag:Weekly=weekly", "--map", "tag:VIP=daily"]
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=config.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = child.stdout.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"import failed ({child.returncode}):\n{output}")
    lines = [line for line in output.splitlines() if "added" in line]
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        env = child_environment(folder, args.databases)
        for size in args.sizes:
            export = folder / f"mailchimp-{size}.csv"
            write_export(export, size)
            for kind in args.databases:
                url, drop = database(kind, folder)
                config = write_config(folder, url)
                try:
                    for what in ("new", "again"):
                        wall, cpu, peak, line = run_import(config, export, env)
                        results.append((size, kind, what, wall, cpu, peak))
                        print(f"{size:>9,} {kind:<10} {what:<5} {wall:7.1f} s (cpu {cpu:5.1f} s) {size / wall:>9,.0f} "
                              f"rows/s {peak / 1024:7.1f} MiB   {line.split(': ', 1)[-1]}", flush=True)  # fmt: skip
                finally:
                    drop()
    print(
        "\n| rows | database | import | wall time | CPU time | per 100,000 rows | rows/s | peak RSS |"
        "\n|---:|---|---|---:|---:|---:|---:|---:|"
    )
    for size, kind, what, wall, cpu, peak in results:
        label = "into an empty list" if what == "new" else "again (all existing)"
        print(
            f"| {size:,} | {kind} | {label} | {wall:.1f} s | {cpu:.1f} s | {wall * 100_000 / size:.1f} s "
            f"| {size / wall:,.0f} | {peak / 1024:.0f} MiB |"
        )


if __name__ == "__main__":
    main()
