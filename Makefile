# Linli: `make run` starts the whole system locally, `make test` tests it.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export LINLI_DATA_DIR ?= $(CURDIR)/var/data
# The Procfile's commands (gunicorn, celery, flask) come from the venv.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install run seed remove-demo lint test-prereqs test test-unit bench-prereqs bench bench-stages bench-matching chaos openapi translations translations-update clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Installs (again) only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed translations

translations: $(VENV)/.installed
	$(BIN)/pybabel compile -d services/common/translations

CATALOG := services/common/translations
translations-update: $(VENV)/.installed
	$(BIN)/pybabel extract -F babel.cfg -k N_ -k _l -o $(CATALOG)/messages.pot .
	$(BIN)/pybabel update -i $(CATALOG)/messages.pot -d $(CATALOG) --no-fuzzy-matching
	rm $(CATALOG)/messages.pot

.env:
	$(BIN)/python deploy/make_env.py .env.example .env

# An operator's environment outranks .env (deploy/with_env.py): e.g.
# `LINLI_DEMO=0 make run` runs without demo data.
WITH_ENV := $(BIN)/python deploy/with_env.py

seed: install .env
	$(WITH_ENV) sh deploy/init-all.sh

# make run is the local demo: demo data, on this machine only.
run: export LINLI_DEMO ?= 1
run: seed
	$(WITH_ENV) $(BIN)/python deploy/need_redis.py
	$(WITH_ENV) $(BIN)/python deploy/urls.py
	$(WITH_ENV) $(BIN)/honcho start -e /dev/null

# Removes every demo staff account and demo volunteer (and the demo station),
# and the demo register.
remove-demo: install .env
	$(WITH_ENV) sh deploy/remove-demo.sh

lint: install
	$(BIN)/ruff check services tests bench

# Debian's docker-compose, Chromium and CJK fonts (deploy/test-prereqs.sh).
test-prereqs:
	sh deploy/test-prereqs.sh

# One test process per core (TEST_PROCESSES=1 for one); a module stays on
# one process, since the integration modules each own a Redis database.
TEST_PROCESSES ?= 2
test: install lint test-prereqs
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist loadfile $(PYTEST_ARGS)

test-unit: install
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

# Debian's wrk, the load generator at saturation (deploy/bench-prereqs.sh).
bench-prereqs:
	sh deploy/bench-prereqs.sh

# The whole path against its baselines (both databases, under 30 minutes in
# all); prints a summary and writes bench/results/latest.json, a Markdown
# report and a plot. Asserts nothing. bench/run.py says what each figure
# measures; `python -m bench.run --backend sqlite --quick` tries the harness.
bench: install bench-prereqs
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python -m bench.run --backend sqlite
	$(BIN)/python -m bench.run --backend postgresql

# Prints figures and writes bench/results/matching.json; asserts nothing about time.
# What each step of one request costs, in-process (bench/stages.py).
bench-stages: install
	$(BIN)/python -m bench.stages

bench-matching: install
	$(BIN)/python -m bench.matching

# The long chaos run: make chaos N=2000 [BACKEND=postgresql]
N ?= 2000
BACKEND ?= sqlite
chaos: install
	$(BIN)/python -m tests.chaos --n $(N) --backend $(BACKEND)

# Refresh the committed OpenAPI snapshots after changing an API.
openapi: install
	$(BIN)/python deploy/openapi_snapshot.py

clean:
	rm -rf var $(VENV)
