"""Per class, what an experiments/online.sh run did on CK+ (issue 22's diagnosis, bundle.md):
the faces the continual buffer admitted from each stream (run-buffer.jsonl, one line per footage
frame in name order; a frame's true class is the CK+ folder its file links into) with their
precision, and the recall of p̂ on the scored subjects before and after adaptation (the per-class
table of eval-*.md, pooled over splits).

    python3 experiments/ckplus-classes.py runs/i22/online-default-130 runs/i22/online-mix-130
"""
import glob
import json
import os
import re
import sys

CLASSES = ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"]
ALIASES = {"anger": "angry", "sadness": "sad"}


def true_class(link):
    name = os.path.basename(os.path.dirname(os.path.realpath(link)))
    name = ALIASES.get(name, name)
    return CLASSES.index(name) if name in CLASSES else None  # contempt: no class


def admissions(split):
    names = sorted(os.listdir(split + "/footage"))
    truth = [true_class(f"{split}/footage/{n}") for n in names]
    per_class, right = [0] * 7, 0
    for line in open(split + "/run-buffer.jsonl"):
        row = json.loads(line)
        for face in row["faces"]:
            if face.get("added"):
                c = max(range(7), key=lambda k: face["p_hat"][k])
                per_class[c] += 1
                right += c == truth[row["frame"]]
    return per_class, right


def recall(run, variant):
    totals = {}
    for f in glob.glob(f"{run}/split-*/eval-{variant}.md"):
        for line in open(f):
            m = re.match(r"\| (\w+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \|", line)
            if m and m.group(1) in CLASSES:
                t = totals.setdefault(m.group(1), [0, 0.0])
                t[0] += int(m.group(2))
                t[1] += float(m.group(4)) * int(m.group(2))
    return {c: t[1] / t[0] for c, t in totals.items() if t[0]}


for run in sys.argv[1:]:
    splits = sorted(glob.glob(run + "/split-*"))
    n = len(splits)
    print(f"{run}: {n} streams")
    # Admissions need the buffer variant's run (VARIANTS with `buffer`).
    if all(os.path.exists(s + "/run-buffer.jsonl") for s in splits):
        counts, right, total = [0] * 7, 0, 0
        for s in splits:
            pc, r = admissions(s)
            counts = [a + b for a, b in zip(counts, pc)]
            right += r
            total += sum(pc)
        print(f"  admitted per stream {total / n:.1f} at precision {right / max(total, 1):.3f}")
        print("  admitted per stream by predicted class: " + ", ".join(f"{c} {k / n:.1f}" for c, k in zip(CLASSES, counts)))
    for v in ["source", "online", "offline"]:
        r = recall(run, v)
        if r:
            print(f"  recall of p̂, {v}: " + ", ".join(f"{c} {r[c]:.2f}" for c in CLASSES if c in r))
