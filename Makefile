# Quick start: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# checkov pins many packages of its own: it lives in a tool venv inside .venv.
CHECKOV_STAMP := $(VENV)/tools/checkov/.installed
CHECKOV_VERSION := 3.3.30
# The browser tests (tests/browser) drive Debian's Chromium; apt runs only when it is missing.
BROWSER_STAMP := $(VENV)/.browser-installed
# The `appgw-cert-bot` command: the checkout installed into .venv in editable mode, so the command
# always runs this checkout's code (`python -m shared` keeps working from the checkout root).
CLI_STAMP := $(VENV)/.cli-installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SCENARIO ?= ilb-ase-v1

.PHONY: install lint typecheck test test-fast demo bench clean sandbox

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# Azurite (Microsoft's storage emulator) comes from npm, pinned in package-lock.json.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

$(CHECKOV_STAMP): $(STAMP)
	test -x $(VENV)/tools/checkov/bin/python || $(PY) -m venv $(VENV)/tools/checkov
	$(VENV)/tools/checkov/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $(CHECKOV_STAMP)

$(CLI_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(CLI_STAMP)

$(BROWSER_STAMP): $(STAMP)
	test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { $(SUDO) apt-get update && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y chromium chromium-driver; }
	touch $(BROWSER_STAMP)

install: $(STAMP) $(CLI_STAMP) $(NODE_STAMP) $(CHECKOV_STAMP) $(BROWSER_STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: install lint typecheck
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -x

demo: $(STAMP) $(NODE_STAMP)
	$(PY) -m sandbox demo --scenario $(SCENARIO)

sandbox: $(STAMP) $(NODE_STAMP)
	$(PY) -m sandbox serve --scenario $(SCENARIO) --env-file .state/sandbox.env

bench: $(STAMP) $(NODE_STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache .hypothesis .state
