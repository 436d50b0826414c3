#!/usr/bin/env bash
# The GPU checks in one prepared run, under 8 minutes, with one table at the end:
#   1. the CUDA tests (pytest -k cuda)
#   2. one epoch of `cq train --device cuda` with the default (affine) decoder
#   3. the same with the conv decoder
#   4. the counterfactual benchmark (benchmarks/counterfactual_speed.py) on the model of 2
#   5. one epoch of 2-rank NCCL training (`cq train --nproc 2 --device cuda`), when there are 2 GPUs
#
#   benchmarks/gpu_check.sh            # PYTHON=... to choose the interpreter (default .venv/bin/python, else python3)
#   GPU_CHECK_N=100000                 # units of each training run (default 100000; 20000 for the 2-rank one)
#
# Each check has its own time limit (90 + 100 + 100 + 60 + 90 s); its log is kept in the folder
# printed at the end. Without a CUDA device it says so and exits 0, having run nothing.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
N=${GPU_CHECK_N:-100000}

if ! gpus=$("$PYTHON" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)' 2>/dev/null); then
  echo "gpu_check: $PYTHON cannot import torch; set PYTHON to an interpreter with the project installed" >&2
  exit 1
fi
if [ "$gpus" -eq 0 ]; then
  echo "gpu_check: no CUDA device here (torch.cuda.is_available() is False in $PYTHON); nothing to check, run it on a GPU machine"
  exit 0
fi

OUT=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
"$PYTHON" - "$OUT/conv.yaml" <<'EOF'
import sys, yaml
dag = yaml.safe_load(open("dags/dsprites.yaml"))
params = dag["nodes"]["img"]["params"]
for key in ("translate", "rotate", "scale", "canvas"):  # the placed (affine, geometric) decoders' parameters
    params.pop(key, None)
params["decoder"] = "conv"
yaml.safe_dump(dag, open(sys.argv[1], "w"), sort_keys=False)
EOF

ROWS=()
FAILED=0
# check NAME SECONDS FIGURE COMMAND...: run COMMAND under a time limit; FIGURE (a function) reads its log
check() {
  local name=$1 limit=$2 figure=$3 log="$OUT/$1.log" start status result
  shift 3
  start=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  status=$?
  case $status in
    0) result=ok ;;
    124|137) result="timed out"; FAILED=1 ;;
    *) result="failed ($status)"; FAILED=1 ;;
  esac
  ROWS+=("$(printf '%-22s %-12s %6ss  %s' "$name" "$result" "$(( $(date +%s) - start ))" "$("$figure" "$log" 2>/dev/null)")")
}
summary() { grep -E '[0-9]+ (passed|failed|skipped|deselected|error)' "$1" | tail -1; }
trained() {  # "epoch 1/1: train loss 233.16 nats/image, 3220 images/s, 6s" and "img: test neg ELBO ..., IoU 0.6490, ..."
  local rate iou
  rate=$(sed -n 's/.*epoch 1\/1: train loss \([0-9.]*\) nats\/image, \([0-9]*\) images\/s.*/loss \1, \2 images\/s/p' "$1" | tail -1)
  iou=$(sed -n 's/.*IoU \([0-9.]*\),.*/test IoU \1/p' "$1" | head -1)
  echo "$rate${iou:+, $iou}"
}
counterfactuals() {
  "$PYTHON" - "$1" <<'EOF'
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
print(f"{r['counterfactual_images_per_s']:,.0f} images/s on the CPU, {r['ratio_counterfactual_to_decoder']:.2f} of the decoder's, "
      f"{r['single_query_ms']:.1f} ms a query")
EOF
}

check cuda-tests 90 summary "$PYTHON" -m pytest tests -k cuda -rs -p no:cacheprovider
check train-affine 100 trained "$PYTHON" cli.py train --device cuda --epochs 1 --n "$N" --out "$OUT/affine"
check train-conv 100 trained "$PYTHON" cli.py train --device cuda --epochs 1 --n "$N" --dag "$OUT/conv.yaml" --out "$OUT/conv"
check counterfactual-speed 60 counterfactuals "$PYTHON" benchmarks/counterfactual_speed.py --model "$OUT/affine" --json
if [ "$gpus" -ge 2 ]; then
  check train-nccl-2-ranks 90 trained "$PYTHON" cli.py train --nproc 2 --device cuda --epochs 1 --n 20000 --out "$OUT/nccl"
else
  ROWS+=("$(printf '%-22s %-12s %7s  %s' train-nccl-2-ranks skipped - "one GPU here; it needs 2")")
fi

echo
"$PYTHON" -c 'import torch; print("gpu_check on", torch.cuda.device_count(), "x", torch.cuda.get_device_name(0), "torch", torch.__version__)'
printf '%-22s %-12s %7s  %s\n' check result time figure
printf '%s\n' "${ROWS[@]}"
echo "logs in $OUT"
exit $FAILED
