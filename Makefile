# The two commands: `make serve` and `make test`. Both set up through `make install`, which installs the
# locked dependencies (requirements-dev.lock, with hashes: what CI tested) and Cesar itself, editable.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_COMPILE := UV_CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/uv pip compile pyproject.toml --universal \
	--python-version 3.11 --generate-hashes --annotation-style line --quiet

.PHONY: install system-tools serve test contract-newest lint format lock readme screenshot clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock requirements-dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

serve: install
	$(BIN)/cesar serve

test: install system-tools
	$(BIN)/python -m pytest

# The contract of Cesar's faster-whisper adapter (tests/contract) against the newest faster-whisper and
# CTranslate2 on PyPI, before the pin in pyproject.toml moves: a venv of its own (.venv-newest) with the
# locked dependencies, those two upgraded, the locked pytest and Cesar itself; only the contract tests run.
NEWEST := .venv-newest
NEWEST_TOOLS := ^(pytest|pytest-timeout|setuptools)==[^ ]+

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
	$(NEWEST)/bin/python -m pytest -p no:cacheprovider tests/contract

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

# ruff (lint and format), the import contracts (pyproject's [tool.importlinter]) and mypy --strict
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Refresh the lock files to the newest versions pyproject.toml allows: requirements.lock for running Cesar
# (with the bundled model), requirements-dev.lock for developing it (the same pins, plus the dev extras),
# requirements-gpu.lock for the GPU image's NVIDIA libraries (requirements-gpu.in).
lock: install
	$(UV_COMPILE) --upgrade --extra bundled-model -o requirements.lock
	$(UV_COMPILE) --upgrade --extra bundled-model --extra dev -c requirements.lock -o requirements-dev.lock
	UV_CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/uv pip compile requirements-gpu.in --universal \
		--python-version 3.11 --generate-hashes --annotation-style line --quiet --upgrade -o requirements-gpu.lock

# the README's settings table, written from cesar_common.settings (a test fails while it is stale)
readme: install
	$(BIN)/python scripts/update_readme.py

clean:
	rm -rf $(VENV) $(NEWEST) .pytest_cache build dist *.egg-info

# the README's screenshot of the page, taken by the browser test (docs/web-page.png)
screenshot: install system-tools
	CESAR_SCREENSHOT_README=1 $(BIN)/python -m pytest -q tests/e2e/test_web_page.py -k upload_shows
