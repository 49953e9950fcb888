# Two commands do all the set-up on a fresh machine:
#
#   make demo    # the quickstart study (XOR, no data needed): train, prune, distill, quantize, report
#   make test    # the test suite
#
# Both create .venv when it is absent: the CPU build of torch from PyTorch's CPU wheel index
# (a plain `pip install torch` on Linux pulls a multi-GB CUDA build), then cfctool with its
# extras. `make docs` builds the documentation site (site/), `make clean-venv` removes .venv.
# Another torch build: make test TORCH_INDEX=https://download.pytorch.org/whl/cu124
# Offline (a local wheel folder or mirror in pip's own configuration): make test TORCH_INDEX=
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
EXTRAS ?= test,onnx,plot,docs,tables,lint

BIN := $(VENV)/bin
STAMP := $(VENV)/.cfctool-installed

.PHONY: demo test test-quick test-slurm lint docs cli-reference tables clean-venv
.DEFAULT_GOAL := demo

# torch alone from the CPU index (--no-deps: its dependencies come from the usual index
# with the project's), then the project; redone when pyproject.toml changes
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-deps "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q "$(TORCH)" -e ".$(if $(EXTRAS),[$(EXTRAS)])"
	touch $@

demo: $(STAMP)
	$(MAKE) -f examples/quickstart.mk -j2 CFCTOOL=$(abspath $(BIN))/cfctool

# the suite on every core (pytest-xdist; the slow tests are mostly subprocesses of one thread)
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto -m "not slurm"

test-quick: $(STAMP)
	$(BIN)/python -m pytest -q -n auto -m "not slow and not slurm"

# the pipelines and a data-parallel training as jobs of a one-node Slurm cluster the tests start
# (Debian: apt-get install slurmd slurmctld slurm-client munge; they skip, saying why, without)
test-slurm: $(STAMP)
	$(BIN)/python -m pytest -q -m slurm

# ruff's linter and formatter, then mypy on the package (settings in pyproject.toml; the
# strictness is stated in docs/design/architecture.md)
lint: $(STAMP)
	$(BIN)/ruff check cfctool
	$(BIN)/ruff format --check cfctool
	$(BIN)/mypy

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

# the generated pages: the CLI reference from the Typer app, the tables from benchmarks/results
cli-reference: $(STAMP)
	$(BIN)/python -m cfctool.cli.reference docs/reference/cli.md --data-guide docs/guide/data.md \
		--training-guide docs/guide/training.md

tables: $(STAMP)
	$(BIN)/python -m benchmarks.tables

clean-venv:
	rm -rf $(VENV)
