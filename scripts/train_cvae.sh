#!/usr/bin/env bash
# Rebuild only the shipped cVAEs (models/cvae_davis, models/cvae_evk4) with the settings of
# scripts/train_shipped.sh (steps 1, 3, 4 and 5 of it for the cVAE): the every-camera simulated dataset, a run
# per event camera tested on the last subject, then the shipped model on every subject with the held-out
# figures on its card. Same environment variables as train_shipped.sh (SUBJECTS, DURATION_S, EPOCHS_CVAE,
# MAX_FRAMES, WORKERS, DEVICE, WORK, MODELS_DIR); rerunning continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
SUBJECTS=${SUBJECTS:-7}
DURATION_S=${DURATION_S:-1.2}
EPOCHS_CVAE=${EPOCHS_CVAE:-12}
MAX_FRAMES=${MAX_FRAMES:-16}
WORKERS=${WORKERS:-2}
DEVICE=${DEVICE:-auto}
WORK=${WORK:-build/shipped}
MODELS_DIR=${MODELS_DIR:-models}
EVMICRO=${EVMICRO:-python -m ros2_evmicro.cli}
DATA="$WORK/dataset"
LAST=$(printf 'S%02d' "$SUBJECTS")
COMMON=(--max-frames "$MAX_FRAMES" --device "$DEVICE" --quiet)
mkdir -p "$WORK" "$MODELS_DIR"
set -x
$EVMICRO dataset build --sim "$SUBJECTS" --cameras davis,evk4,webcam --duration-s "$DURATION_S" \
    --evk4-render-hz 150 --out "$DATA" --workers "$WORKERS" --quiet
for CAM in davis evk4; do
    $EVMICRO train cvae --data "$DATA" --out "$WORK/cvae_${CAM}_test" --sensor "$CAM" \
        --test-subject "$LAST" --epochs "$EPOCHS_CVAE" "${COMMON[@]}"
done
$EVMICRO evaluate --run "$WORK/cvae_davis_test" --run "$WORK/cvae_evk4_test" --device "$DEVICE" \
    --results "$WORK/tables_cvae.md" > "$WORK/evaluate_cvae.txt"
for CAM in davis evk4; do
    $EVMICRO train cvae --data "$DATA" --out "$WORK/cvae_${CAM}_all" --sensor "$CAM" \
        --folds none --epochs "$EPOCHS_CVAE" --metrics-from "$WORK/cvae_${CAM}_test" "${COMMON[@]}"
    cp "$WORK/cvae_${CAM}_all/model.pt" "$MODELS_DIR/cvae_${CAM}.pt"
    cp "$WORK/cvae_${CAM}_all/model.card.yaml" "$MODELS_DIR/cvae_${CAM}.card.yaml"
done
