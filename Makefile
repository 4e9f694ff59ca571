# All set-up is done by the targets themselves, on a fresh machine too.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-out

.PHONY: setup test lint demo bench tools clean serve

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch first, pinned: 2.13.0 is the CPU build on this machine's disk (an unpinned torch pulls CUDA).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q torch==2.13.0
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) tools

# External DICOM tools used by tests (dcmtk, dicom3tools); installed when missing and possible.
# Then the OHIF viewer's built app for its browser test (npm pack, pinned; docs/dicomweb.md).
tools:
	@bash scripts/ensure-tools.sh
	@bash scripts/ensure-viewer.sh

# Static checks first (fail fast): ruff (lint rules in pyproject.toml) and mypy (its `files`).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# The slow real-process tests run in a second pytest beside the others (scripts/run-tests.sh).
test: setup lint
	PY=$(BIN)/python bash scripts/run-tests.sh

# The main job on an embedded default: a synthetic study pair analysed end to end (no Redis).
demo: setup
	rm -rf $(DEMO_OUT)
	$(BIN)/followup synth --out $(DEMO_OUT)/pair --scenario residual --seed 1
	$(BIN)/followup analyze --baseline $(DEMO_OUT)/pair/baseline --followup $(DEMO_OUT)/pair/followup \
		--procedure $(DEMO_OUT)/pair/procedure.json --out $(DEMO_OUT)/report
	@echo "open $(DEMO_OUT)/report/report.html in a browser (ground truth: $(DEMO_OUT)/pair/truth.json)"

# The service without Docker (listener, realtime and batch workers, API) on a local Redis.
serve: setup
	bash scripts/serve.sh

bench: setup
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_decode.py
	$(BIN)/python benchmarks/bench_analyze.py
	$(BIN)/pip install --disable-pip-version-check -q -e '.[bench]'
	$(BIN)/python benchmarks/bench_register.py
	$(BIN)/python benchmarks/accuracy.py
	$(BIN)/python benchmarks/bench_service.py
	$(BIN)/python benchmarks/bench_load.py
	$(BIN)/python benchmarks/bench_listener.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .mypy_cache .ruff_cache
