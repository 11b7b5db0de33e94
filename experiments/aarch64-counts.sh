#!/usr/bin/env bash
# aarch64 instruction counts of the runtime, per precision and per detector, on the boards' cores
# emulated by qemu-user (docs/results/boards.md): no board is at hand, so the work is counted with
# the instruction-counting plugin of ../shared/tools/aarch64-insns/ (count.sh) instead of timed.
#
# - Per face, per precision: `sitfer eval --faces whole-frame --precision P` over the first 6 and
#   the first 23 FER2013 val faces of each class (42 and 161 faces; FACES="6 23"); per face = the
#   difference of the two counts / 119, so start-up, bundle loading and model optimisation cancel.
# - Per 640x480 frame with one face, per detector: `sitfer run --detector D --detect-every 1` over
#   2 and 6 frames made by `sitfer bench-detect` (a FER2013 val face pasted at 200 px, big enough
#   for BlazeFace); per frame = the difference / 4 (detector + crop + the model on one face).
#
# Each count runs in a private mount namespace where /proc/cpuinfo reads as the emulated core's
# (what the board's kernel shows): qemu-user 7.2 passes the host's x86 /proc/cpuinfo through, and
# tract reads it to decide whether the core has FP16 arithmetic (`asimdhp`), so without this it
# would never pick its f16 kernels under emulation. Needs root (unshare -m, mount --bind).
# Instruction counts ignore caches, memory and latency: a proxy for cost, not a timing.
#
# Output: $OUT/table.md, one row per count (both runs and the per-unit difference; rows are
# appended, so several partial invocations add up), and $OUT/summary.md, rebuilt from it at the
# end: per face per precision and per frame per detector, one row per core (the latest count of
# each). `sitfer bench DIR --counts $OUT/summary.md` prints it after the host timings; without
# --counts it prints docs/results/aarch64-counts.md (built into the binary), the same tables from
# the counts docs/results/boards.md reports: copy a complete summary there to update them.
#
#   experiments/aarch64-counts.sh
#   CPUS=cortex-a76 PRECISIONS="fp32 fp16" DETECTORS=blazeface FRAME_PRECISION=fp16 experiments/aarch64-counts.sh
#   CPUS=cortex-a57 PRECISIONS=fp16 DETECTORS= FACES="1 6" ...   (a slow path: 7 and 42 faces)
# Environment: SITFER (default target/aarch64-unknown-linux-gnu/release/sitfer, built by
# `cargo build --release -p sitfer-runtime --bin sitfer --target aarch64-unknown-linux-gnu`),
# SITFER_DATA (default ../shared/data), OUT (default runs/aarch64-counts), COUNT (count.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${SITFER:-target/aarch64-unknown-linux-gnu/release/sitfer}
DATA=${SITFER_DATA:-../shared/data}
OUT=${OUT:-runs/aarch64-counts}
COUNT=${COUNT:-../shared/tools/aarch64-insns/count.sh}
CPUS=${CPUS:-cortex-a76 cortex-a57}
PRECISIONS=${PRECISIONS-fp32 int8 fp16}
DETECTORS=${DETECTORS-rustface blazeface yunet mtcnn}
read -r N1 N2 <<< "${FACES:-6 23}"
# The model precision of the per-frame counts: per CPU, the one its boards run (boards/*.toml).
FRAME_PRECISION=${FRAME_PRECISION:-}
[ -x "$B" ] || { echo "no aarch64 sitfer at $B (see the build command above)" >&2; exit 1; }
# The frames are made under qemu-user before count.sh (which installs it too) first runs.
command -v qemu-aarch64 >/dev/null || { apt-get update -qq && apt-get install -y -qq qemu-user >/dev/null; }
mkdir -p "$OUT"
# One thread: the plugin's counter is not atomic, and the detector pool would otherwise take the
# host's core count.
export RAYON_NUM_THREADS=1 RUST_LOG=warn

# /proc/cpuinfo as the board's kernel prints it for each emulated core (the features qemu's
# HWCAP reports for that -cpu, and the core's part number).
cpuinfo() {
  case $1 in
    cortex-a76) feat="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"; var=0x4; part=0xd0b ;;
    cortex-a57) feat="fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"; var=0x1; part=0xd07 ;;
    *) echo "no cpuinfo for $1" >&2; exit 1 ;;
  esac
  for i in 0 1 2 3; do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: 1\n\n' \
      "$i" "$feat" "$var" "$part"
  done
}

# insns CPU ARGS...: the guest instructions of `sitfer ARGS` on CPU.
insns() {
  local cpu=$1; shift
  # Written aside and renamed: a count running in parallel may have the file bind-mounted.
  cpuinfo "$cpu" > "$OUT/cpuinfo-$cpu.$$" && mv -f "$OUT/cpuinfo-$cpu.$$" "$OUT/cpuinfo-$cpu"
  unshare -m sh -c 'mount --bind "$1" /proc/cpuinfo && shift && exec "$@"' sh "$OUT/cpuinfo-$cpu" \
    "$COUNT" -cpu "$cpu" "$B" "$@" 2>"$OUT/last-$$.err" >/dev/null \
    || { cat "$OUT/last-$$.err" >&2; exit 1; }
  grep -o 'guest_insns [0-9]*' "$OUT/last-$$.err" | awk '{print $2}'
}

# Faces: the first N of each class, in name order (links, not copies: the data stays where it is).
for n in $N1 $N2 23; do
  [ -d "$OUT/faces-$n" ] && continue
  for c in "$DATA"/fer2013/val/*/; do
    c=$(basename "$c"); mkdir -p "$OUT/faces-$n/$c"
    mapfile -t files < <(find "$(realpath "$DATA/fer2013/val/$c")" -maxdepth 1 -name '*.png' | sort)
    ln -s "${files[@]:0:$n}" "$OUT/faces-$n/$c/"
  done
done
# Frames: one face of 200 px on a 640x480 textured background (run natively under qemu, not counted).
if [ ! -d "$OUT/frames-6" ]; then
  rm -rf "$OUT/frames-all"
  qemu-aarch64 -L /usr/aarch64-linux-gnu "$B" bench-detect --data "$OUT/faces-23" --detectors blazeface \
    --sizes 200 --frames 6 --max-faces 1 --save-frames "$OUT/frames-all" >/dev/null 2>&1
  mapfile -t frames < <(find "$OUT/frames-all" -name '*.png' | sort)
  for n in 2 6; do
    mkdir -p "$OUT/frames-$n"
    for f in "${frames[@]:0:$n}"; do cp "$f" "$OUT/frames-$n/"; done
  done
fi

M=$(( 1000000 ))
[ -f "$OUT/table.md" ] || printf '| core | what | run 1 | run 2 | per unit |\n|---|---|---|---|---|\n' > "$OUT/table.md"
cat "$OUT/table.md"
for cpu in $CPUS; do
  for p in $PRECISIONS; do
    a=$(insns "$cpu" eval --data "$OUT/faces-$N1" --faces whole-frame --precision "$p")
    b=$(insns "$cpu" eval --data "$OUT/faces-$N2" --faces whole-frame --precision "$p")
    echo "| $cpu | face, $p | $((a / M)) M ($((7 * N1)) faces) | $((b / M)) M ($((7 * N2))) | **$(awk "BEGIN{printf \"%.1f\", ($b - $a) / (7 * ($N2 - $N1)) / 1e6}") M / face** |" | tee -a "$OUT/table.md"
  done
  fp=${FRAME_PRECISION:-$([ "$cpu" = cortex-a57 ] && echo fp32 || echo fp16)}
  for d in $DETECTORS; do
    run=(run --detector "$d" --detect-every 1 --precision "$fp" --no-continual --json /dev/null)
    a=$(insns "$cpu" "${run[@]}" --source "$OUT/frames-2")
    b=$(insns "$cpu" "${run[@]}" --source "$OUT/frames-6")
    echo "| $cpu | frame, $d + $fp model | $((a / M)) M (2 frames) | $((b / M)) M (6) | **$(awk "BEGIN{printf \"%.1f\", ($b - $a) / 4 / 1e6}") M / frame** |" | tee -a "$OUT/table.md"
  done
done

# summary.md: the per-unit column of table.md's latest row for each core and each thing counted.
summary() {
  awk -F' [|] ' '
    /^[|] cortex/ {
      core = substr($1, 3); what = $2; v = $5; gsub(/[*]| [|]$/, "", v); sub(/ \/ .*/, "", v)
      if (what ~ /^face, /) { k = substr(what, 7); face[core, k] = v; fk[k] = 1 }
      else { split(substr(what, 8), w, " "); k = w[1]; frame[core, k] = v " (" w[3] ")"; dk[k] = 1 }
      if (!(core in cores)) order[++nc] = core; cores[core] = 1
    }
    END {
      n = split("fp32 int8 fp16", fo, " "); m = split("rustface blazeface yunet mtcnn", do_, " ")
      printf "Instructions per face (`sitfer eval --faces whole-frame --precision P`):\n\n| core |"
      for (i = 1; i <= n; i++) if (fo[i] in fk) printf " %s |", fo[i]
      printf "\n|---|"; for (i = 1; i <= n; i++) if (fo[i] in fk) printf "---|"; print ""
      for (j = 1; j <= nc; j++) { c = order[j]
        printf "| %s |", c
        for (i = 1; i <= n; i++) if (fo[i] in fk) printf " %s |", ((c, fo[i]) in face) ? face[c, fo[i]] : "–"
        print ""
      }
      if (length(dk) == 0) exit
      printf "\nInstructions per 640x480 frame with one face, detection on every frame (detector, crop and\nthe model, at the precision in brackets):\n\n| core |"
      for (i = 1; i <= m; i++) if (do_[i] in dk) printf " %s |", do_[i]
      printf "\n|---|"; for (i = 1; i <= m; i++) if (do_[i] in dk) printf "---|"; print ""
      for (j = 1; j <= nc; j++) { c = order[j]
        printf "| %s |", c
        for (i = 1; i <= m; i++) if (do_[i] in dk) printf " %s |", ((c, do_[i]) in frame) ? frame[c, do_[i]] : "–"
        print ""
      }
    }' "$OUT/table.md" > "$OUT/summary.md"
}
summary
echo; cat "$OUT/summary.md"
