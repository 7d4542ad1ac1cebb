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

.PHONY: reproduce test test-notebooks test-browser bench install clean-smoke lab html

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
	REPLICATION_PROFILE=smoke $(PY) -m pytest -q --durations=15 --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg tests notebooks

test-notebooks: $(STAMP)
	REPLICATION_PROFILE=smoke $(PY) -m pytest -q --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks

# JupyterLab 4 on the notebooks' index, with the project's kernel registered in the venv.
lab: $(STAMP)
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (xai-robustness-replication)" >/dev/null
	$(VENV)/bin/jupyter lab notebooks/README.md

# JupyterLab in a real browser (Debian's chromium, driven by playwright; no browser download):
# executes the notebooks in smoke if their copies are missing, then checks how they render and
# saves screenshots under docs/screenshots/.
test-browser: $(STAMP)
	command -v chromium >/dev/null || { echo "test-browser needs Debian's chromium: apt-get install chromium"; exit 2; }
	$(PY) -m pip install --quiet -e ".[dev,browser]"
	REPLICATION_PROFILE=smoke REPLICATION_BROWSER_TEST=1 $(PY) -m pytest -q tests/browser

# The static HTML edition (offline): the verdict table, then every executed notebook with its figures.
# Opens as site/<profile>/index.html in any browser.
html: $(STAMP)
	$(PY) -m replication.site --profile $(or $(PROFILE),cpu)

bench: $(STAMP)
	$(PY) -m replication.bench train --profile $(or $(PROFILE),cpu)

# Clean means clean: the smoke profile's results, figures, checkpoints, resume states and caches.
clean-smoke:
	rm -rf results/smoke figures/smoke checkpoints/smoke .cache/resume/smoke .cache/identification/smoke .cache/adversarial/smoke
