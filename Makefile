# Two commands do everything on a fresh clone:
#   make reproduce   run every notebook in order through papermill (full with a CUDA GPU, else smoke;
#                    PROFILE=cpu make reproduce runs the reported reduced-scale replication)
#   make test        unit tests + the notebooks under nbval in the smoke profile
# Both create .venv and install the package with its dependencies on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROFILE ?=

.PHONY: reproduce test test-notebooks bench install clean-smoke

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip check
	touch $(STAMP)

install: $(STAMP)

reproduce: $(STAMP)
	$(PY) -m replication.runner $(if $(PROFILE),--profile $(PROFILE))

# One pytest run: unit tests and the stored notebooks (nbval-lax: only cells marked
# NBVAL_CHECK_OUTPUT are compared, after tests/nbval_sanitize.cfg).
test: $(STAMP)
	REPLICATION_PROFILE=smoke $(PY) -m pytest -q --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg tests notebooks

test-notebooks: $(STAMP)
	REPLICATION_PROFILE=smoke $(PY) -m pytest -q --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks

bench: $(STAMP)
	$(PY) -m replication.bench train --profile $(or $(PROFILE),cpu)

clean-smoke:
	rm -rf results/smoke figures/smoke checkpoints/smoke
