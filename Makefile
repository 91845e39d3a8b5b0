# The two commands of the README:
#   make run    set up .venv, then run the whole pipeline with `dvc repro` on params.yaml
#   make test   set up .venv, then run the test suite
# and `make docs`: the documentation site (mkdocs.yml, docs/) built into site/.
# .venv is (re)built whenever pyproject.toml or requirements.lock changes.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export DVC_NO_ANALYTICS := 1
export MPLBACKEND := Agg
export PYTHONUNBUFFERED := 1
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test docs venv clean-outputs

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# CPU build of torch first (a bare `torch` would pull the CUDA build)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/dvc repro

test: $(STAMP)
	$(BIN)/python -m pytest -q

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean-outputs:
	rm -rf data/store runs
