# Every target creates and uses its own virtual environment in .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export BENTOML_HOME ?= $(CURDIR)/.bentoml_home
export BENTOML_DO_NOT_TRACK ?= True

.PHONY: install demo test test-fast lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Train the digits example if needed and serve it guarded on http://127.0.0.1:3000
demo: $(STAMP)
	$(BIN)/python examples/digits/setup_demo.py
	cd examples/digits && ../../$(BIN)/bentoml serve service:DigitsClassifier --host 127.0.0.1 --port $${PORT:-3000}

## Whole suite: unit, in-process and real-server integration tests
test: $(STAMP)
	$(BIN)/python -m pytest tests

## Unit and in-process tests only
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -m "not integration"

lint: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks examples
	$(BIN)/ruff check --fix src tests benchmarks examples

## The five benchmarks (about an hour on 2 cores); figures go to benchmarks/results/.
## load.py's HTTP part needs redis-server, cycles.py needs valgrind.
bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/detection.py --targets 1 --cost
	$(BIN)/python benchmarks/efficacy.py
	@if command -v redis-server >/dev/null; then $(BIN)/python benchmarks/load.py; \
	else echo "benchmarks/load.py: no redis-server, in-process figures only"; \
	$(BIN)/python benchmarks/load.py --spend-only; fi
	@if command -v valgrind >/dev/null; then $(BIN)/python benchmarks/cycles.py; \
	else echo "skipping benchmarks/cycles.py: it needs valgrind (apt-get install valgrind)"; fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist src/*.egg-info
