# flexent: `make demo` runs the main job, `make test` runs lint, type check and tests.
# Both set up .venv themselves: CPU torch 2.13.0 first, then the package with the
# constraints file so nothing replaces that torch build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.flexent-installed

.PHONY: setup test lint typecheck unit demo demo-docs bench clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

typecheck: setup
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest -q

test: lint typecheck unit

demo: setup
	$(VENV)/bin/flexent demo

# docs/demo/ from the demo run (run `make demo` first): its summary.md and report/ (the arms
# side by side: entropy, pass@k, clip fractions, E1-E4 diagnostics, with their numbers).
demo-docs:
	test -f runs/demo/summary.md || { echo "run make demo first"; exit 2; }
	rm -rf docs/demo
	mkdir -p docs/demo
	cp runs/demo/summary.md docs/demo/summary.md
	cp -r runs/demo/report docs/demo/report

bench: setup
	$(PY) benchmarks/bench_losses.py
	$(PY) benchmarks/bench_entropy.py
	$(PY) benchmarks/bench_rewards.py
	$(PY) benchmarks/bench_bf16_cpu.py
	$(PY) benchmarks/bench_trl_step.py

clean-venv:
	rm -rf $(VENV)
