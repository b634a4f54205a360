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

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(CLI) demo-data --out $(DEMO_DIR)
	$(CLI) ingest --events $(DEMO_DIR)/events.parquet --items $(DEMO_DIR)/items.csv --db $(DB_PATH)
	$(CLI) train als --db $(DB_PATH) --output $(MODEL_DIR)
	$(CLI) serve --model-dir $(MODEL_DIR) --db $(DB_PATH) --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/als_end_to_end.py
	$(PY) bench/index_recall.py
	$(PY) bench/serving_load.py
	$(PY) bench/online_latency.py
	$(PY) bench/train_times.py
	$(PY) bench/tune.py
	$(PY) bench/quality.py --tune als ease --tune-trials 20
	$(PY) bench/quality.py --split leave-last --name quality_leave_last

clean:
	rm -rf $(VENV) data artifacts bench/work .pytest_cache .mypy_cache .ruff_cache
