#!/usr/bin/env bash
# One-shot check of the models on a GPU machine (run from anywhere; it works in the repository root).
#
#   OUT=/some/folder bash scripts/device_check.sh
#
# 1. installs the wheels carried in .whl/ (spikingjelly, loguru: not on the GPU image) into /tmp/site;
# 2. prints nvidia-smi, Python, torch, CUDA, triton and C compiler versions;
# 3. probes the PLIF CUDA kernel that spikingjelly picks (triton needs a C compiler at run time); if it
#    fails, the rest runs with SJ_PLIF_CUDA_IMPLEMENTATION=torch and the bench reports the probe as FAIL;
# 4. python3 -m bench.bench_cuda --device cuda: correctness checks (PASS/FAIL) and CUDA-vs-CPU timings,
#    written to $OUT/cuda.md and $OUT/cuda.json (nothing is appended to docs/benchmarks.md here);
# 5. the model tests (test/test_models*.py; they need no rclpy) with the CUDA-only test, which must run
#    and not be skipped, log in $OUT/pytest_cuda.log.
# Every step runs even when an earlier one failed; the exit code is non-zero when any failed. The steps are
# bounded (90 + 330 + 150 s) to fit one 600 s command; the bench writes its checks table before timing.
set -u -o pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
OUT="${OUT:-out/device}"
mkdir -p "$OUT"
status=0

source scripts/device_env.sh

echo "== nvidia-smi"
if command -v nvidia-smi > /dev/null; then nvidia-smi; else echo "nvidia-smi not found"; fi
echo "== versions"
python3 - <<'EOF' || status=1
import importlib.metadata, importlib.util, os, shutil, sys
import torch
print("python", sys.version.split()[0], "| torch", torch.__version__, "| CUDA", torch.version.cuda,
      "| cuda available", torch.cuda.is_available(), "| cores", os.cpu_count())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0),
          "| cudnn", torch.backends.cudnn.version())
for name in ("spikingjelly", "loguru", "triton", "numpy", "numba", "cv2", "yaml"):
    spec = importlib.util.find_spec(name)
    if spec is None:
        print(f"{name}: MISSING")
        continue
    try:
        version = importlib.metadata.version({"cv2": "opencv-python-headless", "yaml": "PyYAML"}.get(name, name))
    except importlib.metadata.PackageNotFoundError:
        version = getattr(__import__(name), "__version__", "?")
    print(f"{name}: {version} ({spec.origin})")
print("C compiler (triton builds its launcher with it):", shutil.which("cc") or shutil.which("gcc") or "none")
EOF

echo "== PLIF CUDA kernel probe"
fallback=()
probe_log="$OUT/plif_probe.log"
if ! timeout 90 python3 -m bench.bench_cuda --device cuda --probe-plif 2>&1 | tee "$probe_log"; then
  reason="$(grep -v '^\s*$' "$probe_log" | tail -n 1 | cut -c1-200)"
  echo "device_check: the PLIF probe failed (${reason:-see $probe_log}); continuing with SJ_PLIF_CUDA_IMPLEMENTATION=torch"
  export SJ_PLIF_CUDA_IMPLEMENTATION=torch
  fallback=(--plif-fallback "probe failed: ${reason:-see plif_probe.log}")
  status=1
fi

echo "== bench.bench_cuda"
timeout 330 python3 -m bench.bench_cuda --device cuda --md-out "$OUT/cuda.md" --json-out "$OUT/cuda.json" \
  "${fallback[@]}" 2>&1 | tee "$OUT/bench_cuda.log"
bench_rc=$?
[ $bench_rc -eq 0 ] || status=1

echo "== model tests on the device"
timeout 150 python3 -m pytest test/test_models.py test/test_models_checkpoint.py test/test_models_train.py \
  -p no:cacheprovider -v -rs 2>&1 | tee "$OUT/pytest_cuda.log"
pytest_rc=$?
[ $pytest_rc -eq 0 ] || status=1
if grep -qE "test_cuda_streaming_matches_cpu_clip (PASSED|FAILED|ERROR)" "$OUT/pytest_cuda.log"; then
  cuda_test="$(grep -oE "test_cuda_streaming_matches_cpu_clip (PASSED|FAILED|ERROR)" "$OUT/pytest_cuda.log" | head -n 1)"
else
  cuda_test="test_cuda_streaming_matches_cpu_clip NOT RUN (skipped or missing)"
  status=1
fi

echo "device_check: bench exit $bench_rc, pytest exit $pytest_rc, $cuda_test, overall $status"
echo "device_check: outputs in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit $status
