# Two commands for a fresh clone with only Python installed:
#   make demo   trains with every seed optimizer and prints a table
#   make test   installs everything into .venv and runs the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m optim_fn compare

test: $(VENV)/.installed
	$(PY) -m ruff check optim_fn tests benchmarks
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(PY) -m ruff check optim_fn tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
