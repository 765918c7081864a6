#!/usr/bin/env bash
# The GPU run behind the GPU numbers in the README and results/gpu_*.json: on a machine whose
# python3 has jax with CUDA, optax, chex and torch with CUDA (the repo on PYTHONPATH, no install).
#   benchmarks/gpu.sh tests|steps|more  OUT_DIR
set -u
what=$1; out=${2:-benchmarks/results}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$out"
case $what in
  env)
    nvidia-smi -L
    python3 -c "import jax, optax, chex, torch; print('jax', jax.__version__, jax.devices()); print('optax', optax.__version__, 'chex', chex.__version__, 'torch', torch.__version__, torch.cuda.is_available())"
    ;;
  tests)  # the numerics suites on the GPU (each xdist worker allocates on demand)
    XLA_PYTHON_CLIENT_PREALLOCATE=false timeout "${TEST_SECONDS:-240}" python3 -m pytest -p no:cacheprovider -q -rf -n "${WORKERS:-8}" \
      tests/test_parity_optax.py tests/test_family_parity.py tests/test_reference_numpy.py \
      tests/test_family_reference.py tests/test_properties.py tests/test_flat.py tests/test_dtypes.py \
      tests/test_nonfinite.py tests/test_schedules.py tests/test_clipping.py tests/test_torch_optimizers.py \
      2>&1 | tee "$out/gpu_tests.log" | tail -40
    ;;
  steps)  # step times vs optax and torch (foreach, fused) on the GPU, large trees
    XLA_PYTHON_CLIENT_MEM_FRACTION=0.4 timeout "${BENCH_SECONDS:-300}" python3 benchmarks/run.py \
      --trees one_leaf,resnet50_like,transformer_like --sections steps,eager --name gpu_steps --out "$out"
    ;;
  more)  # many small leaves (500: optax's per-leaf compile is slow), train step, compile, init
    XLA_PYTHON_CLIENT_MEM_FRACTION=0.4 timeout "${BENCH_SECONDS:-420}" python3 benchmarks/run.py \
      --small-leaves 500 --distinct 300 --curve 10,100,300,2000 --optax-max-leaves 300 \
      --trees small_leaves --sections steps,train,compile,init,curve --name gpu_more --out "$out"
    ;;
esac
