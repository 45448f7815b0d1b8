# unirouter: set-up, tests, the main job and benchmarks. Every target creates .venv if it is missing.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TRIALS ?=
JOBS ?= 2
TRIALS_FLAG := $(if $(TRIALS),--trials $(TRIALS),)

.PHONY: install install-embed test reproduce bench lint clean

$(BIN)/unirouter: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(BIN)/unirouter

install: $(BIN)/unirouter

install-embed: install
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[embed]'

test: install
	$(BIN)/python -m pytest -q

reproduce: install
	$(BIN)/unirouter reproduce --jobs $(JOBS) $(TRIALS_FLAG)

bench: install
	$(BIN)/python benchmarks/run.py

lint: install
	$(BIN)/ruff check unirouter_cli tests benchmarks scripts

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
