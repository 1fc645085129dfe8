# The two commands a newcomer types: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Compile every installed package to bytecode once, at install time: with PYTHONDONTWRITEBYTECODE
# set (as on these machines) nothing is ever cached otherwise, and each new Python process
# (a served worker, a CLI call in a test) recompiles pandas and scikit-learn: seconds each time.
export UV_COMPILE_BYTECODE := 1

.PHONY: demo test lint typecheck layers unit setup system-packages bench clean

# A venv holding uv, then everything else from the lock file (uv itself is locked too).
$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(VENV)/.synced: $(BIN)/uv pyproject.toml uv.lock
	$(BIN)/uv sync --frozen --all-extras --quiet
	touch $@

setup: $(VENV)/.synced

# PyTorch, for the PyTorch flavor's tests only: the CPU wheel this kind of machine keeps in
# /opt/wheels (PyPI's torch is a CUDA build of several GB). Without it those tests skip, saying why.
TORCH_WHEELS := /opt/wheels
$(VENV)/.torch: $(VENV)/.synced
	@if ls $(TORCH_WHEELS)/torch-*+cpu-*.whl >/dev/null 2>&1; then \
		$(BIN)/uv pip install --quiet --find-links $(TORCH_WHEELS) "torch==2.13.0+cpu"; \
	fi
	touch $@

# PostgreSQL's server binaries for the store tests (Debian's package; nothing is started here),
# and Podman with what the container image test needs: buildah, runc (this kind of machine's
# cgroups break Podman's default crun), busybox-static, and mmdebstrap to make a Debian base
# image from Debian's own packages (no container registry is reachable). Prometheus (it
# ships promtool too) for the metrics tests: promtool lints /metrics, one test queries a real
# Prometheus scraping a server (nothing starts by itself: there is no systemd here).
CONTAINER_PACKAGES := podman buildah runc busybox-static mmdebstrap
MONITORING_PACKAGES := prometheus
# Debian's Chromium for the dashboard's browser tests (Playwright drives /usr/bin/chromium;
# Playwright's own browser download is never used).
BROWSER_PACKAGES := chromium
system-packages:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null; \
	fi
	@missing=""; for package in $(CONTAINER_PACKAGES) $(MONITORING_PACKAGES) $(BROWSER_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

lint: setup
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: setup
	$(BIN)/mypy

layers: setup
	$(BIN)/lint-imports

unit: setup system-packages $(VENV)/.torch
	$(BIN)/pytest -n auto --dist loadfile  # every core; one file per worker keeps module fixtures shared

test: lint typecheck layers unit

demo: setup
	$(BIN)/python examples/demo.py

bench: setup
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
