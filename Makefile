# The commands a new user runs (see README):
#   make demo   sets everything up, then runs the main job on the embedded digits data
#   make test   sets everything up, then runs the test suite (which also builds the documentation site)
#   make docs   sets everything up, then builds the documentation site into site/ (strict: a warning fails)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test docs clean

$(BIN)/snnergy: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[tensorboard]"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[ray]" \
		|| echo "Ray does not install here: its sweep test will be skipped (pip install 'snnergy[ray]')"
	touch $(BIN)/snnergy

setup: $(BIN)/snnergy

demo: setup
	$(BIN)/snnergy compare --out runs/demo

test: setup
	$(BIN)/python -m pytest -q

docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs build site *.egg-info
