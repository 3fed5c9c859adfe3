# crossfind: `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEMO_DB := .cache/demo-index

.PHONY: setup demo lint test test-fast browser-deps test-deps pg-deps bench clean

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
	@set -e; cf="$(VENV)/bin/crossfind"; db="--db $(DEMO_DB) --k 3"; \
	echo; echo '== "a cup of coffee", photos only'; $$cf search "a cup of coffee" --modality image $$db; \
	echo; echo '== "a galaxy full of stars", photos only'; $$cf search "a galaxy full of stars" --modality image $$db; \
	echo; echo '== "how to bake bread", everything'; $$cf search "how to bake bread" $$db; \
	echo; echo '== "a rocket launch", everything'; $$cf search "a rocket launch" $$db; \
	echo; echo '== "a siren wailing", sounds only'; $$cf search "a siren wailing" --modality audio $$db; \
	echo; echo '== photos like cat.jpg'; $$cf search --image data/sample/photos/cat.jpg --modality image $$db

browser-deps:
	@bash scripts/ensure-chromium.sh

test-deps: pg-deps
	@bash scripts/ensure-fonts.sh

# a PostgreSQL server for the catalog tests (apt-get as root when initdb is missing)
pg-deps:
	@bash scripts/ensure-postgres.sh

# ruff's rules and mypy's settings are in pyproject.toml
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: setup lint browser-deps test-deps
	$(PY) -m pytest -q

test-fast: setup test-deps
	$(PY) -m pytest -q -m "not slow and not browser"

bench: setup
	$(PY) -m bench --json

clean:
	rm -rf $(DEMO_DB) data/sample
