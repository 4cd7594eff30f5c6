# The two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
PY := .venv/bin/python

.PHONY: setup demo test lint bench airflow-ui clean

$(UV):
	python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv

setup: | $(UV)
	$(UV) sync --frozen

demo: setup
	$(PY) -m pipelines.retail.demo

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest

# Seed scale (10,247 SKUs x 12 warehouses); BENCH_ARGS="--skus 1000 --warehouses 4" for a quick look
bench: setup
	$(PY) -m benchmarks.ml_bench $(BENCH_ARGS) --out data/bench_ml.json

lint: setup
	$(PY) -m ruff check .

airflow-ui: setup
	$(PY) -c "from lakehouse.airflow_env import airflow_env, airflow; airflow('standalone', env=airflow_env(), quiet=False)"

clean:
	rm -rf data .airflow
