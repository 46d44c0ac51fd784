# Two commands do all the set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest contract bench bench-quick clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e ".[demo]" --group dev
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m eventcore demo

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

# The long hypothesis profile of the contract suite (tests/contract).
contract: $(STAMP)
	HYPOTHESIS_PROFILE=long $(BIN)/pytest tests/contract -m contract -p no:timeout --hypothesis-show-statistics -q

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis build dist
