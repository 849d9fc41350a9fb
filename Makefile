# Every target sets itself up: a .venv with the CPU build of torch first (a bare `torch`
# requirement would pull a multi-GB CUDA build), then this package with its dev extra.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH := torch==2.13.0

.PHONY: test demo bench paper paper-pretrained paper-pretrained-gated paper-pretrained-gated-dfn2 clean-venv

# The package and its runtime dependencies (enough for `make demo`).
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e .
	# The official NISQA code pins an old torch: install it without its dependencies
	# (its real imports are in our own dependency list).
	$(PY) -m pip install -q --no-deps 'nisqa==2.0.post2'
	# DistillMOS: its weights and xls-r-sqa's transformer head, without their dependencies
	# (torchaudio among them, which does not work with our torch; mal runs the network itself).
	$(PY) -m pip install -q --no-deps 'distillmos==0.9.1' 'xls-r-sqa==0.1.0'
	touch $@

# Plus the test / SSL / ONNX / peer extras.
$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

test: $(VENV)/.installed-dev
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

demo: $(VENV)/.installed
	$(VENV)/bin/mal demo $(DEMO_ARGS)

bench: $(VENV)/.installed-dev
	$(PY) benchmarks/run_all.py

paper: $(VENV)/.installed-dev
	$(PY) recipes/paper_cpu/run.py $(PAPER_ARGS)

# Model-as-Loss fine-tuning of the public DeepFilterNet2/3 (about 150 min on 2 cores).
paper-pretrained: $(VENV)/.installed-dev
	$(PY) recipes/paper_pretrained/run.py $(PAPER_ARGS)

# The same ablation for DeepFilterNet3 on quality-gated targets (issue 28): the clean utterances
# whose DistillMOS reaches 4.0 only (the threshold chosen from the training speech's scores alone:
# it keeps 85% of the LibriSpeech train-clean utterances and 5% of speechocean762); the same split, steps, seeds and schedule.
GATE ?= DistillMOS:4.0
paper-pretrained-gated: $(VENV)/.installed-dev
	$(PY) recipes/paper_pretrained/run.py --families DFN3 --variants baseline-continued,mal-frozen-fe,mal-frozen,mal-dynamic \
		--gate $(GATE) --work runs/paper_pretrained_gated --out results/paper_pretrained_gated $(PAPER_ARGS)

# The same for DeepFilterNet2 (its own report; the default model is not changed by it).
paper-pretrained-gated-dfn2: $(VENV)/.installed-dev
	$(PY) recipes/paper_pretrained/run.py --families DFN2 --variants baseline-continued,mal-frozen-fe,mal-frozen,mal-dynamic \
		--gate $(GATE) --no-ship --work runs/paper_pretrained_gated_dfn2 --out results/paper_pretrained_gated_dfn2 $(PAPER_ARGS)

clean-venv:
	rm -rf $(VENV)
