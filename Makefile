# The two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
PY := .venv/bin/python

.PHONY: setup browser demo demo-next-day test lint bench airflow-ui report status clean deploy destroy

$(UV):
	python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv

# --compile-bytecode: machines that set PYTHONDONTWRITEBYTECODE (these do) otherwise compile every
# library on every import; each Airflow task process paid ~4 s for it (airflow.sdk 7.5 s -> 2.7 s,
# pandera.polars 3.6 s -> 1.5 s). ~35 s once on a clean clone, ~1.5 s when up to date.
setup: | $(UV)
	$(UV) sync --frozen --compile-bytecode
	@$(PY) -m compileall -q lakehouse pipelines dags tests benchmarks >/dev/null
	@$(MAKE) --no-print-directory browser
	@command -v checkov >/dev/null 2>&1 || [ -x "$(HOME)/.local/bin/checkov" ] || \
	  $(UV) tool install --quiet "checkov==3.3.30" || echo "note: checkov not installed; its test skips locally"

# Debian's chromium (browser tests of the Airflow UI and the health report) and docker-compose
# (validates docker-compose.yml; no Docker engine needed); root installs them
browser:
	@for pkg in chromium docker-compose; do \
	  command -v $$pkg >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    { apt-get install -y -q $$pkg >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $$pkg >/dev/null 2>&1; }; }; } || \
	  echo "note: $$pkg is not installed; its tests skip locally and fail under CI=true"; \
	done

# SCALE=seed: 10,247 SKUs x 12 warehouses, two years of history loaded through Airflow a month per
# run; SCALE=small: 24 x 2, a quick look. Each in a home of its own (data/seed, data/small);
# demo-next-day, airflow-ui, report and status take it too
SCALE ?= demo
SCALE_DIR = $(if $(filter-out demo,$(SCALE)),data/$(SCALE),)
SCALE_HOME = $(if $(SCALE_DIR),--home $(SCALE_DIR),)
demo: setup
	$(PY) -m pipelines.retail.demo --scale $(SCALE)

# 2 workers: half the suite waits on Airflow's scheduler or subprocesses, so 2 cores overlap
# well; whole-Airflow tests take turns (a lock, tests/conftest.py whole_airflow) and the other
# worker steals queued tests meanwhile. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal --durations=15

# Seed scale (10,247 SKUs x 12 warehouses); BENCH_ARGS="--skus 1000 --warehouses 4" for a quick look
# docs/benchmarks.md: TPC-H (written first), then the seed-scale retail growth curve (28, 365
# and 730 days of history, loaded a month per run; the daily run and Airflow's overhead), then
# backfill throughput (each appends its section)
TPCH_SCALE ?= 1
bench: setup
	$(PY) -m benchmarks.tpch_bench --scale $(TPCH_SCALE)
	$(PY) -m benchmarks.retail_bench --history-days 28,365,730 --load-step-days 30
	$(PY) -m benchmarks.backfill_bench
	$(PY) -m benchmarks.silver_growth
	$(PY) -m benchmarks.quality_bench $(QUALITY_BENCH_ARGS) --out data/bench_quality.json
	$(PY) -m benchmarks.ml_bench $(BENCH_ARGS) --out data/bench_ml.json
	$(PY) -m benchmarks.forecast_bench $(FORECAST_BENCH_ARGS)

lint: setup
	$(PY) -m ruff check .

# one more simulated day after the demo's last, run through Airflow (repeatable: a day each time)
demo-next-day: setup
	$(PY) -m pipelines.retail.demo --next-day $(SCALE_HOME)

# the supplier API and airflow standalone on the demo's home, bound to loopback; Ctrl-C stops both
airflow-ui: setup
	$(PY) -m pipelines.retail.demo --ui $(SCALE_HOME)

# the HTML health dashboard and the terminal status of the demo lake
report: setup
	$(if $(SCALE_DIR),LAKEHOUSE_HOME=$(SCALE_DIR)) $(PY) -m lakehouse.cli report

status: setup
	$(if $(SCALE_DIR),LAKEHOUSE_HOME=$(SCALE_DIR)) $(PY) -m lakehouse.cli status

# Terraform per environment (terraform/envs/$(ENV)): local runs here with the bundled binary;
# aws, gcp and azure need their registry providers and cloud credentials.
ENV ?= local
deploy: setup
	$(PY) terraform/tf.py apply $(ENV)

destroy: setup
	$(PY) terraform/tf.py destroy $(ENV)

clean:
	rm -rf data .airflow
