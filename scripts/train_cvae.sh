#!/usr/bin/env bash
# Rebuild only the shipped cVAEs (models/cvae_davis, models/cvae_evk4): scripts/train_shipped.sh with
# ONLY=cvae (its every-camera dataset, a run per event camera tested on the last subject and evaluated, then
# the shipped model on every subject with the held-out figures on its card). Same environment variables.
exec env ONLY=cvae "$(dirname "$0")/train_shipped.sh" "$@"
