# kfac_teach -- `make lab` to learn, `make test` to check.  `make` alone lists the targets.
PYTHON ?= python3
VENV   ?= .venv
# The torch build installed before the package.  For a CUDA build, e.g.:
#   make lab TORCH="torch==2.13.0" TORCH_INDEX="--index-url <your CUDA wheel index>"
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=
# extra JupyterLab options, e.g. LAB_ARGS="--no-browser --port 8899"; the folder it opens
LAB_ARGS    ?=
NOTEBOOKS   ?= notebooks
BIN   := $(VENV)/bin
STAMP := $(VENV)/.kfac_teach-installed
NBVAL := --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg

.DEFAULT_GOAL := help
.PHONY: help setup lab test unit figures bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH)" $(TORCH_INDEX)
	$(BIN)/python -m pip install -q -e ".[notebooks,test]"
	@touch $@

setup: $(STAMP)  ## create/reuse .venv and install torch, then the package with its extras

lab: setup  ## set up, then open JupyterLab on notebooks/
	$(BIN)/jupyter lab --notebook-dir=$(NOTEBOOKS) $(LAB_ARGS) $$(test "$$(id -u)" = 0 && echo --allow-root)

test: setup  ## set up, then run every test: unit tests and the notebooks under nbval (small sizes)
	@nbs=$$(ls notebooks/*.ipynb 2>/dev/null); test -z "$$nbs" || $(BIN)/nbstripout --verify --keep-count --keep-output $$nbs || \
	  { echo "notebooks carry metadata nbstripout would strip (e.g. widget state): run $(BIN)/nbstripout --keep-count --keep-output notebooks/*.ipynb"; exit 1; }
	KFAC_TEACH_SMOKE=1 $(BIN)/python -m pytest tests $$(ls notebooks/*.ipynb 2>/dev/null) $(NBVAL)

unit: setup  ## unit tests only
	$(BIN)/python -m pytest tests

figures: setup  ## regenerate every figure in figures/
	$(BIN)/python -m kfac_teach.figures

bench: setup  ## run the benchmarks (JSON on stdout / in figures/bench/)
	$(BIN)/python -m kfac_teach.bench fisher

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache **/__pycache__ *.egg-info
