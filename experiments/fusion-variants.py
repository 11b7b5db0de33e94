"""Re-weightings of a bundle's three sources on labeled faces, from `sitfer run --json` over a
folder whose files are named `NNNNN_<class>.png` (so the frames' order gives the labels):
accuracy of p_sem, p_text, p_ins, the bundle's p̂, and of p̂ with other p_ins weights,
log-linear pooling, and p_ins corrected from the seed buffer's uniform class prior to the
training mix (issue 21's p̂ ≥ p_sem, bundle.md). Needs numpy.

    sitfer run --faces whole-frame --source CALSET --no-continual --json cal.jsonl
    python experiments/fusion-variants.py cal.jsonl CALSET
"""
import json
import os
import sys

import numpy as np

CLASSES = ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"]
# The default bundle's anchors' class counts: FER2013 train's mix.
TRAIN_MIX = np.array([113, 146, 16, 258, 172, 142, 177], float)

rows = [json.loads(line) for line in open(sys.argv[1])]
names = sorted(os.listdir(sys.argv[2]))
y = np.array([CLASSES.index(n.split("_", 1)[1][:-4]) for n in names])
get = lambda k: np.array([r["faces"][0][k] for r in rows])
s, t, i, h = get("p_sem"), get("p_text"), get("p_ins"), get("p_hat")
acc = lambda p: 100 * (p.argmax(1) == y).mean()
print(f"{len(y)} faces: p_sem {acc(s):.2f}, p_text {acc(t):.2f}, p_ins {acc(i):.2f}, bundle's p̂ {acc(h):.2f}")
prior = TRAIN_MIX / TRAIN_MIX.sum()
ic = i * prior
ic /= ic.sum(1, keepdims=True)
log = lambda p: np.log(p + 1e-9)
print(f"p_ins with the training prior {acc(ic):.2f}; p_sem + p_text {acc(s + t):.2f}")
for w in [0.25, 0.5, 1.0]:
    print(
        f"w_ins {w}: mean {acc(s + t + w * i):.2f}, with prior {acc(s + t + w * ic):.2f}, "
        f"log-linear {acc(log(s) + log(t) + w * log(i)):.2f}, log-linear with prior {acc(log(s) + log(t) + w * log(ic)):.2f}"
    )
