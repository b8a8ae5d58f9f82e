# Two commands on a fresh machine (each sets up what it needs by itself):
#   make run        creates/reuses .venv, installs the suite (CPU torch), Graphviz if missing, runs `ppl demo`
#   make test       the same set-up, then the test suite
#   make notebooks  the same set-up plus JupyterLab (the `notebooks` extra), started on notebooks/
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
OUT    ?= demo-out
# the tests on every core (at most four workers), a test file's tests in one worker (its module fixtures built once)
PYTEST_ARGS ?= -n auto --maxprocesses 4 --dist loadfile
# extra pip arguments for the set-up, e.g. PIP_ARGS='--extra-index-url https://download.pytorch.org/whl/cpu'
PIP_ARGS ?=

.PHONY: run test install graphviz notebooks clean test-arviz1

run: install graphviz
	$(VENV)/bin/ppl demo --out $(OUT)
	@echo "Open $(OUT)/index.html in a web browser: a section per model (diagram, factorization, summary, oracle check)."

test: install graphviz
	$(PY) -m pytest $(PYTEST_ARGS)

install: $(STAMP)

# constraints.txt pins torch 2.13.0: the CPU build where pip finds it (a local wheel); an unpinned torch pulls
# several GB of CUDA packages. Elsewhere PIP_ARGS can point pip at PyTorch's CPU index (see the README).
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt $(PIP_ARGS) -e '.[test]'
	@touch $(STAMP)

# JupyterLab on the notebooks (root, as in a container, needs --allow-root); Ctrl-C stops it
notebooks: install graphviz
	$(PY) -m pip install --quiet -c constraints.txt $(PIP_ARGS) -e '.[test,notebooks]'
	$(VENV)/bin/jupyter lab notebooks/ $$(test "$$(id -u)" = 0 && echo --allow-root)

# The ArviZ-facing tests once more under ArviZ 1.x (xarray.DataTree), which needs Python 3.12 or newer: a second
# environment .venv-arviz1 (pyenv's 3.12 when there is one, else python3.12; PYTHON312=... to choose). pip takes
# torch 2.13 from the package index there, the CUDA build (about 5 GB; it runs on the CPU) unless PIP_ARGS
# points at PyTorch's CPU index. Not part of `make test`.
PYTHON312 ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.12*/bin/python) python3.12)
VENV1     ?= .venv-arviz1
ARVIZ1_TESTS ?= tests/test_arviz.py tests/test_arviz_compat_notebooks.py tests/test_engines.py tests/test_summary_states.py \
                tests/test_compare.py tests/test_big_data.py tests/test_dims.py tests/test_cli.py tests/test_sbc.py \
                tests/test_notebooks.py

test-arviz1: graphviz
	@test -x $(VENV1)/bin/python || $(PYTHON312) -m venv $(VENV1)
	$(VENV1)/bin/python -m pip install --quiet $(PIP_ARGS) -e '.[test]' 'arviz>=1'
	$(VENV1)/bin/python -c "import arviz, sys; print('Python', sys.version.split()[0], 'ArviZ', arviz.__version__)"
	$(VENV1)/bin/python -m pytest -n auto --maxprocesses 4 --dist loadfile $(ARVIZ1_TESTS)

graphviz:
	@if command -v dot >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; \
	else echo "Graphviz 'dot' is missing and cannot be installed without root: run 'sudo apt-get install graphviz'. Diagrams are written as .dot files until then."; exit 0; fi; \
	echo "installing Graphviz (Debian package graphviz) for the diagrams"; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq graphviz >/dev/null

clean:
	rm -rf $(VENV) $(VENV1) $(OUT) runs .pytest_cache
