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

# Figures of the demo run for docs/demo/ (run `make demo` first): pass@k of the warm-up model and
# of the trained one on the demo's 100 held-out problems, then `flexent report` on the run.
DEMO_EVAL = -b runs/.flexent-cache/countdown_test.jsonl --reward countdown \
	--reward-param last_line_fallback=true --chat no --samples 16 --temperature 1.0 \
	--top-p 1.0 --top-k 0 --max-new-tokens 8 --no-progress --overwrite
demo-docs: setup
	$(VENV)/bin/flexent eval $(firstword $(wildcard runs/.flexent-cache/countdown-char-qwen2-*)) \
		$(DEMO_EVAL) --out runs/demo/eval-start
	$(VENV)/bin/flexent eval runs/demo/final $(DEMO_EVAL) --out runs/demo/eval
	$(VENV)/bin/flexent report runs/demo --out docs/demo \
		--eval-results warm-up=runs/demo/eval-start/results.json

bench: setup
	$(PY) benchmarks/bench_losses.py
	$(PY) benchmarks/bench_entropy.py
	$(PY) benchmarks/bench_rewards.py
	$(PY) benchmarks/bench_bf16_cpu.py

clean-venv:
	rm -rf $(VENV)
