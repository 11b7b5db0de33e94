#!/usr/bin/env python3
"""Writes a small learnable data set in FER2013's folder layout (train/ and val/, one folder per
class, grey 48x48 PNGs) with Python's standard library only, for smoke tests on machines that
have nothing else (scripts/gpu-smoke.sh). Usage: fixture-faces.py OUT [PER_CLASS]"""
import os
import random
import struct
import sys
import zlib


def png(path, pixels, size):
    raw = b"".join(b"\0" + bytes(pixels[y * size:(y + 1) * size]) for y in range(size))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def main():
    out = sys.argv[1]
    per_class = int(sys.argv[2]) if len(sys.argv) > 2 else 24
    rng = random.Random(0)
    classes = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    for split, n in (("train", per_class), ("val", max(2, per_class // 4))):
        for ci, c in enumerate(classes):
            os.makedirs(os.path.join(out, split, c), exist_ok=True)
            for i in range(n):
                # Each class its own stripe period, plus noise: learnable, not trivial.
                px = [max(0, min(255, int(128 + 60 * ((x * (ci + 1)) // 6 % 2 * 2 - 1) + rng.gauss(0, 30))))
                      for y in range(48) for x in range(48)]
                png(os.path.join(out, split, c, f"{i}.png"), px, 48)


if __name__ == "__main__":
    main()
