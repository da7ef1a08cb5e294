#!/usr/bin/env bash
# Everything a GPU session checks, in one device call of at most 6 minutes (BUDGET_S, default
# 360 s), most important first, so that a slow part can only cost the ones after it:
#   1. pallas_check: the Pallas statistics path's correctness against float64 on this GPU,
#   2. device time over optax.adam in the in-jit loop (pallas_check.py's timing), both paths:
#      the GPT-2-small and ResNet-56 trees with every variant (the XLA path forced, issue
#      "XLA path" line 3; the kernels, issue "GPU default" line 5; naive ZNorm and clipping),
#      then the ResNet-50 tree and the GPT-2 tree in bfloat16 with the kernels and clipping,
#   3. the library's tests on the GPU with the default selection (the slow ones left out),
#   4. where one GPT-2-tree step's device time goes, kernel by kernel (kernel_profile.py),
#   5. ResNet-56 training throughput, batch 256, steps looped in-jit (train_throughput.py),
#   6. the language model's throughput with GPT-2 small's blocks, context 1024, batch 16,
#      bfloat16, steps looped in-jit (lm_throughput.py).
# Each part has its own time limit, sized from the first H200 run (where compiling the
# variants took most of each part), and each writes its output to $OUT (default ./gpu_out) as
# it goes. Run from the repository root:
#   bash benchmarks/gpu_check.sh
# Needs jax, flax, optax, chex and pytest; nothing from the examples' data stack.
set -u

OUT=${OUT:-gpu_out}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export TF_CPP_MIN_LOG_LEVEL=2

# Parts share one deadline, so the whole script stays within BUDGET_S (default 360) seconds.
DEADLINE=$((SECONDS + ${BUDGET_S:-360}))

# part name, time limit in seconds, command...: output to $OUT/<name>.txt, a status line to stdout.
# A part out of time gets SIGTERM (no traceback, whose jaxprs run to megabytes), or $SIGNAL.
part() {
  local name=$1 limit=$2
  shift 2
  local left=$((DEADLINE - SECONDS))
  if ((left < 10)); then
    echo "$name skipped: out of time" | tee -a "$OUT/summary.txt"
    return
  fi
  ((limit > left)) && limit=$left
  local start=$SECONDS
  echo "=== $name (limit ${limit}s): $*"
  timeout --signal="${SIGNAL:-TERM}" --kill-after=10 "$limit" "$@" >"$OUT/$name.txt" 2>&1
  local rc=$?
  echo "$name: exit $rc after $((SECONDS - start))s$( ((rc == 124)) && echo ', TIMED OUT')" \
    | tee -a "$OUT/summary.txt"
}

: >"$OUT/summary.txt"
part environment 10 "$PYTHON" -c '
import jax, flax, optax, chex
print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__,
      "chex", chex.__version__)
print(jax.devices())
jax.print_environment_info()'

part pallas_check 40 "$PYTHON" benchmarks/pallas_check.py --timing_trees=

# Targets over Adam (ratio column): the default (grouped, packed on GPUs) and the per-leaf XLA
# path: GPT-2 <= 1.35, ResNet-56 <= clipping, both below naive (do its few launches predict its
# time? benchmarks/aot_cost.py counts them); kernels GPT-2 <= 1.20 (znorm_adam) and 1.25 (chain), ResNet-56 <= 1.25, ResNet-50
# <= 1.20, GPT-2 in bfloat16 <= 1.25, each <= clipping.
part device_gpt2 60 "$PYTHON" benchmarks/pallas_check.py --skip_correctness \
  --timing_trees=transformer --rounds=5
part device_resnet56 45 "$PYTHON" benchmarks/pallas_check.py --skip_correctness \
  --timing_trees=resnet56 --rounds=5
part device_more 50 "$PYTHON" benchmarks/pallas_check.py --skip_correctness \
  --timing_trees=resnet50,transformer:bf16 --rounds=5 \
  --variants='znorm_adam, default;znorm_adam, Pallas;chain(znorm, adam), Pallas;chain(clip_by_global_norm, adam)'

# The convergence test needs scikit-learn's digits, which the GPU image may lack.
ignore=()
"$PYTHON" -c 'import sklearn' 2>/dev/null || ignore=(--ignore=tests/znorm_optax/test_convergence.py)
# SIGINT: pytest still prints what passed and failed.
SIGNAL=INT part pytest 50 "$PYTHON" -m pytest tests/znorm_optax -q -m 'not slow' -p no:cacheprovider \
  --durations=15 ${ignore[@]+"${ignore[@]}"}

part kernel_profile 30 "$PYTHON" benchmarks/kernel_profile.py --tree=transformer --steps=10 \
  --variants='chain(znorm, adam), default;chain(znorm, adam), XLA;chain(znorm, adam), Pallas;chain(clip_by_global_norm, adam)'

part train_throughput 35 "$PYTHON" benchmarks/train_throughput.py --batch_size=256 --rounds=6 \
  --steps_per_round=40 --loop=device

# The GPT-2-small configuration's tokens/s, ZNorm (per layer of the scanned stack) against
# Adam, bfloat16, steps looped in-jit (target: znorm / adam >= 0.97); two compiles of the
# train step are most of it.
part lm_throughput 40 "$PYTHON" benchmarks/lm_throughput.py --model=gpt2_small --context=1024 \
  --batch_size=16 --dtype=bfloat16 --rounds=3 --steps_per_round=20 --loop=device \
  --methods=adam,znorm

echo
echo "=== results (full outputs in $OUT)"
cat "$OUT/summary.txt"
for name in pallas_check device_gpt2 device_resnet56 device_more kernel_profile train_throughput \
    lm_throughput; do
  echo "--- $name"
  grep -v '^\s*$' "$OUT/$name.txt" | tail -n 40
done
echo "--- pytest"
tail -n 25 "$OUT/pytest.txt"
