# crossfind: `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEMO_DB := .cache/demo-index

.PHONY: setup demo test test-fast browser-deps bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) data/make_sample.py data/sample
	$(VENV)/bin/crossfind index data/sample --db $(DEMO_DB)
	$(VENV)/bin/crossfind info --db $(DEMO_DB)
	@for q in "a cup of coffee" "a rocket launch" "a sleeping cat" "how to bake bread" "a siren wailing"; do \
		echo; echo "== $$q"; $(VENV)/bin/crossfind search "$$q" --db $(DEMO_DB) --k 3 || exit 1; \
	done

browser-deps:
	@bash scripts/ensure-chromium.sh

test: setup browser-deps
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not browser"

bench: setup
	$(PY) -m bench --json

clean:
	rm -rf $(DEMO_DB) data/sample
