# newsdedup: `make run` sets up .venv and runs the ingest flow once; `make test` runs the suite.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
RAW_DIR ?= raw
PROCESSED_DIR ?= processed
# Prefect keeps its state in the project, not in ~/.prefect; embedded mode, no server to start.
export PREFECT_HOME := $(CURDIR)/.prefect
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: install run serve test lint clean browser postgres-server

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

# Settings for this run: make run ARGS='--threshold 0.5 --batch-size 50 --workers 2' (see `newsdedup config`).
ARGS ?=
run: install
	$(BIN)/newsdedup run --raw-dir $(RAW_DIR) --processed-dir $(PROCESSED_DIR) $(ARGS)

# A Prefect server on 127.0.0.1:$(PORT) (data in .prefect/server) and the scheduled `ingest/newsdedup`
# deployment; Ctrl-C stops both. With PREFECT_API_URL set, serves against that server instead.
# Schedule: SERVE_ARGS='--interval 300' or SERVE_ARGS="--cron '0 * * * *' --timezone Europe/Berlin".
PORT ?= 4200
SERVE_ARGS ?=
serve: install
	$(BIN)/newsdedup serve --raw-dir $(RAW_DIR) --processed-dir $(PROCESSED_DIR) --port $(PORT) $(SERVE_ARGS)

# Debian's chromium, for the browser test of the HTML report (tests/test_report.py): installed with apt-get
# when missing and run as root (CI); otherwise that test is skipped and says how to install it.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the report's browser test (apt-get)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	      || echo "warning: chromium could not be installed; the report's browser test will be skipped"; \
	  else \
	    echo "note: chromium is not installed (needs root: sudo apt-get install chromium); the report's browser test will be skipped"; \
	  fi; }

# tests/test_state_pg.py starts a PostgreSQL server of its own from Debian's postgresql package:
# installed here when missing (as root, with apt-get), else those tests skip with a message.
postgres-server:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's postgresql for the PostgreSQL state tests (apt-get)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } \
	      || echo "warning: postgresql could not be installed; the PostgreSQL state tests will be skipped"; \
	  else \
	    echo "note: postgresql is not installed (needs root: sudo apt-get install postgresql); the PostgreSQL state tests will be skipped"; \
	  fi; }

test: install browser postgres-server
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check pipeline flows tests bench

clean:
	rm -rf $(VENV) .prefect .pytest_cache
