# Every target builds its own virtual environment, so a fresh clone needs nothing else.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
PYTEST_WORKERS ?= auto
# The library's declared lower bounds (pyproject.toml's `>=` read as `==`), with what its tests
# import besides; `make test` runs the library's tests with them too.
LOWER_BOUNDS_VENV := $(VENV)/lower-bounds
LOWER_BOUNDS_PYTHON := $(LOWER_BOUNDS_VENV)/bin/python
LOWER_BOUNDS_INSTALLED := $(LOWER_BOUNDS_VENV)/.installed
# JAX's CUDA plugin, ptxas and libtpu at .venv's JAX, optax and Flax versions, so that XLA's GPU
# and TPU compilers run on this host (benchmarks/aot_cost.py, tests/aot). Kept out of .venv,
# whose JAX would probe them at every start.
AOT_VENV := $(VENV)/aot
AOT_PYTHON := $(AOT_VENV)/bin/python
AOT_INSTALLED := $(AOT_VENV)/.installed
# Colab's JAX, jaxlib, Flax, optax and TensorFlow (notebooks/colab_runtime.txt) with the
# notebooks' extras: the notebooks run there, as on Colab.
COLAB_VENV := $(VENV)/colab
COLAB_PYTHON := $(COLAB_VENV)/bin/python
COLAB_INSTALLED := $(COLAB_VENV)/.installed

.PHONY: demo lm-study test lint bench aot-cost docs clean

$(INSTALLED): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	touch $@

$(LOWER_BOUNDS_INSTALLED): pyproject.toml
	test -x $(LOWER_BOUNDS_PYTHON) || python3 -m venv $(LOWER_BOUNDS_VENV)
	$(LOWER_BOUNDS_PYTHON) -m pip install --quiet --upgrade pip
	$(LOWER_BOUNDS_PYTHON) -m pip install --quiet $$($(LOWER_BOUNDS_PYTHON) -c "import tomllib; \
	  print(*(d.replace('>=', '==') for d in \
	          tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))") \
	  flax scikit-learn pytest pytest-xdist
	touch $@

$(AOT_INSTALLED): $(INSTALLED)
	test -x $(AOT_PYTHON) || python3 -m venv $(AOT_VENV)
	$(AOT_PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip freeze --exclude-editable \
	  | grep -E '^(jax|jaxlib|optax|flax|chex|numpy|ml_dtypes)==' > $(AOT_VENV)/constraints.txt
	version=$$($(PYTHON) -c 'import jax; print(jax.__version__)') && \
	  $(AOT_PYTHON) -m pip install --quiet -c $(AOT_VENV)/constraints.txt "jax[tpu]==$$version" \
	  "jax-cuda12-plugin==$$version" "jax-cuda12-pjrt==$$version" nvidia-cuda-nvcc-cu12 \
	  optax flax chex pytest pytest-xdist
	touch $@

$(COLAB_INSTALLED): pyproject.toml notebooks/colab_runtime.txt
	test -x $(COLAB_PYTHON) || python3 -m venv $(COLAB_VENV)
	$(COLAB_PYTHON) -m pip install --quiet --upgrade pip
	$(COLAB_PYTHON) -m pip install --quiet -c notebooks/colab_runtime.txt \
	  -r notebooks/colab_runtime.txt -e '.[notebooks,tfds]' pytest pytest-xdist 'setuptools>=77'
	touch $@

demo: $(INSTALLED)
	$(PYTHON) -m examples.main \
	  --config=examples/image_classification/configs/demo.py --workdir=runs/demo

# The language model study (examples/language_model/README.md): about 13 minutes on 2 CPU cores.
lm-study: $(INSTALLED)
	$(PYTHON) -m examples.main \
	  --config=examples/language_model/configs/study.py --workdir=runs/lm_study

# The library's tests with .venv's versions and with the lower bounds, the accelerator
# compilers' tests, the examples' and benchmarks', and the notebooks with Colab's versions. The
# compile-bound sessions (examples, benchmarks, notebooks) compile with XLA:CPU's older fusion
# emitters, which is faster; the library's keep XLA's defaults (tests/conftest.py).
test: $(INSTALLED) $(LOWER_BOUNDS_INSTALLED) $(AOT_INSTALLED) $(COLAB_INSTALLED)
	$(PYTHON) -m pytest -n $(PYTEST_WORKERS) --durations=10 znorm_optax tests/znorm_optax \
	  tests/test_docs.py tests/test_packaging.py
	$(LOWER_BOUNDS_PYTHON) -m pytest -n $(PYTEST_WORKERS) -p no:cacheprovider znorm_optax \
	  tests/znorm_optax
	$(AOT_PYTHON) -m pytest -n $(PYTEST_WORKERS) -p no:cacheprovider --durations=5 tests/aot
	$(PYTHON) -m pytest -n $(PYTEST_WORKERS) --durations=15 tests/examples tests/benchmarks
	$(COLAB_PYTHON) -m pytest -n $(PYTEST_WORKERS) -p no:cacheprovider --durations=5 tests/notebooks

lint: $(INSTALLED)
	$(PYTHON) -m ruff check znorm_optax examples tests benchmarks notebooks

# Offline, warnings as errors, from scratch (-E); tests/test_docs.py runs the same build.
docs: $(INSTALLED)
	$(PYTHON) -m sphinx -W --keep-going -E -b html docs docs/_build/html

# Compile-only kernel launches (GPUs) and modelled cycles (TPUs) of one optimizer step.
aot-cost: $(AOT_INSTALLED)
	$(AOT_PYTHON) benchmarks/aot_cost.py

bench: $(INSTALLED)
	$(PYTHON) benchmarks/overhead.py --timing=device
	$(PYTHON) benchmarks/overhead.py --timing=host
	$(PYTHON) benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
