# Every target sets itself up: a .venv with the CPU build of torch first (a bare `torch`
# requirement would pull a multi-GB CUDA build), then this package with its dev extra.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH := torch==2.13.0

.PHONY: test demo bench paper clean-venv

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	# The official NISQA code pins an old torch: install it without its dependencies
	# (its real imports are in our own dependency list).
	$(PY) -m pip install -q --no-deps 'nisqa==2.0.post2'
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

demo: $(VENV)/.installed
	$(VENV)/bin/mal demo $(DEMO_ARGS)

bench: $(VENV)/.installed
	$(PY) benchmarks/run_all.py

paper: $(VENV)/.installed
	$(PY) recipes/paper_cpu/run.py $(PAPER_ARGS)

clean-venv:
	rm -rf $(VENV)
