# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch/torchvision first, pinned to the builds this project is tested with; the project's own
# requirement (`torch>=2.4`) is then already satisfied, so no other torch build is pulled in.
TORCH  ?= torch==2.14.1 torchvision==0.29.1
# Two pytest processes (pytest-xdist): tests/conftest.py puts the test files that start or use Ray in two
# groups (the documented commands; the rest), one per process, each run in order; the other files fill in
# around them, on the CPU a Ray test leaves idle while it waits on its processes. `make test XDIST=`: one process.
XDIST  ?= -n 2

.PHONY: install demo test test-fast clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cnnsweep tune sweeps/quickstart.yaml --output runs/quickstart
	@if test -f runs/quickstart/analysis/report.html; then echo "report: $(CURDIR)/runs/quickstart/analysis/report.html"; \
	else echo "no report: see the notes above (runs/quickstart/summary.json)"; fi

test: $(STAMP)
	$(VENV)/bin/ruff check cnnsweep tests benchmarks
	$(PY) -m pytest -q $(XDIST)

test-fast: $(STAMP)
	$(PY) -m pytest -q $(XDIST) -m "not slow"

clean:
	rm -rf runs .pytest_cache
