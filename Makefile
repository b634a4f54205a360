# RecSys-Lite: `make demo` sets everything up and serves; `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/recsys-lite
STAMP := $(VENV)/.installed
DEMO_DIR ?= data/demo
DB_PATH ?= data/recsys.db
MODEL_DIR ?= artifacts/current
HOST ?= 127.0.0.1
PORT ?= 8000
export OPENBLAS_NUM_THREADS := 1

.PHONY: deps install widget demo test lint audit bench clean

# System components (Debian packages) the product and its tests start: installed when this can
# (root or sudo), otherwise reported; tests needing a missing one are skipped with the reason.
deps:
	@scripts/deps.sh

# the C source too: an edited kernel (src/recsys_lite/ranking/_reasons.c) is rebuilt
$(STAMP): pyproject.toml setup.py $(wildcard src/recsys_lite/*/*.c src/recsys_lite/*.h)
	@echo "==> Python environment in $(VENV): the first time takes about 3 minutes (torch, faiss, implicit, ...)"
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --progress-bar on -e ".[dev,all]"
	touch $(STAMP)

install: $(STAMP)

# The widget (widget/): npm ci from the committed lockfile when it changed, then the package, the
# script-tag embed and the demo shop served at /demo. Without npm it says so and goes on.
WIDGET_STAMP := widget/node_modules/.installed
$(WIDGET_STAMP): widget/package-lock.json
	cd widget && npm ci --no-audit --no-fund
	touch $@

# rebuilt only when a source changed
WIDGET_BUILT := widget/dist-demo/.built
WIDGET_SOURCES := $(shell find widget/src widget/demo widget/scripts -type f 2>/dev/null) \
	$(wildcard widget/*.json widget/*.ts)
$(WIDGET_BUILT): $(WIDGET_STAMP) $(WIDGET_SOURCES)
	cd widget && npm run --silent build
	touch $@

widget:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory $(WIDGET_BUILT); \
	else echo "widget: npm is missing, so no /demo shop and no widget tests (make deps says more)"; fi

demo: deps $(STAMP) widget
	@echo "==> 1/4 a synthetic shop in $(DEMO_DIR) (a few seconds)"
	$(CLI) demo-data --out $(DEMO_DIR)
	@echo "==> 2/4 ingest into $(DB_PATH) (a few seconds)"
	$(CLI) ingest --events $(DEMO_DIR)/events.parquet --items $(DEMO_DIR)/items.csv --db $(DB_PATH)
	@echo "==> 3/4 train ALS and the search index into $(MODEL_DIR) (about 30 seconds)"
	$(CLI) train als --db $(DB_PATH) --output $(MODEL_DIR)
	@echo "==> 4/4 serve (Ctrl-C stops it); the demo shop: http://$(HOST):$(PORT)/demo/"
	$(CLI) serve --model-dir $(MODEL_DIR) --db $(DB_PATH) --host $(HOST) --port $(PORT)

test: deps $(STAMP) widget
	@if command -v npm >/dev/null 2>&1; then cd widget && npm test; fi
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

# Known vulnerabilities in the installed packages (pip-audit); fails on any found.
audit: $(STAMP)
	@VENV=$(VENV) scripts/audit.sh

bench: $(STAMP)
	$(PY) bench/als_end_to_end.py
	$(PY) bench/index_recall.py
	$(PY) bench/vector_store.py
	$(PY) bench/serving_load.py
	$(PY) bench/serving_during_training.py
	$(PY) bench/online_latency.py
	$(PY) bench/train_times.py
	$(PY) bench/tune.py
	$(PY) bench/quality.py --tune als ease --tune-trials 20
	$(PY) bench/quality.py --split leave-last --name quality_leave_last
	$(PY) bench/search.py
	$(PY) bench/search_parts.py
	$(PY) bench/erasure.py
	$(PY) bench/ab_simulation.py
	$(PY) bench/spark_als.py
	$(PY) bench/scale.py
	$(PY) bench/diversity.py
	SEARCH_INDEX=off $(PY) bench/serving_filters.py
	$(PY) bench/search_filters.py
	$(PY) bench/online_state_redis.py
	$(PY) bench/tune_protocol.py
	$(PY) bench/ranker.py
	$(PY) bench/ranker_latency.py
	$(PY) bench/ranker_serving.py --workers 2
	$(PY) bench/fold_in.py
	$(PY) bench/events_load.py
	$(PY) bench/framework_overhead.py
	$(PY) bench/page_parts.py
	$(PY) bench/compiled_loops.py

clean:
	rm -rf $(VENV) data artifacts bench/work .pytest_cache .mypy_cache .ruff_cache
	rm -rf widget/node_modules widget/dist widget/dist-demo widget/test-artifacts
