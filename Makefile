# Two entry points: `make demo` and `make test`. Each creates .venv once and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.occ-installed

.PHONY: demo test venv clean ffmpeg check-aarch64

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[train,test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/occ demo --workdir runs/demo

# The camera tests stream through a real ffmpeg server; install it where we can (CI runs as root).
ffmpeg:
	@command -v ffmpeg >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null) ; } || \
	  echo "ffmpeg not installed: the stream reconnection test will be skipped"

test: $(STAMP) ffmpeg
	$(PY) -m pytest tests

# The runtime on arm64 (Debian root through qemu-user-static), against x86-64's decisions. Root,
# tens of minutes; not part of `make test` or CI.
check-aarch64: $(STAMP)
	bash scripts/check-aarch64.sh

clean:
	rm -rf $(VENV) runs build *.egg-info
