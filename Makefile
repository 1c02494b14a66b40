# Two entry points, both self-contained on a fresh machine with Python 3.11+:
#   make demo   install into .venv, then ingest -> train -> embed -> recommend on sample_data/
#   make test   install into .venv with the dev tools, then run the tests and the linter
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch first: a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: demo test install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/tagrec ingest
	$(BIN)/tagrec train
	$(BIN)/tagrec embed
	$(BIN)/tagrec recommend --user 42

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) tagrec-workspace
