#!/usr/bin/env bash
# The reference experiments on real drawings (README "Results"; every run in docs/results.md), every variant at
# the same CPU budget.
#
#   bash tools/reference.sh            # 15 CPU minutes per CNN (MIN), 10 for the GRU (SMIN) and the timing pair (TMIN)
#   MIN=5 SMIN=5 TMIN=3 bash tools/reference.sh
#
# 1. The 27 classes of the shared Quick, Draw! copy with >= 120 Google-simplified drawings (the words of
#    input/sample/classes.txt) -> input/store27; fold 0, validation capped at 40 drawings per class.
#    Variants: grey 1-channel uniform (public-kernel baseline), 3 time-encoded channels uniform, the same
#    with accuracy-driven resampling, the stroke-sequence GRU; then ensembles by mean and by stacking.
# 2. Real-time channels vs order-only channels on the drawings that have raw timing (raw/, 340 classes).
# Outputs: outputs/ref27/<variant>/fold0, outputs/ref27-raw/<variant>/fold0, comparison.md in each,
# and the ensembles' reports next to submissions/ref27_*.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SHARED=${SHARED:-../shared/data/quickdraw}
MIN=${MIN:-15}
SMIN=${SMIN:-10}
TMIN=${TMIN:-10}
export PYTHONPATH=src HF_HUB_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1

# train CFG STORE VAL_CAP MINUTES OUT [--set ...]: a shipped recipe as a user runs it: only the store, the image
# size and the time budget (plus the validation cap that defines the measured set). The recipe fits epochs,
# epoch size, batch size and loader workers to the machine and budget itself (README "Training").
train() {
    [ -f "$5/$1/fold0/summary.json" ] && return 0
    $PY src/train.py --cfg "configs/$1.yaml" --fold 0 --out "$5" --overwrite --no-progress "${@:6}" \
        --set data.store="$2" data.img_size=64 data.val_per_class="$3" train.max_minutes="$4"
}

[ -f input/store27/store.json ] || $PY tools/prepare.py --src "$SHARED/train_simplified" \
    --classes input/sample/classes.txt --out input/store27
for cfg in r18_grey r18_uniform r18_boost; do
    train "$cfg" input/store27 40 "$MIN" outputs/ref27
done
train seq_gru input/store27 40 "$SMIN" outputs/ref27
for method in prob_mean stack; do
    $PY tools/ensemble.py outputs/ref27/r18_uniform outputs/ref27/r18_boost outputs/ref27/seq_gru \
        --method "$method" --balance --out "submissions/ref27_$method.csv"
done
$PY tools/ensemble.py outputs/ref27/r18_uniform outputs/ref27/r18_boost --out submissions/ref27_cnn2.csv
$PY tools/ensemble.py outputs/ref27/r18_boost outputs/ref27/seq_gru --out submissions/ref27_cnn_seq.csv
$PY tools/compare.py outputs/ref27/*/ --out outputs/ref27/comparison.md

[ -f input/store_raw/store.json ] || $PY tools/prepare.py --src "$SHARED/raw" --out input/store_raw
for cfg in r18_uniform r18_time; do
    train "$cfg" input/store_raw 0 "$TMIN" outputs/ref27-raw
done
$PY tools/compare.py outputs/ref27-raw/*/ --out outputs/ref27-raw/comparison.md
