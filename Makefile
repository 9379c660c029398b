# meterpay: `make run` (demo on SQLite with simulated meters) and `make test`.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-fast lint translations bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/meterpay db upgrade
	$(BIN)/meterpay demo seed --if-empty
	$(BIN)/meterpay run --demo

translations: install
	$(BIN)/python -c 'from core.i18n import compile_catalogs; print(compile_catalogs() or "catalogs up to date")'

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not browser" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis test-artifacts
