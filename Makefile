# Two commands: `make run` and `make test`. Everything else is set up on the way.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast fuzz lint typecheck check install clean browser

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/perkamo serve --demo

# The console's browser tests drive Debian's chromium through chromium-driver: installed here
# when missing (as root), a clear error otherwise.
browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing chromium and chromium-driver (the browser tests need them)"; \
	    apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else \
	    echo "make test needs Debian's chromium and chromium-driver for the browser tests:" >&2; \
	    echo "  sudo apt-get install chromium chromium-driver   (or run make test as root)" >&2; \
	    exit 1; \
	  fi; \
	fi

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

# While editing: everything but the real-time tests against server processes (marked slow).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# A longer schemathesis run than CI's (EXAMPLES per operation, a fresh SEED each time).
fuzz: $(STAMP)
	PERKAMO_FUZZ_EXAMPLES=$${EXAMPLES:-500} PERKAMO_FUZZ_SEED=$${SEED:-$$(date +%s)} \
	PERKAMO_FUZZ_MAX_SECONDS=$${MAX_SECONDS:-3600} $(BIN)/python -m pytest -q tests/perkamo/test_fuzz.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: test lint typecheck

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
