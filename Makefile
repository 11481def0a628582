# The README's two commands: `make demo` runs the main job, `make test` runs the checks;
# `make unit` runs only the unit tier (tests/unit: no server, a few seconds).
# All create .venv when missing and install the locked dependencies first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PAGILA_STACK_DIR ?= $(CURDIR)/.stack

.PHONY: demo test unit lint bench lock clean

$(STAMP): requirements.lock pyproject.toml devstack/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e . -e ./devstack
	# bytecode written once, as a wheel's install does: an editable install writes none, and
	# where PYTHONDONTWRITEBYTECODE is set every start compiles our modules (0.08 s a submit)
	$(BIN)/python -m compileall -q pagila_tasks devstack/pagila_stack
	touch $(STAMP)

## demo: stack up, load Pagila, replicate it, print the verification table, stack down (KEEP=1 keeps it)
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

## test: ruff, then the whole pytest suite (tests/{unit,integration,e2e,faults}) against throwaway servers
test: $(STAMP) lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## unit: the unit tier alone (tests/unit): no PostgreSQL, Redis or worker needed, none started
unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## bench: the speed/memory benchmark (see docs/benchmarks.md)
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lock:
	rm -rf /tmp/pagila-lock-venv && $(PYTHON) -m venv /tmp/pagila-lock-venv
	/tmp/pagila-lock-venv/bin/pip install -q '.[test,embedded]'
	/tmp/pagila-lock-venv/bin/pip freeze --exclude pagila-tasks > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	-$(BIN)/pagila-stack down --purge
	rm -rf $(VENV) .stack
