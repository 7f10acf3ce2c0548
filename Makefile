# The two commands: `make run` and `make test`. Both need only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
DEPS := $(VENV)/.deps-installed
DEV_DEPS := $(VENV)/.dev-deps-installed

EXAMPLE_DEPS := $(VENV)/.example-deps-installed

.PHONY: run examples test lint bench clean

# Each step says what it does first: the first run installs for a while.
run: $(DEPS)
	@echo "==> $(BIN)/authority setup: migrating the database, making the first signing key if none"
	@$(BIN)/authority setup
	@echo "==> $(BIN)/authority serve (Ctrl-C stops it)"
	@$(BIN)/authority serve

# What examples/resource_server.py and examples/bff need (the "examples" extra).
examples: $(EXAMPLE_DEPS)

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
	@echo "==> creating the virtual environment $(VENV)"
	@$(PYTHON) -m venv $(VENV) || { echo "error: '$(PYTHON) -m venv' failed; on Debian/Ubuntu install python3-venv" >&2; exit 1; }

$(DEPS): pyproject.toml constraints.txt | $(VENV)/bin/python
	@echo "==> installing the authority and its dependencies into $(VENV) (pinned in constraints.txt; about 20 s the first time)"
	@$(PIP) install -c constraints.txt -e '.[server]'
	@echo "==> installed the command $(BIN)/authority"
	@touch $@

$(DEV_DEPS): $(DEPS)
	@echo "==> installing the test and lint tools into $(VENV)"
	@$(PIP) install -c constraints.txt -e '.[server,dev]'
	@touch $@

$(EXAMPLE_DEPS): $(DEPS)
	@echo "==> installing what the examples need into $(VENV)"
	@$(PIP) install -c constraints.txt -e '.[server,examples]'
	@touch $@
