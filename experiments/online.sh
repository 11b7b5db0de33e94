#!/usr/bin/env bash
# Continual learning on a new camera's stream, online and offline (issue 21; pre-registered in
# docs/results/runtime.md, "Pre-registered: continual learning on fresh CK+ splits").
#
# For each split seed, CK+'s subjects are split in half exactly as experiments/adapt.sh does
# (hash of seed and subject). The stream is the footage half's frames in name order (subject by
# subject, sequence by sequence: one person after another in front of the camera), unlabeled;
# the other half's subjects are scored (labels used only here, contempt dropped). Variants:
#   source   `sitfer eval` with the bundle as shipped (p̂ before the stream)
#   buffer   `sitfer run --buffer B` over the stream (continual admission, no refit), then
#            `sitfer eval --buffer B`
#   online   `sitfer run --buffer B --online-refit` over the stream (the refit in place when
#            due, --refit-inline, so that the result does not depend on thread timing; every
#            other online setting its default), then `sitfer eval --buffer B` (buffer + head)
#   offline  `sitfer adapt --refit` on the stream's frames (the default objective, info-max,
#            fixed by the pre-registration on split seeds 10–19), then `sitfer eval --bundle`
# In-domain guard (GUARD=1, split seed GUARD_SEED): FER2013 val split in half by a hash of
# (seed, file name); the stream half through `sitfer run --online-refit`, the other half scored
# before and after.
#
#   SPLITS="20 21 22 23 24 25 26 27 28 29" experiments/online.sh
#   (SITFER_DATA, default ../shared/data; OUT, default runs/online; SITFER, the binary; BUNDLE,
#   a bundle directory for every command, default the one built into the binary; GUARD_ONLY=1
#   runs the in-domain guard alone; ONLINE_FLAGS / ADAPT_FLAGS, extra flags of the online /
#   offline variant)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${SITFER_DATA:-../shared/data}
CK=$DATA/ckplus48
BIN=${SITFER:-target/release/sitfer}
OUT=${OUT:-runs/online}
SPLITS=${SPLITS:-"20 21 22 23 24 25 26 27 28 29"}
VARIANTS=${VARIANTS:-"source buffer online offline"}
GUARD=${GUARD:-1}
GUARD_SEED=${GUARD_SEED:-20}
ONLINE=(--online-refit --refit-inline --refit-min-interval 0)
# Extra flags of the online variant (ONLINE_FLAGS="--refit-max-anchor-drop 100"), for ablations.
read -r -a extra_online <<< "${ONLINE_FLAGS:-}"
ONLINE+=("${extra_online[@]}")
# Extra flags of the offline variant (ADAPT_FLAGS="--threshold 0.6"), for ablations.
read -r -a extra_adapt <<< "${ADAPT_FLAGS:-}"
GUARD_ONLY=${GUARD_ONLY:-0}
# sitfer with the bundle, when one is given.
sf() { local c=$1; shift; if [ -n "${BUNDLE:-}" ]; then "$BIN" "$c" --bundle "$BUNDLE" "$@"; else "$BIN" "$c" "$@"; fi; }
[ -d "$CK" ] || { echo "no CK+ at $CK (set SITFER_DATA)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "no sitfer binary at $BIN (set SITFER)" >&2; exit 1; }

# The same seeded shuffle as experiments/adapt.sh.
shuffle() { while read -r s; do printf '%s %s\n' "$(printf '%s-%s' "$1" "$s" | sha256sum | cut -c1-16)" "$s"; done | sort | cut -d' ' -f2; }

# shellcheck source=experiments/lib.sh
source experiments/lib.sh

row() { # SUMMARY SPLIT STREAM SCORED VARIANT EVAL_MD
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$2" "$3" "$4" "$5" \
    "$(acc "$6" 'p_sem (classifier)')" "$(acc "$6" 'p_ins (seed buffer)')" "$(acc "$6" 'p̂ (fused)')" >> "$1"
}

mkdir -p "$OUT"
summary=$OUT/summary.tsv
printf 'split\tfootage\tscored\tvariant\tp_sem\tp_ins\tp_hat\n' > "$summary"
[ "$GUARD_ONLY" = 1 ] && SPLITS=""
for seed in $SPLITS; do
  d=$OUT/split-$seed
  rm -rf "$d"
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
  echo "split $seed: ${#subjects[@]} subjects, stream $nf frames, scored $ns frames"
  for v in $VARIANTS; do
    t0=$(date +%s)
    case $v in
      source) sf eval --data "$d/score" --faces whole-frame > "$d/eval-$v.md" 2> "$d/eval-$v.log" ;;
      buffer|online)
        extra=(); [ "$v" = online ] && extra=("${ONLINE[@]}")
        sf run --faces whole-frame --source "$d/footage" --buffer "$d/$v.safetensors" "${extra[@]}" \
          --json "$d/run-$v.jsonl" 2> "$d/run-$v.log"
        sf eval --data "$d/score" --faces whole-frame --buffer "$d/$v.safetensors" \
          > "$d/eval-$v.md" 2> "$d/eval-$v.log" ;;
      offline)
        sf adapt --footage "$d/footage" --faces whole-frame --out "$d/bundle-offline" --refit "${extra_adapt[@]}" \
          > "$d/adapt-offline.json" 2> "$d/adapt-offline.log"
        "$BIN" eval --bundle "$d/bundle-offline" --data "$d/score" --faces whole-frame \
          > "$d/eval-$v.md" 2> "$d/eval-$v.log" ;;
    esac
    row "$summary" "$seed" "$nf" "$ns" "$v" "$d/eval-$v.md"
    echo "  $v: p̂ $(tail -1 "$summary" | cut -f7) ($(( $(date +%s) - t0 )) s)"
  done
done
if [ -n "$SPLITS" ]; then
  column -t "$summary"
  echo; echo "p_hat over splits $SPLITS (points):"; gains "$summary" p_hat
fi

if [ "$GUARD" = 1 ]; then
  g=$OUT/fer-val-$GUARD_SEED
  rm -rf "$g"; mkdir -p "$g/stream" "$g/score"
  for f in "$DATA"/fer2013/val/*/*.png; do
    cls=$(basename "$(dirname "$f")"); name=$(basename "$f")
    h=$(printf '%s-%s' "$GUARD_SEED" "$name" | sha256sum | cut -c1)
    case $h in
      [0-7]) ln -s "$(realpath "$f")" "$g/stream/$name" ;;
      *) mkdir -p "$g/score/$cls"; ln -s "$(realpath "$f")" "$g/score/$cls/$name" ;;
    esac
  done
  gs=$OUT/fer-val-summary.tsv
  printf 'split\tstream\tscored\tvariant\tp_sem\tp_ins\tp_hat\n' > "$gs"
  n1=$(ls "$g/stream" | wc -l); n2=$(find "$g/score" -name '*.png' | wc -l)
  echo "FER2013 val guard: stream $n1 faces, scored $n2"
  sf eval --data "$g/score" --faces whole-frame > "$g/eval-source.md" 2> "$g/eval-source.log"
  row "$gs" "$GUARD_SEED" "$n1" "$n2" source "$g/eval-source.md"
  sf run --faces whole-frame --source "$g/stream" --buffer "$g/online.safetensors" "${ONLINE[@]}" \
    --json /dev/null 2> "$g/run-online.log"
  sf eval --data "$g/score" --faces whole-frame --buffer "$g/online.safetensors" \
    > "$g/eval-online.md" 2> "$g/eval-online.log"
  row "$gs" "$GUARD_SEED" "$n1" "$n2" online "$g/eval-online.md"
  column -t "$gs"
fi
