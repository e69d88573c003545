# One command gates every change: `make check` (format, lint, types, tests).
PY ?= python3

.PHONY: check lint types test test-all bench demo

check: lint types test

lint:
	$(PY) -m ruff format --check src tests bench
	$(PY) -m ruff check src tests bench

types:
	$(PY) -m mypy

test:
	$(PY) -m pytest -q

bench:
	$(PY) bench/relay_bench.py

demo:
	tidings demo
