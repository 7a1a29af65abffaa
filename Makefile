# The README's two commands: `make run` (the stack) and `make test` (the whole suite).
# Both work on a fresh machine: they create .venv, install, and train the models.
# `make test-unit` is the quick loop while editing: .venv and promtool (installed when missing), no nginx, no trained models.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup venv models nginx chromium prometheus run serve test test-unit lint load bench clean test-containers

setup: $(VENV)/.installed models

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

models: $(VENV)/.installed
	PYTHON=$(BIN)/python contrib/prepare_dir.sh

nginx:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { \
	  $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y nginx; }

# The browser the dashboard's and the drift report's tests open pages in (headless).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends \
	    chromium fonts-dejavu-core; }

# Prometheus and promtool, for the shipped scrape config and rules (deploy/prometheus) and their tests.
prometheus:
	@{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends \
	    prometheus; }

# The whole local stack: both colors under gunicorn and nginx on loopback, blue active.
run: setup nginx
	$(BIN)/bluegreen up

# One color under gunicorn in the foreground (MODEL_VERSION, COLOR, PORT, FEEDBACK_TOKEN from
# the environment), on loopback unless BIND says otherwise (BIND=0.0.0.0:8080 to publish it).
serve: setup
	BIND="$${BIND:-127.0.0.1:$${PORT:-8080}}" $(BIN)/gunicorn -c app/server/gunicorn_conf.py app.wsgi:app

# ruff, and the import contracts that keep each program in its process (pyproject.toml).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# The tests' temporary files (run dirs, logs, model copies, metrics files) go to memory when
# /dev/shm is there: the state and canary markers are fsync'd, which a busy disk makes slow.
TEST_TMPDIR ?= $(shell [ -d /dev/shm ] && [ -w /dev/shm ] && echo /dev/shm || echo "$${TMPDIR:-/tmp}")

# The whole suite on TEST_WORKERS pytest-xdist workers (4, also on 2 cores: many tests wait
# on the processes they start); TEST_WORKERS=0 runs it in this one process. Tests go out at
# most two at a time, the longest first (tests/conftest.py), so that workers finish together.
TEST_WORKERS ?= 4
test: setup nginx chromium prometheus lint
	TMPDIR=$(TEST_TMPDIR) $(BIN)/pytest -n $(TEST_WORKERS) --dist load --maxschedchunk 2

# Every test that needs no nginx, no gunicorn and no trained model: tests/conftest.py marks
# the others (integration, models) from what they use. pytest's "no tests collected" (exit 5) fails it.
test-unit: $(VENV)/.installed prometheus
	TMPDIR=$(TEST_TMPDIR) $(BIN)/pytest -m "not integration and not models" -n 2

# The container flow end to end (README "Docker compose"): installs Docker when missing,
# reuses the engine `docker` reaches or starts a private one (root or sudo), builds the
# images, runs blue, green and nginx as containers on loopback and drives them with
# bluegreen; stops every container and the engine it started, also on failure.
test-containers: setup
	$(BIN)/python tests/containers/container_flow.py

# Switch under load (locust on the front door; switches, a deploy and a rollback during the run).
load: setup nginx
	$(BIN)/python utils/switch_under_load.py

# The benchmark table of docs/PERFORMANCE.md (wrk from the OS packages is the load generator).
bench: setup nginx
	@command -v wrk >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y wrk; }
	$(BIN)/python utils/benchmark.py

clean:
	rm -rf $(VENV) .run models/iris_model_*
