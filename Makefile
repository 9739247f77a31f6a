# The two commands a newcomer needs:  make demo  (main job end to end)  and  make test  (test suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-litellm lint bench bench-serve clean sysdeps

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m distillguard.demo

# Real servers the tests start on loopback (nginx for auth_request, redis-server for shared state).
sysdeps:
	@command -v nginx >/dev/null && command -v redis-server >/dev/null || \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -q nginx-light redis-server >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q nginx-light redis-server >/dev/null; }; \
	  else echo "tests that need nginx or redis-server will skip: apt-get install nginx-light redis-server"; fi

test: $(STAMP) sysdeps
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q -m "not slow and not litellm"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# The LiteLLM proxy guardrail, tested in a real proxy process. LiteLLM gets its own venv (~1.3 GB,
# pins of its own). Pinned exactly: 1.82.7 and 1.82.8 were malicious releases; 1.104+ does not install here.
test-litellm:
	@test -f .venv-litellm/.installed || { $(PY) -m venv .venv-litellm && \
	  .venv-litellm/bin/pip install --quiet --upgrade pip && \
	  .venv-litellm/bin/pip install --quiet 'litellm[proxy]==1.100.5' -e . 'pytest>=8,<10' && \
	  touch .venv-litellm/.installed; }
	.venv-litellm/bin/python -m pytest -q -p no:cacheprovider -m litellm tests/test_litellm.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_ingest.py

bench-serve: $(STAMP)
	$(BIN)/python benchmarks/bench_serve.py

clean:
	rm -rf $(VENV) distillguard.duckdb demo-out
