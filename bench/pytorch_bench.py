#!/usr/bin/env python3
"""Training throughput of the sitfer architectures in PyTorch (CPU), for the side-by-side
benchmark run by `sitfer-train bench`. The nets mirror trainer/src/model/resnet.rs exactly:
3x3 stride-1 stem without max-pool, torchvision basic blocks, global average pool, linear head;
soft cross-entropy; AdamW. Prints one JSON line.
"""
import argparse
import json
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class ResNet(nn.Module):
    def __init__(self, stem_width, widths, blocks, num_classes=7):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem_width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        layers, cin = [], stem_width
        for i, (w, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                layers.append(BasicBlock(cin, w, 2 if i > 0 and j == 0 else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        y = self.layers(F.relu(self.bn1(self.conv1(x))))
        emb = y.mean((2, 3))
        return self.fc(emb), emb


ARCHS = {
    "student": lambda: ResNet(32, [32, 64, 128, 256], [1, 1, 1, 1]),
    "resnet18": lambda: ResNet(64, [64, 128, 256, 512], [2, 2, 2, 2]),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", choices=ARCHS, default="student")
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = ARCHS[a.arch]().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)
    x = torch.randn(a.batch, 3, a.size, a.size)
    t = torch.full((a.batch, 7), 1.0 / 7)
    params = sum(p.numel() for p in model.parameters())

    def step():
        opt.zero_grad(set_to_none=True)
        logits, _ = model(x)
        loss = -(F.log_softmax(logits, -1) * t).sum(-1).mean()
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = time.perf_counter() - t0
    print(json.dumps({
        "framework": "pytorch",
        "version": torch.__version__,
        "arch": a.arch,
        "size": a.size,
        "batch": a.batch,
        "threads": torch.get_num_threads(),
        "parameters": params,
        "images_per_second": a.batch * a.steps / dt,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }))


if __name__ == "__main__":
    main()
