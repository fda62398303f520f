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

# make test-torch211 — the tracing and reconstruction tests on torch 2.11 (the
# release on the team's GPU machines), on the CPU, in a second venv. Built once
# (stamp file): 2.2 GB of wheels, 3.9 GB on disk, about 4 minutes on 2 cores.
# See constraints-torch211.txt for why torch goes in with --no-deps.
VENV211 := .venv-torch211
PY211 := $(VENV211)/bin/python
STAMP211 := $(VENV211)/.installed
# The test files it runs; the ones not in this checkout are skipped.
TESTS211 := tests/test_fast_trace.py tests/test_reconstruct.py tests/test_channel_rules.py \
	tests/test_shape_rules.py tests/test_resize.py tests/test_random_dags.py tests/test_zoo.py \
	tests/test_run_trace.py tests/test_any_model.py tests/test_kinds.py tests/test_errors.py
MISSING211 = $(filter-out $(wildcard $(TESTS211)),$(TESTS211))
# Prints the requirements of torch, torchvision and the project, less torch and
# torchvision themselves, the CUDA tree and the extras.
DEPS211 := import re; from importlib.metadata import requires; \
	skip = re.compile(r"(torch|torchvision|triton|nvidia-.*|cuda-.*)$$"); \
	print("\n".join(r for d in ("torch", "torchvision", "sparsenet-design") for r in requires(d) or () \
	if "extra ==" not in r and not skip.match(re.split(r"[\s<>=!~;\[(]", r)[0])))

.PHONY: venv-torch211 test-torch211

venv-torch211: $(STAMP211)

$(STAMP211): pyproject.toml constraints-torch211.txt
	test -x $(PY211) || $(PYTHON) -m venv $(VENV211)
	$(PY211) -m pip install -q --upgrade pip
	$(PY211) -m pip install -q --no-cache-dir --no-deps -r constraints-torch211.txt
	$(PY211) -m pip install -q --no-deps -e .
	$(PY211) -c '$(DEPS211)' > $(VENV211)/requirements.txt
	$(PY211) -m pip install -q --no-warn-conflicts -c constraints-torch211.txt -r $(VENV211)/requirements.txt pytest pytest-timeout hypothesis
	$(PY211) -c "import torch, torchvision; assert torch.__version__.startswith('2.11.'), torch.__version__; print('torch', torch.__version__, 'torchvision', torchvision.__version__, torch.ones(2) @ torch.ones(2))"
	touch $(STAMP211)

test-torch211: $(STAMP211)
	$(if $(MISSING211),@echo "test-torch211: skipped (not in this checkout): $(MISSING211)")
	$(PY211) -m pytest -q -m "not slow" -p no:cacheprovider $(wildcard $(TESTS211))

# make zoo — coverage of the core and of Torch-Pruning on timm, ultralytics, smp,
# diffusers and transformers models (random init, offline): ~26 min on 2 cores,
# plus ~17 min when the cached timm picks (benchmarks/results) need recomputing.
.PHONY: zoo
zoo: venv
	$(PIP) install -q -c constraints.txt -e ".[zoo]"
	$(PY) benchmarks/third_party_zoo.py --timeout 120
