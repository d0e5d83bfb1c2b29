#!/usr/bin/env bash
# The one prepared GPU check (issue 13), to run in a single call on a machine with a CUDA GPU:
#   1. device facts (torch, CUDA, GPU name)           -> OUT/device.json
#   2. the CUDA tests (tests/test_optim.py -k cuda)    -> OUT/cuda_tests.log
#   3. bench fisher --device cuda                      -> OUT/fisher_cuda.json
#   4. bench train --problem curves, short             -> OUT/train_curves_cuda.{json,png}
#   5. bench train --problem mnist_sample, short       -> OUT/train_mnist_sample_cuda.{json,png}
#   6. the training lesson (notebook 07) on the GPU    -> OUT/lesson07.log
#   and OUT/summary.json: each step's exit status and seconds, with the device named.
#
#   scripts/gpu_check.sh [OUT]            # on the GPU machine (default OUT: figures/bench/gpu)
#   scripts/gpu_check.sh --dry-run [OUT]  # the same steps on the CPU at smoke sizes (a minute or two)
#
# On the device machine of this workplace (one call, `run`): the package's dependencies must be importable
# there (torch with CUDA, numpy, scikit-learn, matplotlib, tqdm, mlxtend, seaborn, ipywidgets, nbconvert,
# pytest; carry missing ones as wheels, see the device tool's README), and at most 8 files come back,
# so pack them:  PY=python3 scripts/gpu_check.sh /tmp/gpu; tar czf "$OUT/gpu.tgz" -C /tmp gpu
# Each step runs even if an earlier one failed; the script exits non-zero if any step failed.
# Budget on a GPU: about 6 minutes (two 4-method trainings of 30 s per method, plus timing).
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUT=${1:-figures/bench/gpu}
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
mkdir -p "$OUT"
export KFAC_TEACH_PROGRESS=0 PYTHONUNBUFFERED=1
if [ $DRY = 1 ]; then DEV=cpu; else DEV=cuda; fi
if [ $DRY = 1 ]; then
  TRAIN=(--smoke --n 200 --iters 3 --timing-steps 2 --structures block_diagonal)
  FISHER=(--repeat 1)
  LESSON_ENV=(KFAC_TEACH_SMOKE=1)
else
  TRAIN=(--one-per-grid --time-budget 30 --timing-steps 20)
  FISHER=(--repeat 3)
  LESSON_ENV=(KFAC_TEACH_SMOKE=1)   # full size runs the 120 s CURVES grid of every method: too long here
fi
SUMMARY=()
step() {  # step NAME command...: run, log to OUT/NAME.log, record exit status and seconds
  local name=$1; shift
  local t0 t1 rc
  t0=$(date +%s.%N)
  "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  local sec
  sec=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b - a}')
  echo "$name: exit $rc, $sec s"
  SUMMARY+=("{\"step\": \"$name\", \"exit\": $rc, \"seconds\": $sec}")
}

step device "$PY" -c "
import json, platform, torch
from kfac_teach.experiments import device_name
dev = '$DEV'
info = {'device': device_name(dev), 'device_type': dev, 'torch': torch.__version__,
        'cuda': torch.version.cuda, 'cuda_available': torch.cuda.is_available(),
        'python': platform.python_version(), 'dry_run': bool($DRY)}
open('$OUT/device.json', 'w').write(json.dumps(info, indent=1) + '\n')
print(info)
assert dev == 'cpu' or torch.cuda.is_available(), 'no CUDA device: run with --dry-run on a CPU'
"
step cuda_tests "$PY" -m pytest tests/test_optim.py -k cuda -q -p no:cacheprovider -rs
step bench_fisher "$PY" -m kfac_teach.bench fisher --device "$DEV" "${FISHER[@]}" --no-progress \
  --out "$OUT/fisher_$DEV.json"
step train_curves "$PY" -m kfac_teach.bench train --problem curves --device "$DEV" "${TRAIN[@]}" \
  --no-progress --out "$OUT"
step train_mnist_sample "$PY" -m kfac_teach.bench train --problem mnist_sample --device "$DEV" \
  "${TRAIN[@]}" --no-progress --out "$OUT"
step lesson07 env "${LESSON_ENV[@]}" "$PY" -m jupyter nbconvert --to notebook --execute \
  notebooks/07_training_with_kfac.ipynb --output-dir "$OUT" --output lesson07_executed.ipynb \
  --ExecutePreprocessor.timeout=600

{
  echo "{\"device_file\": \"device.json\", \"dry_run\": $([ $DRY = 1 ] && echo true || echo false), \"steps\": ["
  (IFS=,; echo "${SUMMARY[*]}")
  echo "]}"
} > "$OUT/summary.json"
rm -f "$OUT/lesson07_executed.ipynb"   # its outputs are in the log; keep OUT small
cat "$OUT/summary.json"
! grep -q '"exit": [1-9]' "$OUT/summary.json"
