"""`publisher demo`: the whole pipeline on the sample, and next steps that work as printed."""

from __future__ import annotations

import shlex
from pathlib import Path

from click.testing import CliRunner

from publisher.cli import cli


def test_the_demo_points_at_the_public_site_and_its_site_build_command_works(tmp_path: Path):
    folder = tmp_path / "demo"
    shown = CliRunner().invoke(cli, ["demo", "--dir", str(folder)], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    next_steps = shown.output.split("\nNext:\n", 1)[1]
    assert "serve        # the public site on http://127.0.0.1:8080/" in next_steps
    build = next(line for line in next_steps.splitlines() if " site build --out " in line)
    args = shlex.split(build.strip())[1:]  # as printed, after the program's name
    built = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert built.exit_code == 0, built.output
    public = folder / "public"
    assert (public / "index.html").is_file() and (public / "sitemap.xml").is_file()
    assert "The publisher sample" in (public / "index.html").read_text(encoding="utf-8")
