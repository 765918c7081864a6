# Two commands for a fresh clone with only Python installed:
#   make demo   trains with every seed optimizer and prints a table
#   make test   installs everything into .venv and runs the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The suite runs on every core up to 4 (pytest-xdist); JOBS=1 runs it in one process.
JOBS ?= auto

.PHONY: demo test lint clean

$(VENV)/.created:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	touch $@

# `make demo` needs only the experiments extra (matplotlib, tqdm, scikit-learn).
$(VENV)/.installed-experiments: pyproject.toml $(VENV)/.created
	$(PY) -m pip install --quiet -e ".[experiments]"
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.created
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.installed-experiments

demo: $(VENV)/.installed-experiments
	$(PY) -m optim_fn compare

test: $(VENV)/.installed
	$(PY) -m ruff check optim_fn tests benchmarks
	$(PY) -m pytest -q -n $(JOBS) --maxprocesses 4

lint: $(VENV)/.installed
	$(PY) -m ruff check optim_fn tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
