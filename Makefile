# Two commands set up and exercise a fresh machine:
#   make demo   -- create .venv, install cmhash, train+evaluate on the embedded synthetic benchmark
#   make test   -- create .venv, install cmhash with test extras, run the test suite
# torch is pinned here (a bare `torch` would pull a multi-GB CUDA build); see DEVELOPERS.md.

PYTHON ?= python3
VENV   ?= .venv
TORCH_PIN ?= torch==2.13.0
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.cmhash-installed

.PHONY: demo test venv bench bench-full clean-venv results

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

# Benchmarks print figures (they assert nothing). `bench` takes about 2 minutes on 2 idle cores (measured 1 min 57 s);
# `bench-full` adds 10M-code search, Milvus and the slow torch rows (about an hour).
bench: $(STAMP)
	$(PY) benchmarks/metrics_bench.py
	$(PY) benchmarks/train_bench.py
	$(PY) benchmarks/features_bench.py --quick
	$(PY) benchmarks/search_bench.py --sizes 1000000 --backends raw-faiss faiss numpy --no-recall

bench-full: $(STAMP)
	$(PY) benchmarks/metrics_bench.py
	$(PY) benchmarks/train_bench.py --compare
	$(PY) benchmarks/features_bench.py
	$(PY) benchmarks/search_bench.py --overhead
	$(PY) benchmarks/data_load_bench.py --nuswide-rows 186577
	$(PY) benchmarks/fit_scaling_bench.py --sizes 500,1000,2000,4000,8000 --budget 120
	$(PY) benchmarks/serve_bench.py

clean-venv:
	rm -rf $(VENV)
