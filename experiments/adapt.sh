#!/usr/bin/env bash
# Offline adaptation on CK+ (docs/results/adapt.md). For each seeded split of the CK+ subjects in
# half: `sitfer adapt` sees the unlabeled frames of half A (every face the camera would see,
# contempt included), and `sitfer eval` scores half B (other people; labels used only here,
# contempt dropped as outside the 7 classes). Compared: the source bundle, the bundle with the
# adapted buffer, and the adapted buffer plus the classifier head refitted on pseudo-labels, by
# information maximisation, or by SHOT's full objective (information maximisation plus nearest-centroid pseudo-labels).
#
#   SPLITS="0 1 2 3 4" BUNDLE=models/default experiments/adapt.sh
#   (SITFER_DATA, default ../shared/data; OUT, default runs/adapt; SITFER, default target/release/sitfer)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${SITFER_DATA:-../shared/data}
CK=$DATA/ckplus48
BIN=${SITFER:-target/release/sitfer}
BUNDLE=${BUNDLE:-models/default}
OUT=${OUT:-runs/adapt}
SPLITS=${SPLITS:-"0 1 2 3 4"}
EXTRA=${EXTRA:-}
[ -d "$CK" ] || { echo "no CK+ at $CK (set SITFER_DATA)" >&2; exit 1; }
[ -x "$BIN" ] || cargo build --release -p sitfer-runtime --bin sitfer

# A seeded, reproducible shuffle without a random source file: sort by a hash of (seed, subject).
shuffle() { while read -r s; do printf '%s %s\n' "$(printf '%s-%s' "$1" "$s" | sha256sum | cut -c1-16)" "$s"; done | sort | cut -d' ' -f2; }

# shellcheck source=experiments/lib.sh
source experiments/lib.sh

mkdir -p "$OUT"
summary=$OUT/summary.tsv
printf 'split\tfootage\tscored\tvariant\tp_sem\tp_ins\tp_hat\n' > "$summary"
for seed in $SPLITS; do
  d=$OUT/split-$seed
  rm -rf "$d/footage" "$d/score"
  mkdir -p "$d/footage" "$d/score"
  mapfile -t subjects < <(find "$CK" -name 'S*_*.png' -printf '%f\n' | cut -d_ -f1 | sort -u | shuffle "$seed")
  half=$(( ${#subjects[@]} / 2 ))
  printf '%s\n' "${subjects[@]:0:$half}" > "$d/subjects-footage.txt"
  printf '%s\n' "${subjects[@]:$half}" > "$d/subjects-scored.txt"
  for f in "$CK"/*/S*.png; do
    cls=$(basename "$(dirname "$f")"); name=$(basename "$f"); subj=${name%%_*}
    if grep -qx "$subj" "$d/subjects-footage.txt"; then
      ln -s "$(realpath "$f")" "$d/footage/$name"
    else
      mkdir -p "$d/score/$cls"; ln -s "$(realpath "$f")" "$d/score/$cls/$name"
    fi
  done
  nf=$(ls "$d/footage" | wc -l); ns=$(find "$d/score" -name '*.png' ! -path '*/contempt/*' | wc -l)
  echo "split $seed: ${#subjects[@]} subjects, footage $nf frames, scored $ns frames"

  "$BIN" eval --bundle "$BUNDLE" --data "$d/score" --faces whole-frame > "$d/eval-source.md" 2> "$d/eval-source.log"
  "$BIN" adapt --bundle "$BUNDLE" --footage "$d/footage" --faces whole-frame --out "$d/bundle-buffer" $EXTRA \
    > "$d/adapt-buffer.json" 2> "$d/adapt-buffer.log"
  "$BIN" eval --bundle "$d/bundle-buffer" --data "$d/score" --faces whole-frame > "$d/eval-buffer.md" 2> "$d/eval-buffer.log"
  "$BIN" adapt --bundle "$BUNDLE" --footage "$d/footage" --faces whole-frame --out "$d/bundle-refit" --refit \
    --refit-objective pseudo-labels $EXTRA \
    > "$d/adapt-refit.json" 2> "$d/adapt-refit.log"
  "$BIN" eval --bundle "$d/bundle-refit" --data "$d/score" --faces whole-frame > "$d/eval-refit.md" 2> "$d/eval-refit.log"
  "$BIN" adapt --bundle "$BUNDLE" --footage "$d/footage" --faces whole-frame --out "$d/bundle-infomax" --refit \
    --refit-objective info-max $EXTRA > "$d/adapt-infomax.json" 2> "$d/adapt-infomax.log"
  "$BIN" eval --bundle "$d/bundle-infomax" --data "$d/score" --faces whole-frame > "$d/eval-infomax.md" 2> "$d/eval-infomax.log"
  "$BIN" adapt --bundle "$BUNDLE" --footage "$d/footage" --faces whole-frame --out "$d/bundle-shot" --refit \
    --refit-objective shot $EXTRA > "$d/adapt-shot.json" 2> "$d/adapt-shot.log"
  "$BIN" eval --bundle "$d/bundle-shot" --data "$d/score" --faces whole-frame > "$d/eval-shot.md" 2> "$d/eval-shot.log"
  for v in source buffer refit infomax shot; do
    m=$d/eval-$v.md
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$seed" "$nf" "$ns" "$v" \
      "$(acc "$m" 'p_sem (classifier)')" "$(acc "$m" 'p_ins (seed buffer)')" "$(acc "$m" 'p̂ (fused)')" >> "$summary"
  done
  tail -3 "$summary"
done
column -t "$summary"
echo; echo "p_hat over splits $SPLITS (points):"; gains "$summary" p_hat
