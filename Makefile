# Two commands do everything on a fresh machine with Python 3.11+:
#   make run    set up, migrate and serve on http://localhost:8000 (sandbox mode without credentials)
#   make test   run the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: run test lint serve bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

.env:
	$(PYTHON) -c "import re, secrets, pathlib; \
	text = pathlib.Path('.env-sample').read_text(); \
	text = re.sub(r'(?m)^SECRET_KEY=$$', 'SECRET_KEY=' + secrets.token_urlsafe(50), text); \
	text = re.sub(r'(?m)^TOKEN_ENCRYPTION_KEY=$$', 'TOKEN_ENCRYPTION_KEY=' + secrets.token_hex(32), text); \
	pathlib.Path('.env').write_text(text)"
	chmod 600 .env
	@echo "Created .env from .env-sample with a fresh SECRET_KEY and TOKEN_ENCRYPTION_KEY."

run: $(VENV)/.installed .env
	$(PY) manage.py migrate --no-input
	@echo ""
	@echo "  Open http://localhost:$(PORT)/  (admin login: $(PY) manage.py createsuperuser)"
	@echo ""
	$(PY) manage.py runserver 127.0.0.1:$(PORT)

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest

# Production serving: gunicorn (behind a TLS-terminating proxy), static files by WhiteNoise.
# Configure through the environment (or .env): DEBUG off, SECRET_KEY, TOKEN_ENCRYPTION_KEY,
# KLAVIYO_CLIENT_ID/SECRET, ALLOWED_HOSTS, DATABASE_URL. Worker processes, threads and the
# worker class come from WEB_CONCURRENCY, GUNICORN_THREADS and GUNICORN_WORKER_CLASS, read by
# klaviyo_site/gunicorn.conf.py (defaults 2, 4, gthread; the bench serves the same way).
BIND ?= 127.0.0.1:$(PORT)

serve: $(VENV)/.installed
	$(PY) manage.py collectstatic --no-input --verbosity 0
	$(PY) manage.py migrate --no-input
	$(VENV)/bin/gunicorn klaviyo_site.wsgi --config klaviyo_site/gunicorn.conf.py --bind $(BIND)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Benchmarks against a local fake Klaviyo, and the Node example side by side when node is
# installed (bench/README.md); PostgreSQL when DATABASE_URL names one. Options through
# BENCH_ARGS, e.g. make bench BENCH_ARGS="--only compare".
BENCH_ARGS ?=

bench: $(VENV)/.installed
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) staticfiles test-artifacts .pytest_cache .ruff_cache
