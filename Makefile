# Two commands do all set-up on a fresh machine (Python 3.11+ and git): `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-long bench sandbox lint clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "backd_ops needs Python 3.11+; set PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: $(STAMP)  ## the main job: sandbox + demo ledger → reconciliation notebook via papermill
	$(BIN)/backd-ops demo

test: $(STAMP)  ## the suite CI runs (under 10 minutes on 2 cores)
	$(BIN)/python -m pytest -q --durations=12

test-long: $(STAMP)  ## the long chaos/crash profile as well
	$(BIN)/python -m pytest -q -m "slow or not slow"

bench: $(STAMP)
	$(BIN)/python bench/bench_bulk.py
	$(BIN)/python bench/bench_reconcile.py --track
	$(BIN)/python bench/bench_incremental.py
	$(BIN)/python bench/bench_notebook.py
	$(BIN)/python bench/bench_ratelimit.py

sandbox: $(STAMP)
	$(BIN)/backd-ops sandbox --port 8765 --orders 500

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache out
