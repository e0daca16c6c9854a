# Two commands set up and exercise a fresh machine:
#   make demo   -- create .venv, install cmhash, train+evaluate on the embedded synthetic benchmark
#   make test   -- create .venv, install cmhash with test extras, run the test suite
# torch is pinned here (a bare `torch` would pull a multi-GB CUDA build); see DEVELOPERS.md.

PYTHON ?= python3
VENV   ?= .venv
TORCH_PIN ?= torch==2.13.0
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.cmhash-installed

.PHONY: demo test venv bench clean-venv results

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23"
	$(PY) -m pip install --quiet $(TORCH_PIN) -e ".[all]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cmhash demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/metrics_bench.py

clean-venv:
	rm -rf $(VENV)
