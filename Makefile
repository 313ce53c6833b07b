# Two entry points: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-output

.PHONY: demo test lint bench bench-methods clean frontend docs figures wheel

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip >/dev/null

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e . 
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[test,ray]'
	$(BIN)/pip install --no-deps 'torch-lucent==0.1.8'  # the InceptionV1 reference for tests (its pins serve its optvis)
	$(BIN)/pip install --no-deps 'horama==0.3.0' einops  # MACO's reference for tests (einops: its import)
	touch $(VENV)/.installed $@

# faccent, feature accentuation's reference, for benchmarks/methods.py: its pins (lucent 0.1.0, kornia 0.4.1) clash.
$(VENV)/.installed-reference: $(VENV)/.installed-test
	$(BIN)/pip install --no-deps 'faccent==1.0.3'
	$(BIN)/pip install kornia einops decorator imageio ipywidgets
	touch $@

# The participant page (jsPsych), bundled into the package's static files; rebuilt when its sources or lock change.
STATIC := src/vizprobe/experiment/static
FRONTEND_SRC := frontend/package.json frontend/package-lock.json frontend/build.mjs $(wildcard frontend/src/*)

frontend: $(STATIC)/index.html

$(STATIC)/index.html: $(FRONTEND_SRC)
	cd frontend && npm ci --no-audit --no-fund && npm run build

demo: $(VENV)/.installed frontend
	$(BIN)/vizprobe demo --out $(DEMO_OUT)

docs: $(VENV)/.installed-test
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

figures: $(VENV)/.installed-test frontend
	$(BIN)/python docs/figures.py --demo $(DEMO_OUT)

wheel: $(VENV)/.installed frontend
	$(BIN)/python -m pip wheel --no-deps --no-build-isolation -w dist .

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks docs setup.py
	$(BIN)/ruff format --check src tests benchmarks docs setup.py

test: $(VENV)/.installed-test lint frontend
	$(BIN)/pytest

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/scan.py

bench-methods: $(VENV)/.installed-reference
	$(BIN)/python benchmarks/methods.py maco
	$(BIN)/python benchmarks/methods.py accentuation

clean:
	rm -rf $(VENV) $(DEMO_OUT) build src/*.egg-info
