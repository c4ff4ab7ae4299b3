# evgw — developer entry points. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all demo test test-all lint bench system-deps clean

all: test

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "evgw needs Python >= 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $(STAMP)

# Debian packages the tests drive for real: a mosquitto broker and socat pty pairs.
system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v socat >/dev/null 2>&1 || missing="$$missing socat"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing:$$missing — install them (as root: apt-get install$$missing) and run make again"; \
	    exit 1; \
	  fi; \
	fi

demo: $(STAMP)
	$(BIN)/evgw demo

# Tests run in TEST_WORKERS processes (most of the time is spent waiting on real
# subprocesses, brokers and serial lines, not on the CPU); tests sharing a costly module
# fixture keep to one worker (xdist_group). TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 4
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

test: $(STAMP) system-deps lint
	$(PYTEST)

test-all: $(STAMP) system-deps
	$(PYTEST) -m ''

lint: $(STAMP)
	$(BIN)/ruff check agent drivers sim tests bench
	$(BIN)/ruff format --check agent drivers sim tests bench
	$(BIN)/lint-imports

bench: $(STAMP) system-deps
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
