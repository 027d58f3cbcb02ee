#!/usr/bin/env bash
# The U²-Net GPU benchmarks in one go, about 5 minutes of wall time on one GPU:
# benchmarks/gpu_u2net.py (seglab's Keras models on JAX) then benchmarks/torch_u2net.py
# (the PyTorch models written from the paper), each under its own timeout.
#
#   OUT=results bash benchmarks/gpu_run.sh      # from the repository root
#
# Wheels in .whl/ (keras and the dependencies the machine lacks) are installed into
# /tmp/site first, as the device machine needs them. Writes into $OUT: u2net_jax.json,
# u2net_torch.json, gpu_run.log (everything printed) and nvidia_smi.txt.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=jax
PYTHON=${PYTHON:-python3}
# JAX_ARGS and TORCH_ARGS add arguments to each script (e.g. a second run for what the
# first one's budget left out).
# Seconds for each benchmark (the script's own budget starts nothing new after BUDGET).
JAX_TIMEOUT=${JAX_TIMEOUT:-240} JAX_BUDGET=${JAX_BUDGET:-150}
TORCH_TIMEOUT=${TORCH_TIMEOUT:-90} TORCH_BUDGET=${TORCH_BUDGET:-60}

set -o pipefail
{
date -u
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi -L
nvidia-smi >"$OUT/nvidia_smi.txt" 2>&1
"$PYTHON" -c "import sys, jax, keras, torch; print(sys.version.split()[0], 'jax', jax.__version__,
'keras', keras.__version__, 'torch', torch.__version__, jax.devices())"

SECONDS=0
timeout -k 10 "$JAX_TIMEOUT" "$PYTHON" benchmarks/gpu_u2net.py \
    --out "$OUT/u2net_jax.json" --budget-s "$JAX_BUDGET" --block-tensorflow ${JAX_ARGS:-}
echo "gpu_u2net.py: exit $? after $SECONDS s"

SECONDS=0
timeout -k 10 "$TORCH_TIMEOUT" "$PYTHON" benchmarks/torch_u2net.py \
    --out "$OUT/u2net_torch.json" --keras-json "$OUT/u2net_jax.json" --budget-s "$TORCH_BUDGET" ${TORCH_ARGS:-}
echo "torch_u2net.py: exit $? after $SECONDS s"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv
date -u
} 2>&1 | tee -a "$OUT/gpu_run.log"
