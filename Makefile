# Set-up is part of every target: the local virtual environment .venv is created or reused, and refreshed when
# pyproject.toml or the pinned constraints change. torch is installed first, pinned, so that nothing pulls a
# multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: run reproduce-full ablations benchmarks ph2 test test-slow bench bench-quick clean

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/explearn reproduce paper --preset quick --out reports/paper

reproduce-full: $(STAMP)
	$(BIN)/explearn reproduce paper --preset full --out reports/paper-full

ablations: $(STAMP)
	$(BIN)/explearn reproduce ablations --preset quick --out reports/ablations

benchmarks: $(STAMP)
	$(BIN)/explearn reproduce benchmarks --preset quick --out reports/benchmarks

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

ph2: $(STAMP)
	$(BIN)/explearn reproduce ph2 --preset quick --out reports/ph2-quick

bench: $(STAMP)
	$(BIN)/explearn bench --json benchmarks/latest.json

bench-quick: $(STAMP)
	$(BIN)/explearn bench --quick

clean:
	rm -rf $(VENV) runs .pytest_cache
