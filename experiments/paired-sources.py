"""Two sources of one `sitfer eval --predictions FILE.csv`, face by face: how many faces only
the first gets right, only the second, and the exact two-sided McNemar p of that split (the
binomial test on the discordant faces). Several CSVs of independent faces are pooled.

    python3 experiments/paired-sources.py p_hat p_sem val.csv [calibration.csv ...]
"""
import csv
import sys
from math import comb

a, b, files = sys.argv[1], sys.argv[2], sys.argv[3:]
only_a = only_b = n = 0
for f in files:
    for row in csv.DictReader(open(f)):
        n += 1
        ra, rb = row[a] == row["truth"], row[b] == row["truth"]
        only_a += ra and not rb
        only_b += rb and not ra
k, m = min(only_a, only_b), only_a + only_b
p = min(1.0, 2 * sum(comb(m, i) for i in range(k + 1)) / 2**m) if m else 1.0
print(f"{n} faces: {a} alone right on {only_a}, {b} alone on {only_b}; exact McNemar p = {p:.2f}")
