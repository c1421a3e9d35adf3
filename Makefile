# Two commands do everything on a fresh machine with Python 3.11+:
#   make run    set up (runtime packages only), migrate and serve on http://localhost:$(PORT)
#               (sandbox mode without credentials)
#   make test   add the development tools (pytest, Playwright, ruff...) and run lint + the whole suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# One port everywhere: `make run PORT=8951` serves there and writes PORT=8951 into .env, so
# that `manage.py shell` and every command reach the sandbox this server serves. Without
# PORT on the command line, the one in .env is used (8000 by default).
PORT ?= $(or $(shell sed -n 's/^PORT=//p' .env 2>/dev/null | tail -n 1),8000)

.PHONY: run test lint serve bench conformance clean

# Runtime packages: what `make run` and `make serve` need.
$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# Development tools on top: what `make test`, `make lint` and `make bench` need.
$(VENV)/.installed: $(VENV)/.runtime requirements-dev.txt
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

run: $(VENV)/.runtime .env
	$(PY) -c "import re, pathlib; env = pathlib.Path('.env'); text = env.read_text(); \
	line = re.compile(r'(?m)^PORT=.*$$'); \
	env.write_text(line.sub('PORT=$(PORT)', text) if line.search(text) else text.rstrip() + '\nPORT=$(PORT)\n')"
	$(PY) manage.py migrate --no-input
	@echo ""
	@echo "  Open http://localhost:$(PORT)/  (admin login: $(PY) manage.py createsuperuser)"
	@echo ""
	$(PY) manage.py runserver 127.0.0.1:$(PORT)

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest

# Production serving (behind a TLS-terminating proxy), static files by WhiteNoise: granian by
# default (klaviyo_site/serve.py: worker processes WEB_CONCURRENCY, threads SERVER_THREADS,
# defaults 2 and 2; the measured best, bench/README.md), or gunicorn with SERVER=gunicorn
# (klaviyo_site/gunicorn.conf.py: WEB_CONCURRENCY, GUNICORN_THREADS, GUNICORN_WORKER_CLASS,
# GUNICORN_REUSE_PORT). Configure the
# app through the environment (or .env): DEBUG off, SECRET_KEY, TOKEN_ENCRYPTION_KEY,
# KLAVIYO_CLIENT_ID/SECRET, ALLOWED_HOSTS, DATABASE_URL. The bench serves the same way.
BIND ?= 127.0.0.1:$(PORT)
SERVER ?= granian

serve: $(VENV)/.runtime
	$(PY) manage.py collectstatic --no-input --verbosity 0
	$(PY) manage.py migrate --no-input
ifeq ($(SERVER),gunicorn)
	$(VENV)/bin/gunicorn klaviyo_site.wsgi --config klaviyo_site/gunicorn.conf.py --bind $(BIND)
else
	$(PY) -m klaviyo_site.serve --bind $(BIND)
endif

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Benchmarks against a local fake Klaviyo, and the Node example side by side when node is
# installed (bench/README.md); PostgreSQL when DATABASE_URL names one. Options through
# BENCH_ARGS, e.g. make bench BENCH_ARGS="--only compare".
BENCH_ARGS ?=

bench: $(VENV)/.installed
	$(PY) -m bench $(BENCH_ARGS)

# The sandbox against Klaviyo's OpenAPI description, with schemathesis: CONFORMANCE_EXAMPLES requests
# generated per operation (CI runs a bounded pass of 2 in .ci/run). Prints the counts of answers from
# no route ("no such endpoint"), server errors, and Content-Type and response-schema failures.
CONFORMANCE_EXAMPLES ?= 20

conformance: $(VENV)/.installed
	$(PY) .ci/conformance.py --examples $(CONFORMANCE_EXAMPLES)

clean:
	rm -rf $(VENV) .venv-django6 staticfiles test-artifacts .pytest_cache .ruff_cache
