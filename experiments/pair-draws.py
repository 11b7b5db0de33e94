"""A candidate's experiments/online.sh run against the per-split mean of several runs of a
baseline recipe's draws (bundle.md's ship rule against two draws): per variant, the candidate's
p̂, the draws' mean, and the mean ± sd of the paired difference with how many splits it is ahead.

    python3 experiments/pair-draws.py CANDIDATE_OUT DRAW_OUT [DRAW_OUT ...]
"""
import csv
import statistics as st
import sys


def load(out):
    rows = csv.DictReader(open(out + "/summary.tsv"), delimiter="\t")
    return {(int(r["split"]), r["variant"]): 100 * float(r["p_hat"]) for r in rows}


cand, draws = load(sys.argv[1]), [load(d) for d in sys.argv[2:]]
if not draws:
    sys.exit("give at least one baseline run")
splits = sorted({s for s, _ in cand}.intersection(*({s for s, _ in d} for d in draws)))
if len(splits) < 2:
    sys.exit("fewer than two common splits")
print(f"splits {splits[0]}–{splits[-1]} ({len(splits)}); p̂ %; baseline = mean of {len(draws)} draws")
print("| variant | candidate | baseline | each draw | candidate − baseline (splits ahead) |")
print("|---|---|---|---|---|")
for v in ["source", "buffer", "online", "offline"]:
    if not all((s, v) in cand and all((s, v) in d for d in draws) for s in splits):
        continue
    c = [cand[s, v] for s in splits]
    b = [st.mean(d[s, v] for d in draws) for s in splits]
    diff = [x - y for x, y in zip(c, b)]
    each = ", ".join(f"{st.mean(d[s, v] for s in splits):.2f}" for d in draws)
    print(f"| {v} | {st.mean(c):.2f} | {st.mean(b):.2f} | {each} | {st.mean(diff):+.2f} ± {st.stdev(diff):.2f} ({sum(x > 0 for x in diff)}) |")
