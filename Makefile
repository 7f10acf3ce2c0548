# The two commands: `make run` and `make test`. Both need only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
DEPS := $(VENV)/.deps-installed
DEV_DEPS := $(VENV)/.dev-deps-installed

.PHONY: run test lint bench clean

run: $(DEPS)
	$(BIN)/authority setup
	$(BIN)/authority serve

test: $(DEV_DEPS)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(DEV_DEPS)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check authority tests bench
	$(BIN)/mypy

bench: $(DEV_DEPS)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info

$(VENV)/bin/python:
	@$(PYTHON) -m venv $(VENV) || { echo "error: '$(PYTHON) -m venv' failed; on Debian/Ubuntu install python3-venv" >&2; exit 1; }

$(DEPS): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(PIP) install -c constraints.txt -e '.[server]'
	@touch $@

$(DEV_DEPS): $(DEPS)
	$(PIP) install -c constraints.txt -e '.[server,dev]'
	@touch $@
