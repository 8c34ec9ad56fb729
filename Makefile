# The two commands of the README:
#   make run    install taxmeter into .venv and serve on the embedded default
#   make test   install the test dependencies and run lint, types and tests
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=
# LiteLLM's proxy, the third-party server tests/compat runs taxmeter in front
# of, in a venv of its own: its pins must not decide ours.
LITELLM_VENV ?= .venv-litellm
LITELLM      := litellm[proxy]==1.108.7
# Mutation testing (docs/testing.md): not in CI, an hour and more on two cores.
MUTMUT       := mutmut==3.8.1
MUTANTS      ?=

.PHONY: run test lint mutate mutate-rest clean

run: $(VENV)/.installed
	$(BIN)/taxmeter serve $(ARGS)

test: $(VENV)/.installed-test $(LITELLM_VENV)/.installed lint
	TAXMETER_LITELLM_VENV=$(LITELLM_VENV) $(BIN)/pytest -q $(ARGS)

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

$(LITELLM_VENV)/.installed: Makefile
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install -q --upgrade pip
	$(LITELLM_VENV)/bin/pip install -q '$(LITELLM)'
	touch $@

# Configured in pyproject.toml [tool.mutmut]; MUTANTS='proxy.exchange.headers*' runs
# one module's. Each of MUTANTS is quoted, so the shell does not expand it as a file glob.
# mutmut keeps which tests reach each function in mutants/mutmut-stats.json and, on a
# later run, traces only tests it has not seen: a test that reaches a function written
# since is then not run against its mutants, which survive falsely. So the record is
# made again on every run (one traced run of the tests, a few minutes).
mutate: $(VENV)/.installed-mutate
	rm -f mutants/mutmut-stats.json
	$(BIN)/mutmut run --max-children 2 $(foreach glob,$(MUTANTS),'$(glob)')
	$(BIN)/mutmut results

# A stopped run's mutants of MUTANTS that have no result yet (mutmut runs again
# every mutant its names match, results or not).
mutate-rest: $(VENV)/.installed-mutate
	names=$$($(BIN)/python tools/mutants_left.py $(foreach glob,$(MUTANTS),'$(glob)')); \
	if [ -n "$$names" ]; then $(BIN)/mutmut run --max-children 2 $$names; fi
	$(BIN)/mutmut results

$(VENV)/.installed-mutate: $(VENV)/.installed-test Makefile
	$(BIN)/pip install -q '$(MUTMUT)'
	touch $@

clean:
	rm -rf $(VENV) $(LITELLM_VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info mutants
