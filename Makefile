# Set-up and everyday tasks. `make demo` and `make test` are all a fresh clone needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install lock system-deps screenshots bench clean

## The pinned dependencies of requirements.lock, then publisher itself (editable, nothing else)
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

## Re-pin requirements.lock after changing dependencies in pyproject.toml (existing pins are kept;
## `make lock LOCK_ARGS=--upgrade` moves every pin to the newest release); review the diff
lock: $(STAMP)
	$(BIN)/pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet $(LOCK_ARGS) --extra test --strip-extras --no-emit-index-url --no-emit-find-links \
	  --output-file requirements.lock pyproject.toml

## The whole pipeline on the bundled sample publication, in ./demo
demo: $(STAMP)
	$(BIN)/publisher demo

## System packages the tests drive: Debian's Chromium, Postfix's smtp-sink for benchmarks, Dovecot (IMAP intake)
system-deps:
	@command -v chromium >/dev/null && command -v smtp-sink >/dev/null && command -v dovecot >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium postfix dovecot-imapd >/dev/null; }

## Every test, on SQLite and PostgreSQL (127.0.0.1:5432, database test)
test: $(STAMP) system-deps lint
	$(BIN)/python -m pytest -q

## ruff (lint and format) and mypy (its settings and files are in pyproject.toml); CI fails on any finding
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## The digest preview and archive, and the console's dashboard, preview and issue pages, in Chromium; PNGs land in screenshots/ (ignored by git)
screenshots: $(STAMP) system-deps
	$(BIN)/python -m pytest -q tests/test_screenshots.py tests/test_console_browser.py
	@echo "screenshots in $${PUBLISHER_SCREENSHOTS:-$(CURDIR)/screenshots}/digest/ and console/"

bench: $(STAMP)
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) demo publisher.db* outbox preview archive screenshots
