# Two commands for a newcomer: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench chaos clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sms-worker demo

# Tests in parallel processes: most of their time is spent waiting on child processes, servers
# and timeouts, not on the CPU. Each process has its own PostgreSQL database, Redis database,
# RabbitMQ vhost and ports (see tests/fixtures), so two do not meet.
PYTEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/ruff check worker tests bench
	$(BIN)/mypy
	$(BIN)/pytest -n $(PYTEST_WORKERS)

lint: $(STAMP)
	$(BIN)/ruff check worker tests bench
	$(BIN)/ruff format --check worker tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench

# The fault suite at full size: a few thousand messages per case (`make test` runs a few hundred).
chaos: $(STAMP)
	CHAOS_MESSAGES=3000 $(BIN)/pytest tests/chaos

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
