"""Oracle probe of pooled features (experiments/probe-ckplus.sh): multinomial logistic
regression trained on one anchors file's features and labels, scored on another's; beside it the
5-nearest-neighbour vote by cosine. Prints footage, scored, probe, knn5, probe_train (tab)."""
import sys
import numpy as np
from safetensors.numpy import load_file

def load(p):
    d = load_file(p)
    return d["embeddings"].astype(np.float64), d["labels"].astype(np.int64)

(xa, ya), (xb, yb) = load(sys.argv[1]), load(sys.argv[2])
k = 7
mu, sd = xa.mean(0), xa.std(0) + 1e-6
za, zb = (xa - mu) / sd, (xb - mu) / sd
w = np.zeros((za.shape[1], k)); b = np.zeros(k)
onehot = np.eye(k)[ya]
# Full-batch gradient descent with L2: deterministic, no solver dependency.
lr, l2 = 0.1, 1e-3
for _ in range(1500):
    z = za @ w + b
    z -= z.max(1, keepdims=True)
    p = np.exp(z); p /= p.sum(1, keepdims=True)
    g = (p - onehot) / len(ya)
    w -= lr * (za.T @ g + l2 * w); b -= lr * g.sum(0)
acc = lambda z, y: float(((z @ w + b).argmax(1) == y).mean())
na = xa / np.linalg.norm(xa, axis=1, keepdims=True); nb = xb / np.linalg.norm(xb, axis=1, keepdims=True)
nn = np.argsort(-(nb @ na.T), axis=1)[:, :5]
votes = np.zeros((len(yb), k))
for j in range(5):
    votes[np.arange(len(yb)), ya[nn[:, j]]] += 1
knn = float((votes.argmax(1) == yb).mean())
print(f"{len(ya)}\t{len(yb)}\t{acc(zb, yb):.4f}\t{knn:.4f}\t{acc(za, ya):.4f}")
