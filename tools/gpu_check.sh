#!/usr/bin/env bash
# One command for the day a GPU is lent (issue #15): the CUDA tests, the training benchmark on CUDA and a
# 3-minute r18_boost run, each step's result one JSON line; exit status 1 when any step failed.
#
#   bash tools/gpu_check.sh --out "$OUT"     # on the GPU machine: < 8 minutes on one H200
#   bash tools/gpu_check.sh --cpu-dry-run    # the same steps shrunk to seconds on the CPU (tests/test_gpu_check.py)
#   bash tools/gpu_check.sh --help           # every option (tools/gpu_check.py holds the steps)
#
# Python: $PY, else .venv/bin/python, else python3 (a lent machine's python3 holds PyTorch).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PY:-}" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1
exec "$PY" tools/gpu_check.py "$@"
