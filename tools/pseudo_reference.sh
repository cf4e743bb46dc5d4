#!/usr/bin/env bash
# Pseudo-labelling measured without a labelled test set (docs/results.md, "Pseudo-labelling"):
# fold HOLD of the store plays the unlabelled test set. The teacher trains on the other folds but the
# validation fold (data.exclude_folds), predicts fold HOLD and pseudo-labels it (threshold from its fold-0
# validation precision); the student trains on the same folds plus the pseudo-labelled drawings (never their
# true labels: the pseudo folder comes first in --src, so its copy of each key_id is the one kept, and
# exclude_folds drops the fold's unconfident drawings). Both are validated on fold 0 and scored on fold HOLD.
# Fixed epochs and epoch size (train.adapt=false), so machine load does not change the images seen.
#
#   bash tools/pseudo_reference.sh            # STEPS="1 2 3 4 5 6 7" by default; e.g. STEPS="5 6 7" to rerun the student
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
STORE=${STORE:-input/store27}
SRC=${SRC:-../shared/data/quickdraw/train_simplified}  # the files STORE was prepared from
CLASSES=${CLASSES:-input/sample/classes.txt}           # STORE's classes
OUT=${OUT:-outputs/pseudo27}
HOLD=${HOLD:-4}
SIZE=${SIZE:-64}
EPOCHS=${EPOCHS:-5}
PER_CLASS=${PER_CLASS:-300}
PRECISION=${PRECISION:-0.95}
STEPS=${STEPS:-1 2 3 4 5 6 7}
TEST=input/holdout$HOLD
PSEUDO=input/pseudo27_fold$HOLD
STUDENT_STORE=input/store27_pseudo$HOLD
SETS=(data.img_size="$SIZE" data.val_per_class=40 "data.exclude_folds=[$HOLD]" train.adapt=false
      train.epochs="$EPOCHS" data.per_class="$PER_CLASS" train.batch_size=64 data.num_workers=0)

train() {  # name store
  $PY src/train.py --cfg configs/r18_boost.yaml --fold 0 --device cpu --out "$OUT" --name "$1" --overwrite \
      --no-progress --set data.store="$2" "${SETS[@]}"
}
predict() {  # name
  $PY src/predict.py --run "$OUT/$1/fold0" --test "$TEST/test_simplified.csv" --labels "$TEST/test_labels.csv" \
      --out "submissions/pseudo27_$1_fold$HOLD.csv"
}
for step in $STEPS; do
  case $step in
    1) $PY tools/holdout.py --store "$STORE" --fold "$HOLD" --out "$TEST" ;;
    2) train teacher "$STORE" ;;
    3) predict teacher ;;
    4) $PY tools/pseudo.py "$OUT/teacher" --test "$TEST/test_simplified.csv" --out "$PSEUDO" \
           --precision "$PRECISION" --labels "$TEST/test_labels.csv" ;;
    5) $PY tools/prepare.py --src "$PSEUDO" "$SRC" --classes "$CLASSES" --out "$STUDENT_STORE" ;;
    6) train student "$STUDENT_STORE" ;;
    7) predict student ;;
  esac
done
