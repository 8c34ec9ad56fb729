# The two commands of the README:
#   make run    install taxmeter into .venv and serve on the embedded default
#   make test   install the test dependencies and run lint, types and tests
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: run test lint clean

run: $(VENV)/.installed
	$(BIN)/taxmeter serve $(ARGS)

test: $(VENV)/.installed-test lint
	$(BIN)/pytest -q $(ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# The tests include semantic_guard's, so the ml extra too. The CPU build of
# torch goes first, pinned: left to the extra, pip would pull a multi-GB CUDA build.
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,ml]'
	touch $@ $(VENV)/.installed

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
