# Two entry points: `make demo` and `make test`. Each creates .venv once and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.occ-installed

.PHONY: demo test venv clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[train,test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/occ demo --workdir runs/demo

test: $(STAMP)
	$(PY) -m pytest tests

clean:
	rm -rf $(VENV) runs build *.egg-info
