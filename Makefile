# Every target builds its own virtual environment, so a fresh clone needs nothing else.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
PYTEST_WORKERS ?= auto

.PHONY: demo lm-study test lint bench docs clean

$(INSTALLED): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(INSTALLED)
	$(PYTHON) -m examples.main \
	  --config=examples/image_classification/configs/demo.py --workdir=runs/demo

# The language model study (examples/language_model/README.md): about 12 minutes on 2 CPU cores.
lm-study: $(INSTALLED)
	$(PYTHON) -m examples.main \
	  --config=examples/language_model/configs/study.py --workdir=runs/lm_study

# Two sessions: the examples', benchmarks' and notebooks' tests compile with XLA:CPU's older
# fusion emitters, which is faster; the library's keep XLA's defaults (tests/conftest.py).
test: $(INSTALLED)
	$(PYTHON) -m pytest -n $(PYTEST_WORKERS) --durations=10 znorm_optax tests/znorm_optax \
	  tests/test_docs.py tests/test_packaging.py
	$(PYTHON) -m pytest -n $(PYTEST_WORKERS) --durations=15 tests/examples tests/benchmarks \
	  tests/notebooks

lint: $(INSTALLED)
	$(PYTHON) -m ruff check znorm_optax examples tests benchmarks notebooks

# Offline, warnings as errors, from scratch (-E); tests/test_docs.py runs the same build.
docs: $(INSTALLED)
	$(PYTHON) -m sphinx -W --keep-going -E -b html docs docs/_build/html

bench: $(INSTALLED)
	$(PYTHON) benchmarks/overhead.py --timing=device
	$(PYTHON) benchmarks/overhead.py --timing=host
	$(PYTHON) benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
