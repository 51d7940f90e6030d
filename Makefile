# cellwall: the two quick-start commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# Debian packages that the tests and the demo use.
APT_PACKAGES := nftables iptables ipset softflowd nfdump postgresql openssl graphviz iproute2 default-jre-headless ulogd2 ulogd2-json
DEMO_OUT ?= demo-output
PYTEST_ARGS ?=

.PHONY: demo test check bench lint typecheck system-deps build-deps venv clean

$(VENV)/.stamp: pyproject.toml | build-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,spark]'
	@touch $@

venv: $(VENV)/.stamp

# A C compiler: libinjection-python has no wheel and is built from source.
build-deps:
	@command -v cc >/dev/null 2>&1 || { \
	  echo "installing a C compiler (gcc) to build libinjection-python"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null; }

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

test: system-deps venv
	$(PY) -m pytest -n 2 -q $(PYTEST_ARGS) --junitxml=.pytest-report.xml

demo: venv
	$(VENV)/bin/cellwall demo run --out $(DEMO_OUT)

bench: venv
	$(PY) bench/run.py

lint: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: venv
	$(VENV)/bin/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .mypy_cache .ruff_cache .pytest-report.xml
