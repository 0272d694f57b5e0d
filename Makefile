# Two entry points: `make demo` and `make test`. Each creates .venv once and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.occ-installed
TEST_STAMP := $(VENV)/.occ-test-installed

.PHONY: demo test test-runtime lint venv clean tools check-aarch64

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[train,test]'
	touch $(STAMP)

# The tests also get a real Triton server: PyTriton's wheel ships tritonserver (x86-64 Linux, glibc 2.35 or
# newer; it pins numpy<2). Where it cannot be installed, occ is installed without it and the tests against
# the real server are skipped, saying why.
$(TEST_STAMP): pyproject.toml | $(PY)
	@echo "$(PY) -m pip install -q -e '.[train,test,triton-server]'"
	@$(PY) -m pip install -q -e '.[train,test,triton-server]' || { \
	  echo "nvidia-pytriton could not be installed here: the tests against a real Triton server will be skipped"; \
	  $(PY) -m pip install -q -e '.[train,test]'; }
	touch $(TEST_STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/occ demo --workdir runs/demo

# The camera tests stream through a real ffmpeg server and check /metrics with promtool (Debian's
# prometheus package); install them where we can (CI runs as root). Without them those checks skip.
tools:
	@for pair in ffmpeg:ffmpeg promtool:prometheus; do \
	  tool=$${pair%%:*}; package=$${pair##*:}; \
	  command -v $$tool >/dev/null 2>&1 && continue; \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && { [ -n "$$updated" ] || apt-get update -qq; } && updated=1 && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$package >/dev/null; } || \
	  echo "$$tool not installed: the checks that need it will be skipped"; \
	done

test: $(TEST_STAMP) tools
	$(PY) -m pytest tests

# The runtime tier as a camera box runs it: tests/runtime (committed tiny models) with `import torch` failing.
test-runtime: $(STAMP)
	PYTHONPATH=tests/runtime $(PY) -m pytest -p block_torch tests/runtime

# The import layering (pyproject.toml's contracts), as tests/test_layers.py checks it: on the sources laid
# out as installed, since plain lint-imports from a checkout cannot see occ's mapped folders.
lint: $(STAMP)
	$(PY) scripts/lint_imports.py

# The runtime on arm64 (Debian root through qemu-user-static), against x86-64's decisions. Root,
# tens of minutes; not part of `make test` or CI.
check-aarch64: $(STAMP)
	bash scripts/check-aarch64.sh

clean:
	rm -rf $(VENV) runs build *.egg-info
