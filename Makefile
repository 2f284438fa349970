# pimphony: `make run` and `make test` are the whole set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST := $(PY) -m pytest -q -n 2

.PHONY: run test test-all lint bench install clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "pimphony needs Python 3.11 or newer; set PYTHON=python3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# PYTHONWARNINGS: setuptools warns on every editable install that maps packages to folders (ours do:
	# pimphony.model -> model/); nothing in this tree shadows the package, so the warning only adds noise.
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/pimphony run

test: $(STAMP)
	$(PYTEST)

# make test and the tests marked slow (long RTL simulations whose checks make test gets elsewhere)
test-all: $(STAMP)
	$(PYTEST) --slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(VENV)/bin/pimphony bench golden
	$(VENV)/bin/pimphony bench perf

clean:
	rm -rf $(VENV) build reports .pytest_cache .hypothesis
