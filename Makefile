PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
SAMPLE ?= resources/samples/sample.jpg

.PHONY: install install-dev run test lint bench

install:
	$(PIP) install -q -e .

install-dev:
	$(PIP) install -q -e ".[dev]"

run: install
	$(PYTHON) -m isegformer_app.main $(SAMPLE)

test: install-dev
	$(PYTHON) -c "from importlinter.cli import lint_imports_command; lint_imports_command()" --no-cache
	QT_QPA_PLATFORM=offscreen $(PYTHON) -m pytest -q

lint: install-dev
	$(PYTHON) -m ruff check .

bench: install
	$(PYTHON) -m model.benchmarks.latency
