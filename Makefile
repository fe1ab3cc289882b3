# Each target does its own set-up: torch only if it is missing, then this project with its extras.
PYTHON ?= python3

.PHONY: install test demo bench

install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install torch
	$(PYTHON) -m pip install -e ".[dev]"

test: install
	$(PYTHON) -m pytest

demo: install
	$(PYTHON) -m gspn fit --config tasks/classification/configs/demo.yaml

bench: install
	$(PYTHON) -m gspn.benchmarks.propagate
