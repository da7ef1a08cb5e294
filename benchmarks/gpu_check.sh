#!/usr/bin/env bash
# Everything a GPU session checks, in one device call of about 7 minutes:
#   -. the XLA statistics path forced, device time on the GPT-2 and ResNet-56 trees (overhead.py),
#   0. the Pallas statistics path: correctness against float64 on this GPU, and device time of
#      both paths with their peers on the GPT-2 and ResNet-56 trees (pallas_check.py),
#   1. device-timed optimizer steps on the ResNet-50 tree (overhead.py --timing=device),
#   2. optimized HLO of the steps, kernel counts and bytes moved (step_hlo.py), with XLA's own
#      dump of the znorm_adam step, tarred,
#   3. the library's tests on the GPU (the slow ones left out; test_pallas.py runs the kernels),
#   4. ResNet-56 training throughput, batch 256, steps looped in-jit (train_throughput.py),
#   5. the language model's training throughput with GPT-2 small's blocks, context 1024, batch 16,
#      bfloat16, steps looped in-jit (lm_throughput.py).
# Each part has its own time limit, so a slow one cannot starve the rest; all share one deadline
# (BUDGET_S, default 450 s); each writes its output to $OUT (default ./gpu_out) as it goes.
# Run from the repository root:
#   bash benchmarks/gpu_check.sh
# Needs jax, flax, optax, chex and pytest; nothing from the examples' data stack.
set -u

OUT=${OUT:-gpu_out}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export TF_CPP_MIN_LOG_LEVEL=2

# Parts share one deadline, so the whole script stays within BUDGET_S (default 450) seconds.
DEADLINE=$((SECONDS + ${BUDGET_S:-450}))

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
part environment 15 "$PYTHON" -c '
import jax, flax, optax, chex
print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__,
      "chex", chex.__version__)
print(jax.devices())
jax.print_environment_info()'

# Issue "XLA path", line 3: the XLA statistics path forced, device time over Adam on the GPT-2
# and ResNet-56 trees (targets: GPT-2 <= 1.35, ResNet-56 <= clip_by_global_norm + Adam, both
# below the naive tree.map), plus each step's compile time there.
part xla_path 75 env ZNORM_OPTAX_KERNELS=xla "$PYTHON" benchmarks/overhead.py --timing=device \
  --trees=transformer,resnet56 --rounds=5

# Then the Pallas path: its correctness decides whether _DEFAULT_KERNELS may become 'auto'.
# It also times GPT-2 and ResNet-56 (both paths, Adam, naive ZNorm and clipping, interleaved).
part pallas_check 100 "$PYTHON" benchmarks/pallas_check.py --rounds=5

part overhead_device 45 "$PYTHON" benchmarks/overhead.py --timing=device --trees=resnet50 --rounds=5

part step_hlo 30 "$PYTHON" benchmarks/step_hlo.py --out="$OUT/hlo" --trees=resnet56,transformer \
  --optimizers='adam;znorm_adam;chain(znorm, adam);chain(naive znorm, adam)'
part xla_dump 15 env XLA_FLAGS="--xla_dump_to=$OUT/hlo/xla_dump_znorm_adam" \
  "$PYTHON" benchmarks/step_hlo.py --out="$OUT/hlo" --trees=resnet56 --optimizers=znorm_adam
[ -d "$OUT/hlo" ] && tar -czf "$OUT/hlo.tar.gz" -C "$OUT" hlo && rm -rf "$OUT/hlo"

# The convergence test needs scikit-learn's digits, which the GPU image may lack.
ignore=()
"$PYTHON" -c 'import sklearn' 2>/dev/null || ignore=(--ignore=tests/znorm_optax/test_convergence.py)
# SIGINT: pytest still prints what passed and failed.
SIGNAL=INT part pytest 55 "$PYTHON" -m pytest tests/znorm_optax -q -x -m 'not slow' -p no:cacheprovider \
  --durations=15 ${ignore[@]+"${ignore[@]}"}

part train_throughput 55 "$PYTHON" benchmarks/train_throughput.py --batch_size=256 --rounds=6 \
  --steps_per_round=40 --loop=device

# Issue line 7: the GPT-2-small configuration's tokens/s, ZNorm (per layer of the scanned stack)
# against Adam, bfloat16, steps looped in-jit (target: znorm / adam >= 0.97); global-norm
# clipping + Adam as a peer. Sized to run in about 60-75 s (not yet measured on a GPU): three
# compiles of the train step are most of it (on the CPU, 14-27 s each at these shapes); each
# method's first call (compile + one round) is printed as it happens, the table at the end.
part lm_throughput 90 "$PYTHON" benchmarks/lm_throughput.py --model=gpt2_small --context=1024 \
  --batch_size=16 --dtype=bfloat16 --rounds=3 --steps_per_round=20 --loop=device \
  --methods=adam,znorm,clip_norm

echo
echo "=== results (full outputs in $OUT)"
cat "$OUT/summary.txt"
for name in xla_path pallas_check overhead_device step_hlo train_throughput lm_throughput; do
  echo "--- $name"
  grep -v '^\s*$' "$OUT/$name.txt" | tail -n 40
done
echo "--- pytest"
tail -n 25 "$OUT/pytest.txt"
