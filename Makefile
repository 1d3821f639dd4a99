# Two commands for a fresh machine: `make run` and `make test`. Each sets itself up.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
PORT ?= 5000
SERVE_PORT ?= 8000
FLASK := $(BIN)/flask --app florent

.PHONY: install run serve test test-fast bench lint clean

install: $(VENV)/.installed

# Re-install when the dependencies change.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: install
	$(FLASK) db upgrade
	@echo
	@echo "Florent is starting on http://127.0.0.1:$(PORT) (embedded PostgreSQL unless DATABASE_URL is set)."
	@echo "Get a development token, then create a conversation:"
	@echo "  TOKEN=\$$($(FLASK) dev-token --user user_dev --org org_dev)"
	@echo "  curl -i -X POST http://127.0.0.1:$(PORT)/api/florent/conversations \\"
	@echo "       -H \"Authorization: Bearer \$$TOKEN\" -H 'Content-Type: application/json' -d '{}'"
	@echo
	$(FLASK) run --host 127.0.0.1 --port $(PORT)

test: install
	bash scripts/ensure-test-packages.sh
	$(BIN)/pytest

# Everything but the slow tests: no browser, no PostgreSQL restarts, no gunicorn, no
# Redis, PgBouncer or nginx, no large data sets.
test-fast: install
	$(BIN)/pytest -m "not slow"

# Production mode locally: gunicorn with gunicorn.conf.py, embedded PostgreSQL and a
# loopback JWKS for the development key (it prints a token).
serve: install
	$(BIN)/python scripts/local_stack.py --port $(SERVE_PORT)

# Figures, not tests: wrk against gunicorn beside a bare-Flask baseline.
bench: install
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/admin_pages.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) instance .pytest_cache
