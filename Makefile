# Two commands on a fresh machine with Python 3.11+: `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
# The newest Python 3.11+ on the machine (Django 6 needs 3.12; on 3.11 the 5.2 LTS is used).
PYTHON ?= $(shell for p in python3.14 python3.13 python3.12 python3.11 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo $$p; break; }; done)
HOST ?= 127.0.0.1
PORT ?= 8000
# `make run` is the embedded default: SQLite and kombu's filesystem broker, no services needed.
DEV_ENV := DEBUG=$${DEBUG:-1} SECRET_KEY=$${SECRET_KEY:-dev-only-insecure-key} \
	HUB_ALLOW_PRIVATE_TARGETS=$${HUB_ALLOW_PRIVATE_TARGETS:-1} \
	HUB_PUBLIC_URL=$${HUB_PUBLIC_URL:-http://$(HOST):$(PORT)}

.PHONY: install run token test lint format bench check-compose clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is required"; exit 1; }
	@echo "Creating $(VENV) with $$($(PYTHON) --version)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	@touch $@

run: install
	$(DEV_ENV) $(BIN)/python manage.py migrate --no-input
	@$(DEV_ENV) $(BIN)/python manage.py ensure_admin --url http://$(HOST):$(PORT)/admin/
	@echo "Receiving on http://$(HOST):$(PORT)/hooks/<source-slug>/  API: http://$(HOST):$(PORT)/api/v1/schema/ui/"
	$(DEV_ENV) $(BIN)/python scripts/run_dev.py $(HOST):$(PORT) .run/celerybeat-schedule

# An API token for make run's admin user, printed alone.
token: install
	@$(DEV_ENV) $(BIN)/python manage.py create_api_token admin | awk 'NR==1 {print $$NF}'

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_sizes.py
	$(BIN)/python scripts/browser_setup.py
	DJANGO_SETTINGS_MODULE=hub.settings_test $(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_sizes.py

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

check-compose: install
	$(BIN)/python scripts/check_compose.py

# Everything the targets above make; .broker, control, db.sqlite3* and celerybeat-schedule* are
# where older versions of `make run` left their files.
clean:
	rm -rf $(VENV) .venv-* .run test-artifacts .pytest_cache .ruff_cache .import_linter_cache \
		bench/.work bench/.venv-* \
		.broker control db.sqlite3 db.sqlite3-shm db.sqlite3-wal celerybeat-schedule*
	find . -name __pycache__ -type d -not -path "./.git/*" -prune -exec rm -rf {} +
