# Two commands on a fresh machine (each sets up what it needs by itself):
#   make run    creates/reuses .venv, installs the suite (CPU torch), Graphviz if missing, runs `ppl demo`
#   make test   the same set-up, then the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
OUT    ?= demo-out
# the tests on every core (at most four workers), a test file's tests in one worker (its module fixtures built once)
PYTEST_ARGS ?= -n auto --maxprocesses 4 --dist loadfile

.PHONY: run test install graphviz clean

run: install graphviz
	$(VENV)/bin/ppl demo --out $(OUT)

test: install graphviz
	$(PY) -m pytest $(PYTEST_ARGS)

install: $(STAMP)

# constraints.txt pins the CPU build of torch: an unpinned torch pulls several GB of CUDA packages.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

graphviz:
	@if command -v dot >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; \
	else echo "Graphviz 'dot' is missing and cannot be installed without root: run 'sudo apt-get install graphviz'. Diagrams are written as .dot files until then."; exit 0; fi; \
	echo "installing Graphviz (Debian package graphviz) for the diagrams"; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq graphviz >/dev/null

clean:
	rm -rf $(VENV) $(OUT) runs .pytest_cache
