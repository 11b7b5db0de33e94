#!/usr/bin/env python3
"""Converts the MTCNN face detector of facenet-pytorch (PNet, RNet, ONet; MIT) to three ONNX models
for sitfer's `mtcnn` detector (runtime/src/detect/mtcnn.rs), and checks them against PyTorch.

Input: the PyPI wheel `facenet-pytorch==2.6.0` (read as a zip; the package is never installed).
From it we take

  facenet_pytorch/data/pnet.pt, rnet.pt, onet.pt   the three state dicts (torch.save'd OrderedDicts)
  facenet_pytorch/models/mtcnn.py                  PNet / RNet / ONet, the parity reference
  facenet_pytorch/models/utils/detect_face.py      detect_face, the reference of the whole pipeline
  facenet_pytorch-2.6.0.dist-info/LICENSE.md       copied unchanged to LICENSE

each checked against the wheel's RECORD. The three networks are rebuilt here (the same layers as
mtcnn.py: Conv2d, PReLU, MaxPool2d with ceil_mode, Linear, Softmax), loaded with the state dicts
(strict) and exported with torch.onnx (TorchScript exporter, opset 13). Two layers are written
with other operators than torch uses, computing the same function, for tract (which runs them in
sitfer):

  PReLU    as Relu(x) + Min(x, 0) * alpha (ONNX Relu, Clip max 0, Mul, Add), exact in floating
           point (one of the two terms is always 0). tract expands ONNX PRelu into a Mul, a
           comparison and a select (Iff), which ran several times slower than the convolutions
           around it (tract 0.23.9, PNet on a 385x289 input, one busy core of the development
           machine: 122 ms with PRelu, 68 ms like this).
  PNet's   2-class softmax over the channel axis as Sigmoid of a 1x1 convolution with the
  softmax  differenced weights and biases: softmax(z)_1 = sigmoid(z_1 - z_0), softmax(z)_0 =
           sigmoid(z_0 - z_1); tract's softmax over a non-innermost axis was as slow as the
           whole network (68 ms -> 37 ms). RNet / ONet keep their Softmax (over [N, 2]).

Outputs, NCHW, fp32:

  pnet.onnx  input [1, 3, H, W]  -> prob [1, 2, h, w], reg [1, 4, h, w]
             (H, W dynamic, both >= 12; one output cell per 12x12 window at stride 2:
             h = ceil((H - 2) / 2) - 4, w likewise)
  rnet.onnx  input [N, 3, 24, 24] -> prob [N, 2], reg [N, 4]
  onet.onnx  input [N, 3, 48, 48] -> prob [N, 2], reg [N, 4], landmarks [N, 10]

  input      RGB, the image as it is (no transpose), (pixel - 127.5) * 0.0078125
  prob       softmax (background, face)
  reg        box regression (dx1, dy1, dx2, dy2) in units of the box's width / height
  landmarks  x of the 5 points, then y of the 5 points, as fractions of the ONet input box;
             facenet-pytorch's order (left eye, right eye, nose, left mouth corner, right mouth
             corner, "left" being the image's left)

The Caffe MTCNN worked on transposed images; facenet-pytorch's weights (ported from
davidsandberg/facenet) keep that only in the flatten before RNet's and ONet's first dense layer
(`permute(0, 3, 2, 1)`, i.e. W, H, C order), which is part of the exported graphs. The networks
take the image as is; this script checks it by running facenet-pytorch's own `detect_face` on the
check photo as is (one face found) and transposed.

Checks (exit non-zero on failure): ONNX Runtime against facenet-pytorch's own PNet / RNet / ONet
classes on random inputs (several PNet sizes, several RNet / ONet batch sizes), max |diff| <= 1e-4;
and facenet-pytorch's `detect_face` with the ONNX Runtime networks against the same with the
torch networks on the check photo (same faces; boxes and landmarks within 1e-2 px).
torchvision is not installed: its `batched_nms` (used by detect_face) is replaced by a NumPy
transcription of torchvision's semantics (greedy by score, per image, IoU without +1, kept when
IoU <= threshold).

Usage: convert.py --wheel facenet_pytorch-2.6.0-py3-none-any.whl --out-dir models/detectors/mtcnn
       [--image models/demo/astronaut.png]
"""

import argparse
import base64
import hashlib
import io
import os
import sys
import time
import types
import zipfile

import numpy as np
import onnx
import torch
from torch import nn

OPSET = 13
IR_VERSION = 7  # the IR version that goes with opset 13; older readers (tract) are happy with it
WHEEL_VERSION = "2.6.0"
DIST_INFO = f"facenet_pytorch-{WHEEL_VERSION}.dist-info/"
MAX_DIFF = 1e-4  # ONNX Runtime vs torch, on every output
MAX_PIPELINE_DIFF = 1e-2  # detect_face boxes / landmarks in pixels, ONNX Runtime nets vs torch nets
SEED = 20250131

NETS = {
    "pnet": dict(member="facenet_pytorch/data/pnet.pt", out="pnet.onnx", outputs=["prob", "reg"]),
    "rnet": dict(member="facenet_pytorch/data/rnet.pt", out="rnet.onnx", outputs=["prob", "reg"]),
    "onet": dict(member="facenet_pytorch/data/onet.pt", out="onet.onnx",
                 outputs=["prob", "reg", "landmarks"]),
}
SOURCES = ["facenet_pytorch/models/mtcnn.py", "facenet_pytorch/models/utils/detect_face.py"]
LICENSE = DIST_INFO + "LICENSE.md"


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def fail(msg):
    raise SystemExit(f"convert.py: {msg}")


def read_wheel(path):
    """Returns {member: bytes} for the files we use, each checked against the wheel's RECORD."""
    zf = zipfile.ZipFile(path)
    names = zf.namelist()
    record_name = DIST_INFO + "RECORD"
    if record_name not in names:
        fail(f"{path} is not the facenet-pytorch {WHEEL_VERSION} wheel (no {record_name})")
    record = {}
    for line in zf.read(record_name).decode().splitlines():
        parts = line.rsplit(",", 2)
        if len(parts) == 3 and parts[1].startswith("sha256="):
            record[parts[0]] = parts[1][len("sha256="):]
    files = {}
    for name in [n["member"] for n in NETS.values()] + SOURCES + [LICENSE]:
        data = zf.read(name)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        if record.get(name) != digest:
            fail(f"{name}: sha256 does not match the wheel's RECORD")
        files[name] = data
    return files


# --------------------------------------------------------------------------------------------
# The networks, rebuilt (layers and names as in facenet_pytorch/models/mtcnn.py)


class PReLU(nn.Module):
    """nn.PReLU (one slope per channel, parameter `weight`), exported as Relu + Clip + Mul + Add
    (see the module docstring): relu(x) + min(x, 0) * alpha, exact since one term is always 0."""

    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n))

    def forward(self, x):
        alpha = self.weight.view(1, -1, *([1] * (x.dim() - 2)))
        return torch.relu(x) + torch.clamp(x, max=0) * alpha


class PNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x):
        x = self.prelu1(self.conv1(x))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        # softmax4_1(conv4_1(x)) over the 2 channels, as sigmoid of the logit differences (see the
        # module docstring); the differenced weights are constant-folded into one Conv.
        w, b = self.conv4_1.weight, self.conv4_1.bias
        w_diff = torch.cat([w[0:1] - w[1:2], w[1:2] - w[0:1]])
        b_diff = torch.stack([b[0] - b[1], b[1] - b[0]])
        prob = torch.sigmoid(nn.functional.conv2d(x, w_diff, b_diff))
        return prob, self.conv4_2(x)  # prob, reg


class RNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.softmax5_1 = nn.Softmax(dim=1)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        # facenet-pytorch's permute(0, 3, 2, 1) + view(N, -1): flattened in W, H, C order (the
        # weights were ported from a network that saw transposed images). flatten(1) exports
        # as one Flatten node instead of Shape/Gather/Concat/Reshape.
        x = x.permute(0, 3, 2, 1).flatten(1)
        x = self.prelu4(self.dense4(x))
        return self.softmax5_1(self.dense5_1(x)), self.dense5_2(x)  # prob, reg


class ONet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.softmax6_1 = nn.Softmax(dim=1)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).flatten(1)  # as in RNet
        x = self.prelu5(self.dense5(x))
        return self.softmax6_1(self.dense6_1(x)), self.dense6_2(x), self.dense6_3(x)  # prob, reg, landmarks


REBUILT = {"pnet": PNet, "rnet": RNet, "onet": ONet}


# --------------------------------------------------------------------------------------------
# facenet-pytorch's own code, loaded from the wheel without its package __init__ (which pulls in
# requests, tqdm and InceptionResnetV1) and with torchvision replaced by a stub


def torchvision_batched_nms(boxes, scores, idxs, iou_threshold):
    """torchvision.ops.batched_nms: greedy NMS per value of `idxs`, highest score first; a box is
    dropped when its IoU with a kept one exceeds the threshold; areas are (x2 - x1) * (y2 - y1).
    Returns the kept indices sorted by decreasing score."""
    b = boxes.detach().cpu().numpy().astype(np.float32)
    s = scores.detach().cpu().numpy().astype(np.float32)
    g = idxs.detach().cpu().numpy()
    keep = []
    for i in np.argsort(-s, kind="stable"):
        ok = True
        for k in keep:
            if g[k] != g[i]:
                continue
            iw = max(min(b[i, 2], b[k, 2]) - max(b[i, 0], b[k, 0]), 0.0)
            ih = max(min(b[i, 3], b[k, 3]) - max(b[i, 1], b[k, 1]), 0.0)
            inter = iw * ih
            union = (b[i, 2] - b[i, 0]) * (b[i, 3] - b[i, 1]) + (b[k, 2] - b[k, 0]) * (b[k, 3] - b[k, 1]) - inter
            if union > 0 and inter / union > iou_threshold:
                ok = False
                break
        if ok:
            keep.append(int(i))
    return torch.as_tensor(keep, dtype=torch.long)


def load_facenet_modules(files):
    """Returns (mtcnn module, detect_face module) executed from the wheel's sources."""
    def package(name):
        m = types.ModuleType(name)
        m.__path__ = []
        sys.modules[name] = m
        return m

    for name in ["facenet_pytorch", "facenet_pytorch.models", "facenet_pytorch.models.utils",
                 "torchvision", "torchvision.transforms", "torchvision.ops"]:
        package(name)
    functional = types.ModuleType("torchvision.transforms.functional")  # only extract_face uses it
    sys.modules[functional.__name__] = functional
    boxes = types.ModuleType("torchvision.ops.boxes")
    boxes.batched_nms = torchvision_batched_nms
    sys.modules[boxes.__name__] = boxes

    def module(name, member):
        m = types.ModuleType(name)
        m.__file__ = member
        m.__package__ = name.rpartition(".")[0]
        sys.modules[name] = m
        exec(compile(files[member], member, "exec"), m.__dict__)
        return m

    df = module("facenet_pytorch.models.utils.detect_face", SOURCES[1])
    mt = module("facenet_pytorch.models.mtcnn", SOURCES[0])
    return mt, df


# --------------------------------------------------------------------------------------------


def load_state_dict(data):
    sd = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(sd, dict):
        fail(f"expected a state dict, got {type(sd)}")
    return sd


def export(key, net):
    spec = NETS[key]
    if key == "pnet":
        dummy = torch.zeros(1, 3, 48, 64)
        dyn = {"input": {2: "H", 3: "W"}, "prob": {2: "h", 3: "w"}, "reg": {2: "h", 3: "w"}}
    else:
        side = 24 if key == "rnet" else 48
        dummy = torch.zeros(2, 3, side, side)
        dyn = {name: {0: "N"} for name in ["input"] + spec["outputs"]}
    buf = io.BytesIO()
    torch.onnx.export(net, (dummy,), buf, opset_version=OPSET, input_names=["input"],
                      output_names=spec["outputs"], dynamic_axes=dyn, do_constant_folding=True)
    model = onnx.load_from_string(buf.getvalue())
    model.ir_version = IR_VERSION
    model.producer_name = "sitfer models/detectors/mtcnn/convert.py"
    model.producer_version = ""
    return model


def annotate(key, model, pt_sha):
    spec = NETS[key]
    shapes = {
        "pnet": "input [1,3,H,W] -> prob [1,2,h,w], reg [1,4,h,w] (h = ceil((H-2)/2)-4, stride 2, 12x12 cells)",
        "rnet": "input [N,3,24,24] -> prob [N,2], reg [N,4]",
        "onet": "input [N,3,48,48] -> prob [N,2], reg [N,4], landmarks [N,10] (x0..x4, y0..y4)",
    }[key]
    model.doc_string = (
        f"MTCNN {key.upper()} from PyPI facenet-pytorch=={WHEEL_VERSION}, {spec['member']} "
        f"(sha256 {pt_sha}), MIT. {shapes}. Input RGB NCHW, the image as is (not transposed), "
        f"(x - 127.5) * 0.0078125. prob = softmax (background, face).")
    for k, v in [("source", f"pypi:facenet-pytorch=={WHEEL_VERSION}:{spec['member']}"),
                 ("source_sha256", pt_sha), ("license", "MIT"), ("mean", "127.5"), ("scale", "0.0078125")]:
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.checker.check_model(model, full_check=True)
    return model


def ort_session(data):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def check_parity(key, sess, reference, rebuilt):
    """ONNX Runtime vs facenet-pytorch's own class (and our rebuilt one vs it) on random inputs."""
    rng = np.random.default_rng(SEED)
    if key == "pnet":
        shapes = [(1, 3, 12, 12), (1, 3, 13, 17), (1, 3, 37, 53), (1, 3, 121, 161), (1, 3, 289, 385)]
    else:
        side = 24 if key == "rnet" else 48
        shapes = [(n, 3, side, side) for n in (1, 2, 7, 33)]
    names = NETS[key]["outputs"]
    worst = {n: 0.0 for n in names}
    worst_rebuilt = 0.0
    for shape in shapes:
        x = rng.uniform(-1, 1, size=shape).astype(np.float32)
        with torch.no_grad():
            ref = reference(torch.from_numpy(x))
            mine = rebuilt(torch.from_numpy(x))
        # facenet-pytorch returns (reg, prob) / (reg, landmarks, prob)
        ref = dict(zip(["reg", "prob"] if key != "onet" else ["reg", "landmarks", "prob"], ref))
        onnx_out = dict(zip(names, sess.run(names, {"input": x})))
        diffs = []
        for n in names:
            if onnx_out[n].shape != tuple(ref[n].shape):
                fail(f"{key} {shape}: {n} has shape {onnx_out[n].shape}, torch {tuple(ref[n].shape)}")
            d = float(np.abs(onnx_out[n] - ref[n].numpy()).max())
            worst[n] = max(worst[n], d)
            diffs.append(f"{n} {list(onnx_out[n].shape)} {d:.2e}")
        for n, m in zip(names, mine):
            worst_rebuilt = max(worst_rebuilt, float((m - ref[n]).abs().max()))
        print(f"[{key}] input {list(shape)}: max|onnx - torch| " + ", ".join(diffs))
    if worst_rebuilt > MAX_DIFF:
        fail(f"{key}: the rebuilt network differs from facenet-pytorch's by {worst_rebuilt:.2e}")
    bad = [f"{n} {d:.2e}" for n, d in worst.items() if d > MAX_DIFF]
    if bad:
        fail(f"{key}: ONNX drifts from torch beyond {MAX_DIFF:.0e}: " + ", ".join(bad))
    return worst, worst_rebuilt


class OrtNet(nn.Module):
    """An ONNX Runtime session that detect_face can call like facenet-pytorch's nets."""

    def __init__(self, sess, torch_order):
        super().__init__()
        self.sess, self.order = sess, torch_order
        self.dtype_probe = nn.Parameter(torch.zeros(1))  # detect_face reads the nets' dtype

    def forward(self, x):
        outs = dict(zip(self.order, self.sess.run(self.order, {"input": x.numpy()})))
        return tuple(torch.from_numpy(outs[n]) for n in self.order)


def run_detect_face(df, img, nets):
    with torch.no_grad():
        boxes, points = df.detect_face(img, 20, *nets, [0.6, 0.7, 0.7], 0.709, "cpu")
    return np.asarray(boxes[0], dtype=np.float64).reshape(-1, 5), np.asarray(points[0], dtype=np.float64).reshape(-1, 5, 2)


def check_pipeline(df, torch_nets, sessions, image_path):
    """facenet-pytorch's detect_face on the check photo, with the torch nets and with the ONNX ones;
    the photo as is must give one face where expected, the transposed one is shown for comparison."""
    from PIL import Image
    img = np.asarray(Image.open(image_path).convert("RGB"))
    ort_nets = [OrtNet(sessions["pnet"], ["reg", "prob"]), OrtNet(sessions["rnet"], ["reg", "prob"]),
                OrtNet(sessions["onet"], ["reg", "landmarks", "prob"])]
    tb, tp = run_detect_face(df, img, torch_nets)
    t0 = time.perf_counter()
    ob, op = run_detect_face(df, img, ort_nets)
    ms = 1000 * (time.perf_counter() - t0)
    if tb.shape != ob.shape:
        fail(f"detect_face: {len(tb)} faces with the torch nets, {len(ob)} with the ONNX ones")
    db = float(np.abs(tb[:, :4] - ob[:, :4]).max()) if len(tb) else 0.0
    dp = float(np.abs(tp - op).max()) if len(tp) else 0.0
    ds = float(np.abs(tb[:, 4] - ob[:, 4]).max()) if len(tb) else 0.0
    print(f"[detect_face] {os.path.basename(image_path)} {img.shape[1]}x{img.shape[0]}: {len(ob)} face(s); "
          f"onnx vs torch nets: boxes {db:.2e} px, landmarks {dp:.2e} px, scores {ds:.2e} "
          f"(onnxruntime pipeline {ms:.0f} ms)")
    names = ["left eye", "right eye", "nose", "mouth left", "mouth right"]
    for b, p in zip(ob, op):
        print(f"[detect_face]   p={b[4]:.6f} box ({b[0]:.2f}, {b[1]:.2f}, {b[2]:.2f}, {b[3]:.2f}); "
              + ", ".join(f"{n} ({x:.2f}, {y:.2f})" for n, (x, y) in zip(names, p)))
    if max(db, dp) > MAX_PIPELINE_DIFF:
        fail("detect_face with the ONNX nets drifts from the torch nets")
    if len(ob) != 1:
        fail(f"expected one face in {image_path}, found {len(ob)}")
    cx, cy = (ob[0, 0] + ob[0, 2]) / 2, (ob[0, 1] + ob[0, 3]) / 2
    if not (190 < cx < 260 and 90 < cy < 160):
        fail(f"the face in {image_path} is not where expected (centre {cx:.1f}, {cy:.1f})")
    # Transposed, a frontal face is a face turned by 90 degrees and mirrored: still face-like, so
    # this is a comparison (score, landmarks), not a pass / fail check.
    tb2, tp2 = run_detect_face(df, np.ascontiguousarray(img.transpose(1, 0, 2)), ort_nets)
    print(f"[detect_face] the same photo transposed (x <-> y): {len(tb2)} face(s)")
    for b, p in zip(tb2, tp2):
        print(f"[detect_face]   p={b[4]:.6f} box ({b[0]:.2f}, {b[1]:.2f}, {b[2]:.2f}, {b[3]:.2f}); "
              + ", ".join(f"{n} ({x:.2f}, {y:.2f})" for n, (x, y) in zip(names, p)))
    return ob, op


def write_atomic(path, data):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", required=True, help=f"the facenet-pytorch=={WHEEL_VERSION} wheel")
    ap.add_argument("--out-dir", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--image", default="models/demo/astronaut.png", help="RGB photo with one face")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)

    wheel = open(args.wheel, "rb").read()
    print(f"wheel {os.path.basename(args.wheel)} ({len(wheel)} bytes) sha256 {sha256(wheel)}; "
          f"torch {torch.__version__}, onnx {onnx.__version__}")
    files = read_wheel(args.wheel)
    for name in SOURCES + [LICENSE]:
        print(f"{name} ({len(files[name])} bytes) sha256 {sha256(files[name])}")
    mt, df = load_facenet_modules(files)
    os.makedirs(args.out_dir, exist_ok=True)

    torch_nets, sessions, outputs = [], {}, {}
    for key, spec in NETS.items():
        pt = files[spec["member"]]
        pt_sha = sha256(pt)
        sd = load_state_dict(pt)
        print(f"[{key}] {spec['member']} ({len(pt)} bytes) sha256 {pt_sha}: "
              + ", ".join(f"{k} {list(v.shape)}" for k, v in sd.items()))
        reference = getattr(mt, key.upper()[0] + "Net")(pretrained=False).eval()
        reference.load_state_dict(sd, strict=True)
        rebuilt = REBUILT[key]().eval()
        rebuilt.load_state_dict(sd, strict=True)
        model = annotate(key, export(key, rebuilt), pt_sha)
        data = model.SerializeToString()
        ops = {}
        for nd in model.graph.node:
            ops[nd.op_type] = ops.get(nd.op_type, 0) + 1
        print(f"[{key}] ONNX operators: " + ", ".join(f"{k} x{v}" for k, v in sorted(ops.items())))
        sess = ort_session(data)
        worst, worst_rebuilt = check_parity(key, sess, reference, rebuilt)
        print(f"[{key}] parity OK: worst max|onnx - torch| " + ", ".join(f"{n} {d:.2e}" for n, d in worst.items())
              + f"; rebuilt vs facenet-pytorch's class {worst_rebuilt:.1e}")
        torch_nets.append(reference)
        sessions[key] = sess
        outputs[key] = data

    check_pipeline(df, torch_nets, sessions, args.image)

    for key, data in outputs.items():
        out = os.path.join(args.out_dir, NETS[key]["out"])
        write_atomic(out, data)
        print(f"[{key}] wrote {out} ({len(data)} bytes) sha256 {sha256(data)}")
    lic = os.path.join(args.out_dir, "LICENSE")
    write_atomic(lic, files[LICENSE])
    print(f"wrote {lic} ({len(files[LICENSE])} bytes, {LICENSE} unchanged)")


if __name__ == "__main__":
    main()
