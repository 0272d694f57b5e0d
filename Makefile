# Two entry points: `make demo` and `make test`. Each creates .venv once and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.occ-installed
TEST_STAMP := $(VENV)/.occ-test-installed

.PHONY: demo test venv clean ffmpeg

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

# The camera tests stream through a real ffmpeg server; install it where we can (CI runs as root).
ffmpeg:
	@command -v ffmpeg >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null) ; } || \
	  echo "ffmpeg not installed: the stream reconnection test will be skipped"

test: $(TEST_STAMP) ffmpeg
	$(PY) -m pytest tests

clean:
	rm -rf $(VENV) runs build *.egg-info
