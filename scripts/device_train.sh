#!/usr/bin/env bash
# One 600 s command on a borrowed GPU machine: train the event SNN on a larger simulated set than the 2-core
# development CPU allows, and check and time the models on CUDA beside it.
#
#   OUT=/some/folder bash scripts/device_train.sh
#
#  1. wheels from .whl/ (spikingjelly, loguru), versions, PLIF kernel probe (as scripts/device_check.sh);
#  2. the DAVIS event dataset: SUBJECTS simulated subjects x 21 AUs x TRIALS takes, WORKERS processes;
#  3. the SNN, one fold (held-out subject = the last one), EPOCHS chosen so that training ends by TRAIN_END_S
#     (from a timed probe of the training step), in the background on the GPU;
#  4. meanwhile: bench_cuda's correctness checks (--skip-timings) and the CUDA model test;
#  5. after training: `evmicro evaluate` of the run, then bench_cuda's timings (GPU free again);
#  6. $OUT gets snn.tar (run folder: card, results, eval tables and plots, logs), the weights in parts of
#     < 16 MB (model.pt.part-aa, -ab), cuda.md/cuda.json (checks + timings) and device.log.
# Settings (environment): SUBJECTS [21], TRIALS [3], EPOCHS_MAX [100], BATCH [16], MAX_FRAMES [16],
# WORKERS [16], TRAIN_END_S [470] (seconds after the start by which training must be done), DEVICE [cuda],
# BENCH_ARGS [] (--quick for a dry run on a CPU machine).
set -u -o pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
T0=$(date +%s)
OUT="${OUT:-out/device}"
W="${WORK:-/tmp/evmicro_device}"
SUBJECTS=${SUBJECTS:-21}
TRIALS=${TRIALS:-3}
EPOCHS_MAX=${EPOCHS_MAX:-100}
BATCH=${BATCH:-16}
MAX_FRAMES=${MAX_FRAMES:-16}
WORKERS=${WORKERS:-16}
TRAIN_END_S=${TRAIN_END_S:-470}
DEVICE=${DEVICE:-cuda}
BENCH_ARGS=${BENCH_ARGS:-}  # e.g. --quick for a CPU dry run
mkdir -p "$OUT" "$W"
exec > >(tee -a "$OUT/device.log") 2>&1
elapsed() { echo $(( $(date +%s) - T0 )); }
say() { echo "[device_train +$(elapsed)s] $*"; }
status=0
HELD=$(printf "S%02d" "$SUBJECTS")

source scripts/device_env.sh
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c 'import sys, os, torch, numpy, numba; print("python", sys.version.split()[0], "torch", torch.__version__,
"cuda", torch.version.cuda, torch.cuda.is_available(), "numpy", numpy.__version__, "numba", numba.__version__,
"cores", os.cpu_count())'
if [ "$DEVICE" = cuda ] && ! timeout 60 python3 -m bench.bench_cuda --device cuda --probe-plif > "$W/probe.log" 2>&1; then
  tail -n 3 "$W/probe.log"
  say "PLIF probe failed: SJ_PLIF_CUDA_IMPLEMENTATION=torch"
  export SJ_PLIF_CUDA_IMPLEMENTATION=torch
  status=1
fi

say "dataset: $SUBJECTS subjects x 21 AUs x $TRIALS takes (DAVIS)"
if ! timeout 200 python3 -m ros2_evmicro.cli dataset build --sim "$SUBJECTS" --cameras davis --trials "$TRIALS" \
    --duration-s 1.2 --out "$W/ds" --workers "$WORKERS" --quiet; then
  say "dataset build FAILED"; exit 1
fi
say "dataset done: $(ls "$W/ds" | wc -l) entries"

# epochs that fit: time the training step at this batch and clip length
EPOCHS=$(python3 - "$W/ds" "$BATCH" "$MAX_FRAMES" "$DEVICE" "$(( TRAIN_END_S - $(elapsed) ))" "$EPOCHS_MAX" <<'EOF'
import json, math, sys, time
import torch
from ros2_evmicro.core.dataset import load_index
from ros2_evmicro.core.models import AUSNN
from ros2_evmicro.core.models.snn import reset_state
ds, batch, t, dev, budget, emax = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), torch.device(sys.argv[4]), \
    float(sys.argv[5]), int(sys.argv[6])
n_clips = len(load_index(ds))
m = AUSNN().to(dev)
opt = torch.optim.Adam(m.parameters(), 1e-3)
x = torch.rand(batch, t, 2, 64, 64, device=dev) * 3
y = torch.zeros(batch, 21, device=dev); y[:, 3] = 1
def step():
    reset_state(m)
    loss = torch.nn.functional.mse_loss(m(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
for _ in range(3): step()
if dev.type == "cuda": torch.cuda.synchronize()
t0 = time.perf_counter()
for _ in range(10): step()
if dev.type == "cuda": torch.cuda.synchronize()
dt = (time.perf_counter() - t0) / 10
steps = math.ceil(n_clips * (1 - 1 / 21) / batch)
per_epoch = 1.35 * steps * dt + 2.0  # data batching, held-out scoring, state saving
print(f"probe: {dt * 1e3:.1f} ms per step, {steps} steps per epoch, ~{per_epoch:.1f} s per epoch, budget {budget:.0f} s",
      file=sys.stderr)
print(max(1, min(emax, int(budget // per_epoch))))
EOF
)
say "training the SNN for $EPOCHS epochs (held-out $HELD, batch $BATCH, $MAX_FRAMES frames)"
python3 -m ros2_evmicro.cli train snn --data "$W/ds" --out "$W/snn" --modality events --sensor davis \
  --test-subject "$HELD" --epochs "$EPOCHS" --batch-size "$BATCH" --max-frames "$MAX_FRAMES" --device "$DEVICE" \
  --quiet > "$W/train.log" 2>&1 &
TRAIN_PID=$!

say "bench_cuda checks beside the training (correctness only)"
timeout 150 python3 -m bench.bench_cuda --device "$DEVICE" $BENCH_ARGS --skip-timings --md-out "$OUT/cuda.md" \
  --json-out "$OUT/cuda.json" > "$W/bench_checks.log" 2>&1 || status=1
tail -n 30 "$W/bench_checks.log"
timeout 60 python3 -m pytest test/test_models.py -k cuda -p no:cacheprovider -v -rs > "$W/pytest_cuda.log" 2>&1 \
  || status=1
grep -E "PASSED|FAILED|SKIPPED|ERROR" "$W/pytest_cuda.log" | tail -n 5

say "waiting for the training"
wait $TRAIN_PID; train_rc=$?
tail -n 15 "$W/train.log"
say "training exit $train_rc"
[ $train_rc -eq 0 ] || status=1
if [ $train_rc -eq 0 ]; then
  timeout 60 python3 -m ros2_evmicro.cli evaluate --run "$W/snn" --device "$DEVICE" --results "$W/snn/tables.md" \
    > "$W/snn/evaluate.txt" 2>&1 || status=1
  tail -n 30 "$W/snn/evaluate.txt"
fi
cp "$W"/*.log "$W/snn/" 2>/dev/null
MODEL="$W/snn/$HELD/model.pt"
if [ -f "$MODEL" ]; then
  split -b 15M "$MODEL" "$OUT/model.pt.part-"
  sha256sum "$MODEL" | tee "$W/snn/model.sha256"
fi
tar -C "$W" --exclude='*.pt' --exclude='state*' -cf "$OUT/snn.tar" snn

left=$(( 585 - $(elapsed) ))
if [ $left -gt 40 ]; then
  say "bench_cuda timings ($left s left)"
  timeout $(( left - 10 )) python3 -m bench.bench_cuda --device "$DEVICE" $BENCH_ARGS --skip-checks --md-out "$OUT/cuda_timings.md" \
    --json-out "$OUT/cuda_timings.json" > "$W/bench_timings.log" 2>&1 || status=1
  tail -n 25 "$W/bench_timings.log"
else
  say "no time left for the timings"
fi
say "done, status $status; outputs: $(ls "$OUT" | tr '\n' ' ')"
exit $status
