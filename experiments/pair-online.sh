#!/usr/bin/env bash
# Two bundles' runs of experiments/online.sh on the same split seeds, paired: per variant the
# mean ± sd of p̂ and of its gain over source, and the mean ± sd of (A − B) per split with how many
# splits A is better on. Used by bundle.md's ship rules (a candidate against the default).
#   experiments/pair-online.sh runs/i22/online-mix-6069 runs/i22/online-default-6069
set -euo pipefail
A=${1:?OUT of the candidate}; B=${2:?OUT of the baseline}
python3 - "$A/summary.tsv" "$B/summary.tsv" <<'PY'
import csv, statistics as st, sys
def load(p):
    return {(int(r["split"]), r["variant"]): 100 * float(r["p_hat"])
            for r in csv.DictReader(open(p), delimiter="\t")}
a, b = load(sys.argv[1]), load(sys.argv[2])
splits = sorted({s for s, _ in a} & {s for s, _ in b})
if len(splits) < 2:
    sys.exit(f"fewer than two common splits in {sys.argv[1]} and {sys.argv[2]}")
ms = lambda v: f"{st.mean(v):.2f} ± {st.stdev(v):.2f}"
print(f"splits {splits[0]}–{splits[-1]} ({len(splits)}); p̂ %")
print("| variant | A | A gain over source | B | B gain over source | A − B (splits A better) |")
print("|---|---|---|---|---|---|")
for v in ["source", "buffer", "online", "offline"]:
    if not all((s, v) in a and (s, v) in b for s in splits):
        continue
    pa = [a[s, v] for s in splits]; pb = [b[s, v] for s in splits]
    ga = [a[s, v] - a[s, "source"] for s in splits]; gb = [b[s, v] - b[s, "source"] for s in splits]
    d = [x - y for x, y in zip(pa, pb)]
    print(f"| {v} | {ms(pa)} | {st.mean(ga):+.2f} ({sum(g > 0 for g in ga)}/{len(splits)}) | {ms(pb)} "
          f"| {st.mean(gb):+.2f} ({sum(g > 0 for g in gb)}/{len(splits)}) | {st.mean(d):+.2f} ± {st.stdev(d):.2f} ({sum(x > 0 for x in d)}) |")
PY
