# Two commands on a fresh machine:
#   make demo   — create .venv and run the embedded-default design loop
#   make test   — create .venv and run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-fast bench docs clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt adapters/adacof/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch torchvision
	$(PIP) install -q -c constraints.txt -e ".[dev]" -e "adapters/adacof[video,lpips]"
	touch $(STAMP)

demo: venv
	$(VENV)/bin/sdesign design examples/digits_cnn.py --out runs/demo

test: venv
	$(PY) -m pytest -q -m "not slow" -p no:cacheprovider

test-all: venv
	$(PY) -m pytest -q

bench: venv
	$(PIP) install -q -c constraints.txt -e ".[bench]"

docs: venv
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) runs site
