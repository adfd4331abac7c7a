PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
SAMPLE ?= resources/samples/sample.jpg
# pip runs only when pyproject.toml changed since this Python environment last installed it (a stamp
# per environment): a second `make run` opens the window at once instead of reinstalling for 6 s
ENV_ID := $(shell $(PYTHON) -c "import hashlib, sys; print(hashlib.sha1(sys.prefix.encode()).hexdigest()[:10])")
STAMP := .make/installed-$(ENV_ID)
DEV_STAMP := .make/installed-dev-$(ENV_ID)

.PHONY: install install-dev run test lint bench

$(STAMP): pyproject.toml
	$(PIP) install -q -e .
	@mkdir -p $(@D) && touch $@

$(DEV_STAMP): pyproject.toml
	$(PIP) install -q -e ".[dev]"
	@mkdir -p $(@D) && touch $@ $(STAMP)

install: $(STAMP)

install-dev: $(DEV_STAMP)

run: install
	$(PYTHON) -m isegformer_app.qt_check
	$(PYTHON) -m isegformer_app.main $(SAMPLE)

test: install-dev
	$(PYTHON) -c "from importlinter.cli import lint_imports_command; lint_imports_command()" --no-cache
	QT_QPA_PLATFORM=offscreen $(PYTHON) -m pytest -q

lint: install-dev
	$(PYTHON) -m ruff check .

bench: install
	$(PYTHON) -m model.benchmarks.latency
