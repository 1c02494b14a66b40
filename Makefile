# Two entry points, both self-contained on a fresh machine with Python 3.11+:
#   make demo   install into .venv, then ingest -> train -> embed -> recommend on sample_data/
#   make test   install into .venv with the dev tools, then run the tests and the linter
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# PyTorch first, pinned, so that the project's own `torch` range finds it installed. Which
# build comes depends on the package index: PyPI's Linux wheels are CUDA builds (GBs); for
# the CPU build, make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: demo test install browser clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)") "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/tagrec ingest
	$(BIN)/tagrec train
	$(BIN)/tagrec embed
	$(BIN)/tagrec recommend --user 42

# The browser test (tests/test_serve_browser.py) drives Debian's chromium. As root with apt-get
# (CI), it is installed when missing (about 100 s); elsewhere, or with NO_BROWSER=1, nothing is
# installed and the test is skipped with the reason printed.
browser:
	@if [ -z "$(NO_BROWSER)" ] && ! command -v chromium >/dev/null && [ "$$(id -u)" = 0 ] \
	    && command -v apt-get >/dev/null; then \
	  echo "installing chromium for the browser test (apt-get)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium chromium-driver >/dev/null) \
	  || echo "could not install chromium: the browser test will be skipped"; \
	fi

test: install browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) tagrec-workspace
