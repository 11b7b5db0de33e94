#!/usr/bin/env python3
"""Converts MediaPipe's BlazeFace face detectors (TFLite, Apache-2.0) to plain ONNX models in the
"UltraFace output format" that sitfer's `onnx:PATH` detector reads, and checks the result against
the TFLite interpreter.

Input: the PyPI wheel `mediapipe==0.10.21` (read as a zip; mediapipe itself is never imported or
installed). From it we take

  mediapipe/modules/face_detection/face_detection_short_range.tflite        (128x128, 896 anchors)
  mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite  (192x192, 2304 anchors)

and the graph configs compiled into mediapipe/python/_framework_bindings*.so, which hold the
anchor / decoding options (the wheel's *_cpu.binarypb files only name the subgraphs
`FaceDetectionShortRange` / `FaceDetectionFullRange`; those and the shared `FaceDetection`
subgraph are registered as serialized CalculatorGraphConfig protos inside that library). The
options are decoded from those bytes and must equal the constants below, else we stop.

Output (per model, NCHW, static shapes, opset 13, fp32 weights):

  input      [1, 3, S, S]  RGB, (pixel - 127.5) / 127.5, i.e. [-1, 1] as MediaPipe feeds it
  scores     [1, N, 2]     (1 - p, p), p = sigmoid(clip(logit, -100, 100)) the face probability
  boxes      [1, N, 4]     (x1, y1, x2, y2) as fractions of the input image (may leave 0..1 a bit)
  keypoints  [1, N, 12]    6 (x, y) fractions: right eye, left eye, nose tip, mouth centre,
                           right ear tragion, left ear tragion (MediaPipe's order; "right" is the
                           subject's right, i.e. on the image's left for a frontal face)

The SSD anchor decoding of MediaPipe's TensorsToDetectionsCalculator is part of the ONNX graph
(constants + elementwise ops), so the runtime only thresholds and runs NMS. MediaPipe letterboxes
the frame to a square with black bars (pixel 0 -> -1.0) before the detector, keeps p >= 0.5
(short) / 0.6 (full) and merges overlaps with weighted NMS at IoU 0.3.

Usage: convert.py --wheel mediapipe-0.10.21-....whl --out-dir models/detectors/blazeface
       [--image models/demo/astronaut.png]
Exits non-zero if anything is unsupported, if the graph options differ from the constants here,
or if the ONNX outputs drift from the TFLite interpreter's.
"""

import argparse
import base64
import hashlib
import os
import struct
import time
import zipfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
import tflite  # flatbuffer accessors generated from TFLite's schema.fbs

OPSET = 13
IR_VERSION = 7  # the IR version that goes with opset 13; older readers (tract) are happy with it
WHEEL_VERSION = "0.10.21"
FD_DIR = "mediapipe/modules/face_detection/"

# Per-model options of the FaceDetectionShortRange / FaceDetectionFullRange subgraphs
# (FaceDetectionOptions, fields 21..36), as found in mediapipe 0.10.21's _framework_bindings .so.
MODELS = {
    "short": dict(
        member=FD_DIR + "face_detection_short_range.tflite",
        graph_type="FaceDetectionShortRange",
        out="blazeface-short-128.onnx",
        size=128,
        num_layers=4,
        strides=[8, 16, 16, 16],
        interpolated_scale_aspect_ratio=1.0,
        num_boxes=896,
        scale=128.0,  # x_scale = y_scale = w_scale = h_scale
        min_score_thresh=0.5,
    ),
    "full": dict(
        member=FD_DIR + "face_detection_full_range_sparse.tflite",
        graph_type="FaceDetectionFullRange",
        out="blazeface-full-192.onnx",
        size=192,
        num_layers=1,
        strides=[4],
        interpolated_scale_aspect_ratio=0.0,
        num_boxes=2304,
        scale=192.0,
        min_score_thresh=0.6,
    ),
}

# Options shared by both models, set in the `FaceDetection` subgraph (same .so): the nodes
# SsdAnchorsCalculator, TensorsToDetectionsCalculator, ImageToTensorCalculator and
# NonMaxSuppressionCalculator. Only the first two shape the ONNX graph; the others are what the
# runtime should mimic around it and are printed for the record.
COMMON = dict(
    min_scale=0.1484375,  # irrelevant with fixed_anchor_size (every anchor is 1 x 1)
    max_scale=0.75,
    anchor_offset_x=0.5,
    anchor_offset_y=0.5,
    aspect_ratios=[1.0],
    fixed_anchor_size=True,
    num_classes=1,
    num_coords=16,
    box_coord_offset=0,
    keypoint_coord_offset=4,
    num_keypoints=6,
    num_values_per_keypoint=2,
    reverse_output_order=True,  # raw boxes are (x, y, w, h), keypoints (x, y)
    sigmoid_score=True,
    score_clipping_thresh=100.0,
    # pre-/post-processing, not in the ONNX graph:
    keep_aspect_ratio=True,  # letterbox to square
    float_range=(-1.0, 1.0),
    border_mode_zero=True,  # letterbox bars are black pixels (0, i.e. -1 after normalisation)
    nms_min_suppression_threshold=0.3,
    nms_overlap_iou=True,
    nms_weighted=True,
)

# Parity limits (ONNX Runtime vs the TFLite interpreter, both fp32 on CPU). The raw regressors are
# in input pixels (|values| up to ~S), the logits within about +-100.
MAX_RAW_REGRESSOR_DIFF = 2e-3
MAX_RAW_LOGIT_DIFF = 2e-3
MAX_DECODED_DIFF = 2e-5  # boxes / keypoints as fractions, probabilities


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def fail(msg):
    raise SystemExit(f"convert.py: {msg}")


# --------------------------------------------------------------------------------------------
# The wheel


def read_wheel(path):
    """Returns {member: bytes} for the files we use, each checked against the wheel's RECORD."""
    zf = zipfile.ZipFile(path)
    names = zf.namelist()
    record_name = f"mediapipe-{WHEEL_VERSION}.dist-info/RECORD"
    if record_name not in names:
        fail(f"{path} is not the mediapipe {WHEEL_VERSION} wheel (no {record_name})")
    record = {}
    for line in zf.read(record_name).decode().splitlines():
        parts = line.rsplit(",", 2)
        if len(parts) == 3 and parts[1].startswith("sha256="):
            record[parts[0]] = parts[1][len("sha256="):]
    so = [n for n in names if n.startswith("mediapipe/python/_framework_bindings") and n.endswith(".so")]
    if len(so) != 1:
        fail(f"expected one _framework_bindings .so in the wheel, found {so}")
    wanted = [m["member"] for m in MODELS.values()] + so + [f"mediapipe-{WHEEL_VERSION}.dist-info/LICENSE"]
    files = {}
    for name in wanted:
        data = zf.read(name)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        if record.get(name) != digest:
            fail(f"{name}: sha256 does not match the wheel's RECORD")
        files[name] = data
    files["__so__"] = files[so[0]]
    return files


# --------------------------------------------------------------------------------------------
# Reading MediaPipe's graph options out of the .so (a minimal, strict protobuf wire decoder)


def _varint(buf, i):
    value, shift = 0, 0
    for _ in range(10):
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
    raise ValueError("varint too long")


def pb_fields(buf):
    """Decodes one protobuf message into [(field, wire_type, value)]; ValueError if malformed."""
    out, i = [], 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wt = key >> 3, key & 7
        if field == 0:
            raise ValueError("field 0")
        if wt == 0:
            value, i = _varint(buf, i)
        elif wt == 1:
            value, i = bytes(buf[i:i + 8]), i + 8
        elif wt == 2:
            n, i = _varint(buf, i)
            value, i = bytes(buf[i:i + n]), i + n
        elif wt == 5:
            value, i = bytes(buf[i:i + 4]), i + 4
        else:
            raise ValueError(f"wire type {wt}")
        if i > len(buf):
            raise ValueError("truncated field")
        out.append((field, wt, value))
    return out


def pb_get(fields, number):
    """All values of one field; packed repeated varints are unpacked."""
    return [v for f, _, v in fields if f == number]


def pb_float(fields, number):
    vals = pb_get(fields, number)
    return [struct.unpack("<f", v)[0] for v in vals]


def pb_ints(fields, number):
    out = []
    for f, wt, v in fields:
        if f != number:
            continue
        if wt == 0:
            out.append(v)
        else:  # packed
            i = 0
            while i < len(v):
                x, i = _varint(v, i)
                out.append(x)
    return out


# CalculatorGraphConfig field numbers and wire types (mediapipe/framework/calculator.proto).
_GRAPH_FIELDS = {1: 2, 6: 2, 7: 2, 8: 0, 9: 2, 10: 2, 11: 0, 12: 2, 13: 2, 14: 2, 15: 2, 16: 2,
                 17: 2, 18: 2, 19: 2, 20: 2, 21: 0, 22: 2, 1001: 2, 1002: 2}


def find_graph(so, type_name):
    """Finds the serialized CalculatorGraphConfig whose `type` is type_name and returns its nodes
    as {calculator: [node fields]}. The graph ends with its `type` field (20) and, in these graphs,
    `graph_options` (1002); we take the earliest start that decodes cleanly up to there."""
    marker = b"\xa2\x01" + bytes([len(type_name)]) + type_name.encode()
    found = []
    pos = so.find(marker)
    while pos >= 0:
        end = pos + len(marker)
        if so[end:end + 2] == b"\xd2\x3e":  # graph_options
            n, j = _varint(so, end + 2)
            end = j + n
        for start in range(max(0, pos - 16384), pos):
            try:
                fields = pb_fields(so[start:end])
                if fields[0][0] != 1 or any(_GRAPH_FIELDS.get(f) != wt for f, wt, _ in fields):
                    continue
                if pb_get(fields, 20) != [type_name.encode()]:
                    continue
                nodes = {}
                for node in pb_get(fields, 1):
                    nf = pb_fields(node)
                    calc = pb_get(nf, 2)
                    if len(calc) != 1:
                        raise ValueError("node without calculator")
                    nodes.setdefault(calc[0].decode(), []).append(nf)
            except (ValueError, UnicodeDecodeError, IndexError):
                continue
            found.append(nodes)
            break
        pos = so.find(marker, pos + 1)
    if len(found) != 1:
        fail(f"found {len(found)} decodable graphs of type {type_name} in the .so (expected 1)")
    return found[0]


def node_ext_options(node, ext_number):
    """The options message of a node set through the legacy `options` field (7) as the proto2
    extension `ext` of CalculatorOptions."""
    for opts in pb_get(node, 7):
        vals = pb_get(pb_fields(opts), ext_number)
        if vals:
            return pb_fields(vals[0])
    fail(f"node has no options extension {ext_number}")


def node_any_options(node, type_url_suffix):
    """The options message of a node set through `node_options` (8, google.protobuf.Any)."""
    for anyb in pb_get(node, 8):
        a = pb_fields(anyb)
        if pb_get(a, 1) and pb_get(a, 1)[0].decode().endswith(type_url_suffix):
            return pb_fields(pb_get(a, 2)[0])
    fail(f"node has no node_options of type {type_url_suffix}")


def check_graph_options(so, key):
    """Decodes the options MediaPipe 0.10.21 uses for this model and checks our constants."""
    spec = MODELS[key]
    mismatches = []

    def expect(what, got, want):
        same_shape = np.shape(got) == np.shape(want)
        g64, w64 = np.asarray(got, np.float64), np.asarray(want, np.float64)
        if not (same_shape and np.allclose(g64, w64, rtol=0, atol=1e-7)):
            mismatches.append(f"{what}: graph has {got}, converter assumes {want}")

    sub = find_graph(so, spec["graph_type"])
    fd = node_any_options(sub["FaceDetection"][0], "mediapipe.FaceDetectionOptions")
    expect("model_path", [pb_get(fd, 1)[0].decode() == spec["member"]], [True])
    expect("tensor_width", pb_ints(fd, 21), [spec["size"]])
    expect("tensor_height", pb_ints(fd, 22), [spec["size"]])
    expect("num_layers", pb_ints(fd, 23), [spec["num_layers"]])
    expect("strides", pb_ints(fd, 24), spec["strides"])
    # field 25 defaults to 1.0 when absent (face_detection.proto)
    expect("interpolated_scale_aspect_ratio", pb_float(fd, 25) or [1.0], [spec["interpolated_scale_aspect_ratio"]])
    expect("num_boxes", pb_ints(fd, 31), [spec["num_boxes"]])
    for f, name in [(32, "x_scale"), (33, "y_scale"), (34, "w_scale"), (35, "h_scale")]:
        expect(name, pb_float(fd, f), [spec["scale"]])
    expect("min_score_thresh", pb_float(fd, 36), [np.float32(spec["min_score_thresh"])])

    g = find_graph(so, "FaceDetection")
    c = COMMON
    i2t = node_ext_options(g["ImageToTensorCalculator"][0], 334361939)
    expect("keep_aspect_ratio", pb_ints(i2t, 3), [int(c["keep_aspect_ratio"])])
    rng = pb_fields(pb_get(i2t, 4)[0])
    expect("output_tensor_float_range", pb_float(rng, 1) + pb_float(rng, 2), list(c["float_range"]))
    expect("border_mode (1 = BORDER_ZERO)", pb_ints(i2t, 6), [1 if c["border_mode_zero"] else 2])
    ssd = node_ext_options(g["SsdAnchorsCalculator"][0], 247258239)
    expect("min_scale", pb_float(ssd, 3), [c["min_scale"]])
    expect("max_scale", pb_float(ssd, 4), [c["max_scale"]])
    expect("anchor_offset_x", pb_float(ssd, 5) or [0.5], [c["anchor_offset_x"]])
    expect("anchor_offset_y", pb_float(ssd, 6) or [0.5], [c["anchor_offset_y"]])
    expect("aspect_ratios", pb_float(ssd, 11), c["aspect_ratios"])
    expect("reduce_boxes_in_lowest_layer", pb_ints(ssd, 12) or [0], [0])
    expect("fixed_anchor_size", pb_ints(ssd, 14), [int(c["fixed_anchor_size"])])
    expect("feature_map sizes (none: from strides)", pb_ints(ssd, 8) + pb_ints(ssd, 9), [])
    t2d = node_ext_options(g["TensorsToDetectionsCalculator"][0], 335742639)
    expect("num_classes", pb_ints(t2d, 1), [c["num_classes"]])
    expect("num_coords", pb_ints(t2d, 3), [c["num_coords"]])
    expect("keypoint_coord_offset", pb_ints(t2d, 9), [c["keypoint_coord_offset"]])
    expect("num_keypoints", pb_ints(t2d, 10), [c["num_keypoints"]])
    expect("num_values_per_keypoint", pb_ints(t2d, 11), [c["num_values_per_keypoint"]])
    expect("box_coord_offset", pb_ints(t2d, 12), [c["box_coord_offset"]])
    expect("apply_exponential_on_box_size", pb_ints(t2d, 13) or [0], [0])
    expect("reverse_output_order", pb_ints(t2d, 14), [int(c["reverse_output_order"])])
    expect("sigmoid_score", pb_ints(t2d, 15), [int(c["sigmoid_score"])])
    expect("score_clipping_thresh", pb_float(t2d, 16), [c["score_clipping_thresh"]])
    expect("flip_vertically", pb_ints(t2d, 18) or [0], [0])
    nms = node_ext_options(g["NonMaxSuppressionCalculator"][0], 55383100)
    expect("nms min_suppression_threshold", pb_float(nms, 3), [np.float32(c["nms_min_suppression_threshold"])])
    expect("nms overlap_type (3 = IoU)", pb_ints(nms, 4), [3])
    expect("nms algorithm (1 = WEIGHTED)", pb_ints(nms, 7), [1])
    if mismatches:
        fail(f"{key}: MediaPipe's graph options differ from ours:\n  " + "\n  ".join(mismatches))
    print(f"[{key}] graph options in the wheel match: {spec['graph_type']} (size {spec['size']}, "
          f"strides {spec['strides']}, interpolated ratio {spec['interpolated_scale_aspect_ratio']}, "
          f"{spec['num_boxes']} boxes, scale {spec['scale']}, min score {spec['min_score_thresh']}); "
          f"FaceDetection (letterbox with black bars, [-1, 1] input, anchor offset 0.5, fixed 1x1 anchors, "
          f"16 coords x/y-first, 6 keypoints, sigmoid(clip 100), weighted NMS IoU 0.3)")


# --------------------------------------------------------------------------------------------
# SSD anchors and box decoding, transcribed from MediaPipe's SsdAnchorsCalculator and
# TensorsToDetectionsCalculator::DecodeBoxes / score handling


def calculate_scale(min_scale, max_scale, stride_index, num_strides):
    if num_strides == 1:
        return (min_scale + max_scale) * 0.5
    return min_scale + (max_scale - min_scale) * stride_index / (num_strides - 1.0)


def ssd_anchors(spec, c=COMMON):
    """[N, 4] float32 anchors (x_center, y_center, w, h), in MediaPipe's order: consecutive
    layers with the same stride share one feature map; for each map, rows, columns, then the
    anchors of a cell."""
    strides = spec["strides"]
    anchors = []
    layer = 0
    while layer < spec["num_layers"]:
        heights, widths = [], []
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            scale = calculate_scale(c["min_scale"], c["max_scale"], last, len(strides))
            ratios, scales = list(c["aspect_ratios"]), [scale] * len(c["aspect_ratios"])
            if spec["interpolated_scale_aspect_ratio"] > 0.0:
                if last == len(strides) - 1:
                    nxt = 1.0
                else:
                    nxt = calculate_scale(c["min_scale"], c["max_scale"], last + 1, len(strides))
                scales.append(np.sqrt(scale * nxt))
                ratios.append(spec["interpolated_scale_aspect_ratio"])
            for r, s in zip(ratios, scales):
                heights.append(s / np.sqrt(r))
                widths.append(s * np.sqrt(r))
            last += 1
        stride = strides[layer]
        fm_h = int(np.ceil(spec["size"] / stride))
        fm_w = int(np.ceil(spec["size"] / stride))
        for y in range(fm_h):
            for x in range(fm_w):
                for k in range(len(heights)):
                    xc = (x + c["anchor_offset_x"]) / fm_w
                    yc = (y + c["anchor_offset_y"]) / fm_h
                    w, h = (1.0, 1.0) if c["fixed_anchor_size"] else (widths[k], heights[k])
                    anchors.append((xc, yc, w, h))
        layer = last
    a = np.asarray(anchors, dtype=np.float32)
    if len(a) != spec["num_boxes"]:
        fail(f"generated {len(a)} anchors, MediaPipe expects {spec['num_boxes']}")
    return a


def reference_decode(raw_boxes, raw_scores, anchors, spec, c=COMMON):
    """NumPy transcription of MediaPipe's decoding (the check for the ONNX version). raw_boxes
    [N, 16], raw_scores [N, 1] -> p [N], boxes [N, 4] (x1, y1, x2, y2), keypoints [N, 12]."""
    s = spec["scale"]
    ax, ay, aw, ah = anchors[:, 0], anchors[:, 1], anchors[:, 2], anchors[:, 3]
    o = c["box_coord_offset"]
    assert c["reverse_output_order"]
    xc = raw_boxes[:, o + 0] / s * aw + ax
    yc = raw_boxes[:, o + 1] / s * ah + ay
    w = raw_boxes[:, o + 2] / s * aw
    h = raw_boxes[:, o + 3] / s * ah
    boxes = np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], axis=1)
    kps = []
    for k in range(c["num_keypoints"]):
        off = c["keypoint_coord_offset"] + k * c["num_values_per_keypoint"]
        kps.append(raw_boxes[:, off] / s * aw + ax)
        kps.append(raw_boxes[:, off + 1] / s * ah + ay)
    t = c["score_clipping_thresh"]
    p = 1.0 / (1.0 + np.exp(-np.clip(raw_scores[:, 0].astype(np.float64), -t, t)))  # exp(100) overflows fp32
    return p.astype(np.float32), boxes.astype(np.float32), np.stack(kps, axis=1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# TFLite flatbuffer -> ONNX

_OPS = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}
_TYPES = {
    tflite.TensorType.FLOAT32: np.float32,
    tflite.TensorType.FLOAT16: np.float16,
    tflite.TensorType.INT32: np.int32,
    tflite.TensorType.INT64: np.int64,
}
_ACT = {0: None, 1: "Relu", 3: "Relu6"}  # fused activations we accept (NONE, RELU, RELU6)
_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


def _opts(op, cls):
    table = op.BuiltinOptions()
    o = cls()
    o.Init(table.Bytes, table.Pos)
    return o


def same_pads(in_size, kernel, stride, dilation):
    """TFLite SAME padding: out = ceil(in / stride); the total padding is split with the odd pixel
    at the end (bottom / right), unlike ONNX's symmetric default, so pads are always explicit."""
    eff = (kernel - 1) * dilation + 1
    out = -(-in_size // stride)
    total = max((out - 1) * stride + eff - in_size, 0)
    return total // 2, total - total // 2


def densify(values, shape, sparsity):
    """Expands a TFLite sparse tensor (DENSE / SPARSE_CSR levels, no block map) to dense."""
    if sparsity.BlockMapLength():
        fail("sparse tensors with a block map are not supported")
    order = list(sparsity.TraversalOrderAsNumpy())
    if sorted(order) != list(range(len(shape))):
        fail(f"unexpected traversal order {order} for shape {shape}")
    vec_types = {1: tflite.Int32Vector, 2: tflite.Uint16Vector, 3: tflite.Uint8Vector}

    def vector(kind, table):
        if kind not in vec_types:
            fail(f"sparse index vector type {kind}")
        v = vec_types[kind]()
        v.Init(table.Bytes, table.Pos)
        return v.ValuesAsNumpy().astype(np.int64)

    pos = np.zeros(1, dtype=np.int64)  # position in the next level (finally: in `values`)
    coords = np.zeros((1, 0), dtype=np.int64)  # coordinates so far, in traversal order
    for level in range(sparsity.DimMetadataLength()):
        dm = sparsity.DimMetadata(level)
        if dm.Format() == tflite.DimensionType.DENSE:
            n = dm.DenseSize()
            child = (pos[:, None] * n + np.arange(n)[None, :]).reshape(-1)
            coords = np.concatenate([np.repeat(coords, n, axis=0), np.tile(np.arange(n), len(pos))[:, None]], axis=1)
            pos = child
        else:  # SPARSE_CSR
            seg = vector(dm.ArraySegmentsType(), dm.ArraySegments())
            idx = vector(dm.ArrayIndicesType(), dm.ArrayIndices())
            counts = seg[pos + 1] - seg[pos]
            child = np.concatenate([np.arange(seg[p], seg[p + 1]) for p in pos]) if len(pos) else pos
            coords = np.concatenate([np.repeat(coords, counts, axis=0), idx[child][:, None]], axis=1)
            pos = child
    if len(pos) != len(values):
        fail(f"sparse tensor: {len(pos)} positions for {len(values)} values")
    dense = np.zeros(shape, dtype=values.dtype)
    index = [None] * len(shape)
    for level, dim in enumerate(order):
        index[dim] = coords[:, level]
    dense[tuple(index)] = values[pos]
    return dense


class Converter:
    """Walks the TFLite subgraph once, in order, emitting NCHW ONNX nodes. 4-D activations are kept
    NCHW; constants are folded (DEQUANTIZE fp16->fp32, DENSIFY) and stored as fp32 initializers
    in the layout their consumer needs."""

    def __init__(self, data, key):
        self.key = key
        self.model = tflite.Model.GetRootAsModel(data, 0)
        if self.model.SubgraphsLength() != 1:
            fail("expected a single subgraph")
        self.g = self.model.Subgraphs(0)
        self.nodes, self.inits, self.init_names = [], [], set()
        self.consts = {}  # tensor index -> numpy array (TFLite layout)
        self.pending_pad = {}  # PAD output index -> (input index, (top, left, bottom, right))
        self.used_ops = {}
        self.consumers = {}
        for i in range(self.g.OperatorsLength()):
            for t in self.g.Operators(i).InputsAsNumpy():
                self.consumers.setdefault(int(t), []).append(i)

    # tensors -----------------------------------------------------------------
    def tensor(self, idx):
        return self.g.Tensors(idx)

    def shape(self, idx):
        return [int(d) for d in self.tensor(idx).ShapeAsNumpy()] if self.tensor(idx).ShapeLength() else []

    def name(self, idx):
        return f"t{idx}"

    def raw_buffer(self, idx):
        buf = self.model.Buffers(self.tensor(idx).Buffer())
        if buf.Offset() > 1:
            fail("tensors stored outside the flatbuffer are not supported")
        return buf.DataAsNumpy() if buf.DataLength() else None

    def const(self, idx):
        """A constant tensor's value (folded or from its buffer), else None."""
        if idx in self.consts:
            return self.consts[idx]
        raw = self.raw_buffer(idx)
        if raw is None:
            return None
        t = self.tensor(idx)
        if t.Type() not in _TYPES:
            fail(f"constant tensor {t.Name()} has unsupported type {t.Type()}")
        if t.Sparsity() is not None:
            fail(f"sparse tensor {t.Name()} used outside DENSIFY")
        q = t.Quantization()
        if q is not None and q.ScaleLength():
            fail(f"quantized tensor {t.Name()} (only fp16 weights are supported)")
        value = np.frombuffer(raw.tobytes(), dtype=_TYPES[t.Type()]).reshape(self.shape(idx))
        self.consts[idx] = value
        return value

    def init(self, name, array):
        if name not in self.init_names:
            self.init_names.add(name)
            self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op_type, inputs, outputs, **attrs):
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=f"n{len(self.nodes)}_{op_type}", **attrs))

    def activation(self, act, src, dst):
        """Fused activation after an op: src (op result) -> dst."""
        if act not in _ACT:
            fail(f"fused activation {act} not supported")
        kind = _ACT[act]
        if kind is None:
            return src
        if kind == "Relu":
            self.node("Relu", [src], [dst])
        else:
            self.node("Clip", [src, self.init("c_zero", np.float32(0)), self.init("c_six", np.float32(6))], [dst])
        return dst

    def out_with_act(self, out_idx, act):
        """Name for the op's own result: the tensor itself, or an intermediate when an
        activation follows."""
        return self.name(out_idx) + ("_preact" if _ACT.get(act) else "")

    # ops ---------------------------------------------------------------------
    def convert(self):
        g = self.g
        if g.InputsLength() != 1:
            fail("expected one input")
        in_idx = g.Inputs(0)
        n, h, w, ch = self.shape(in_idx)
        if (n, h, w, ch) != (1, MODELS[self.key]["size"], MODELS[self.key]["size"], 3):
            fail(f"unexpected input shape {self.shape(in_idx)}")
        self.input_idx = in_idx
        for i in range(g.OperatorsLength()):
            op = g.Operators(i)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            opname = _OPS.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
            self.used_ops[opname] = self.used_ops.get(opname, 0) + 1
            ins = [int(t) for t in op.InputsAsNumpy()]
            outs = [int(t) for t in op.OutputsAsNumpy()]
            handler = getattr(self, "op_" + opname, None)
            if handler is None:
                fail(f"TFLite operator {opname} (op #{i}) is not supported")
            handler(op, ins, outs)
        # raw outputs: regressors [1, N, 16] and classificators [1, N, 1], told apart by shape
        raw = {}
        for j in range(g.OutputsLength()):
            idx = g.Outputs(j)
            raw[self.shape(idx)[-1]] = idx
        N = MODELS[self.key]["num_boxes"]
        if sorted(raw) != [1, 16] or self.shape(raw[16]) != [1, N, 16] or self.shape(raw[1]) != [1, N, 1]:
            fail(f"unexpected outputs {[self.shape(v) for v in raw.values()]}")
        return self.name(raw[16]), self.name(raw[1])

    def op_DEQUANTIZE(self, op, ins, outs):
        t = self.tensor(ins[0])
        src = self.consts.get(ins[0])
        if src is None and t.Type() == tflite.TensorType.FLOAT16:
            src = self.const(ins[0])
        if src is None or src.dtype != np.float16:
            fail(f"DEQUANTIZE of {t.Name()}: only constant fp16 weights are supported")
        self.consts[outs[0]] = src.astype(np.float32)  # exact: fp16 -> fp32 is lossless

    def op_DENSIFY(self, op, ins, outs):
        t = self.tensor(ins[0])
        if t.Sparsity() is None or t.Type() not in _TYPES:
            fail(f"DENSIFY of {t.Name()}: not a supported sparse constant")
        values = np.frombuffer(self.raw_buffer(ins[0]).tobytes(), dtype=_TYPES[t.Type()])
        self.consts[outs[0]] = densify(values, self.shape(ins[0]), t.Sparsity())

    def weight(self, idx, kind):
        """fp32 initializer for a conv kernel / bias in ONNX layout."""
        w = self.const(idx)
        if w is None:
            fail(f"{self.tensor(idx).Name()}: weights must be constant")
        w = w.astype(np.float32)
        if kind == "conv":  # [O, KH, KW, I] -> [O, I, KH, KW]
            w = w.transpose(0, 3, 1, 2)
        elif kind == "depthwise":  # [1, KH, KW, C*M] -> [C*M, 1, KH, KW]
            w = w.transpose(3, 0, 1, 2)
        return self.init(f"w{idx}_{kind}", w)

    def conv_input(self, idx):
        """The conv's input, looking through a PAD folded into it."""
        if idx in self.pending_pad:
            src, pads = self.pending_pad.pop(idx)
            return src, pads
        return idx, (0, 0, 0, 0)

    def _conv(self, op, ins, outs, depthwise):
        o = _opts(op, tflite.DepthwiseConv2DOptions if depthwise else tflite.Conv2DOptions)
        src, extra = self.conv_input(ins[0])
        _, ih, iw, cin = self.shape(src)
        wshape = self.shape(ins[1])
        kh, kw = wshape[1], wshape[2]
        sh, sw = o.StrideH(), o.StrideW()
        dh, dw = o.DilationHFactor(), o.DilationWFactor()
        # a folded PAD enlarges the input the SAME / VALID rule sees
        ph, pw = ih + extra[0] + extra[2], iw + extra[1] + extra[3]
        if o.Padding() == tflite.Padding.SAME:
            t, b = same_pads(ph, kh, sh, dh)
            l, r = same_pads(pw, kw, sw, dw)
        elif o.Padding() == tflite.Padding.VALID:
            t = b = l = r = 0
        else:
            fail(f"padding {o.Padding()}")
        pads = [t + extra[0], l + extra[1], b + extra[2], r + extra[3]]
        if depthwise:
            if o.DepthMultiplier() * cin != wshape[3]:
                fail("depthwise channel count mismatch")
            group, kind = cin, "depthwise"
        else:
            if wshape[3] != cin:
                fail("grouped CONV_2D is not supported")
            group, kind = 1, "conv"
        inputs = [self.name(src), self.weight(ins[1], kind)]
        if len(ins) > 2 and ins[2] >= 0:
            inputs.append(self.weight(ins[2], "bias"))
        act = o.FusedActivationFunction()
        res = self.out_with_act(outs[0], act)
        self.node("Conv", inputs, [res], kernel_shape=[kh, kw], strides=[sh, sw], dilations=[dh, dw],
                  pads=pads, group=group)
        self.activation(act, res, self.name(outs[0]))
        expect = self.shape(outs[0])
        oh = (ih + pads[0] + pads[2] - ((kh - 1) * dh + 1)) // sh + 1
        ow = (iw + pads[1] + pads[3] - ((kw - 1) * dw + 1)) // sw + 1
        if [oh, ow] != expect[1:3]:
            fail(f"conv output {oh}x{ow} but TFLite says {expect}")

    def op_CONV_2D(self, op, ins, outs):
        self._conv(op, ins, outs, depthwise=False)

    def op_DEPTHWISE_CONV_2D(self, op, ins, outs):
        self._conv(op, ins, outs, depthwise=True)

    def op_PAD(self, op, ins, outs):
        pads = self.const(ins[1])
        if pads is None or list(pads.shape) != [len(self.shape(ins[0])), 2]:
            fail("PAD needs constant paddings")
        pads = pads.astype(np.int64)
        if len(self.shape(ins[0])) != 4:
            fail("PAD of a non-4-D tensor")
        (n0, n1), (h0, h1), (w0, w1), (c0, c1) = pads
        users = self.consumers.get(outs[0], [])
        spatial_only = n0 == n1 == c0 == c1 == 0
        # Zero padding in H/W followed by a conv is the conv's own padding: fold it into the Conv
        # instead of a separate Pad (the full-range model pads explicitly before every VALID conv).
        if spatial_only and len(users) == 1 and outs[0] not in self.graph_outputs():
            code = self.model.OperatorCodes(self.g.Operators(users[0]).OpcodeIndex())
            user_op = _OPS.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
            if user_op in ("CONV_2D", "DEPTHWISE_CONV_2D") and int(self.g.Operators(users[0]).Inputs(0)) == outs[0]:
                self.pending_pad[outs[0]] = (ins[0], (int(h0), int(w0), int(h1), int(w1)))
                return
        # otherwise (BlazeFace's zero channel padding on residual shortcuts): an ONNX Pad
        onnx_pads = np.array([n0, c0, h0, w0, n1, c1, h1, w1], dtype=np.int64)
        pads_name = self.init(f"pads{outs[0]}", onnx_pads)
        self.node("Pad", [self.name(ins[0]), pads_name], [self.name(outs[0])], mode="constant")

    def graph_outputs(self):
        return {int(self.g.Outputs(j)) for j in range(self.g.OutputsLength())}

    def op_ADD(self, op, ins, outs):
        for t in ins:
            if self.const(t) is not None or self.shape(t) != self.shape(outs[0]):
                fail("ADD is only supported between two activations of the same shape")
        act = _opts(op, tflite.AddOptions).FusedActivationFunction()
        res = self.out_with_act(outs[0], act)
        self.node("Add", [self.name(ins[0]), self.name(ins[1])], [res])
        self.activation(act, res, self.name(outs[0]))

    def op_RELU(self, op, ins, outs):
        self.node("Relu", [self.name(ins[0])], [self.name(outs[0])])

    def op_MAX_POOL_2D(self, op, ins, outs):
        o = _opts(op, tflite.Pool2DOptions)
        _, ih, iw, _ = self.shape(ins[0])
        kh, kw, sh, sw = o.FilterHeight(), o.FilterWidth(), o.StrideH(), o.StrideW()
        if o.Padding() == tflite.Padding.SAME:
            t, b = same_pads(ih, kh, sh, 1)
            l, r = same_pads(iw, kw, sw, 1)
        else:
            t = b = l = r = 0
        # padded cells never win in either runtime (TFLite skips them, ONNX pads with -inf)
        act = o.FusedActivationFunction()
        res = self.out_with_act(outs[0], act)
        self.node("MaxPool", [self.name(ins[0])], [res], kernel_shape=[kh, kw], strides=[sh, sw], pads=[t, l, b, r])
        self.activation(act, res, self.name(outs[0]))

    def op_RESHAPE(self, op, ins, outs):
        src = self.name(ins[0])
        out_shape = self.shape(outs[0])
        if len(self.shape(ins[0])) == 4:  # back to TFLite's NHWC element order first
            self.node("Transpose", [src], [src + "_nhwc"], perm=[0, 2, 3, 1])
            src = src + "_nhwc"
        target = self.name(outs[0]) + ("_nhwc" if len(out_shape) == 4 else "")
        self.node("Reshape", [src, self.init(f"shape{outs[0]}", np.array(out_shape, dtype=np.int64))], [target])
        if len(out_shape) == 4:
            self.node("Transpose", [target], [self.name(outs[0])], perm=[0, 3, 1, 2])

    def op_CONCATENATION(self, op, ins, outs):
        o = _opts(op, tflite.ConcatenationOptions)
        rank = len(self.shape(outs[0]))
        axis = o.Axis() % rank
        if rank == 4:
            axis = _NHWC_TO_NCHW_AXIS[axis]
        act = o.FusedActivationFunction()
        res = self.out_with_act(outs[0], act)
        self.node("Concat", [self.name(t) for t in ins], [res], axis=axis)
        self.activation(act, res, self.name(outs[0]))

    def op_RESIZE_BILINEAR(self, op, ins, outs):
        o = _opts(op, tflite.ResizeBilinearOptions)
        if o.AlignCorners():
            mode = "align_corners"
        elif o.HalfPixelCenters():
            # TFLite: src = (dst + 0.5) / scale - 0.5 with the lower index clamped at 0, which is
            # ONNX's half_pixel (ORT and tract clamp the same way); equal for the 2x upsampling here
            mode = "half_pixel"
        else:
            mode = "asymmetric"
        n, oh, ow, c = self.shape(outs[0])
        sizes = self.init(f"sizes{outs[0]}", np.array([n, c, oh, ow], dtype=np.int64))
        self.node("Resize", [self.name(ins[0]), "", "", sizes], [self.name(outs[0])], mode="linear",
                  coordinate_transformation_mode=mode)

    def op_DEPTH_TO_SPACE(self, op, ins, outs):
        # TF/TFLite DEPTH_TO_SPACE (NHWC) reads channel (i * bs + j) * C + c for block offset
        # (i, j): ONNX's DCR mode in NCHW.
        bs = _opts(op, tflite.DepthToSpaceOptions).BlockSize()
        self.node("DepthToSpace", [self.name(ins[0])], [self.name(outs[0])], blocksize=bs, mode="DCR")


def build_onnx(tfl_bytes, key, tfl_sha):
    spec = MODELS[key]
    S, N = spec["size"], spec["num_boxes"]
    cv = Converter(tfl_bytes, key)
    reg, cls = cv.convert()
    if cv.pending_pad:
        fail("a PAD was folded into a conv that never came")
    # the network input, renamed
    cv.nodes = [_rename_input(nd, cv.name(cv.input_idx), "input") for nd in cv.nodes]

    # ---- decoding (MediaPipe TensorsToDetectionsCalculator, reverse_output_order) ----
    anchors = ssd_anchors(spec)
    a_xy = anchors[None, :, 0:2]  # [1, N, 2]
    a_wh = anchors[None, :, 2:4]
    scale = np.float32(spec["scale"])  # x_scale = y_scale = w_scale = h_scale
    init, node = cv.init, cv.node
    i64 = lambda v: np.array(v, dtype=np.int64)
    init("anchor_xy", a_xy.astype(np.float32))
    init("anchor_scale", (a_wh / scale).astype(np.float32))  # raw pixels -> fractions
    init("anchor_half_scale", (a_wh / scale * 0.5).astype(np.float32))
    init("ax2", i64([2]))
    for nm, lo, hi in [("ctr", 0, 2), ("size", 2, 4), ("kp", 4, 16)]:
        node("Slice", [reg, init(f"s_{lo}", i64([lo])), init(f"e_{hi}", i64([hi])), "ax2"], [f"raw_{nm}"])
    # centre = raw / scale * anchor_wh + anchor_xy ; half size = raw / scale * anchor_wh / 2
    node("Mul", ["raw_ctr", "anchor_scale"], ["ctr_rel"])
    node("Add", ["ctr_rel", "anchor_xy"], ["ctr"])
    node("Mul", ["raw_size", "anchor_half_scale"], ["half"])
    node("Sub", ["ctr", "half"], ["xy1"])
    node("Add", ["ctr", "half"], ["xy2"])
    node("Concat", ["xy1", "xy2"], ["boxes"], axis=2)
    # keypoints: the same affine map per (x, y) pair, broadcast over the 6 points
    node("Reshape", ["raw_kp", init("kp_shape", i64([1, N, 6, 2]))], ["raw_kp6"])
    node("Unsqueeze", ["anchor_scale", "ax2"], ["anchor_scale_kp"])
    node("Unsqueeze", ["anchor_xy", "ax2"], ["anchor_xy_kp"])
    node("Mul", ["raw_kp6", "anchor_scale_kp"], ["kp_rel"])
    node("Add", ["kp_rel", "anchor_xy_kp"], ["kp6"])
    node("Reshape", ["kp6", init("kp_flat", i64([1, N, 12]))], ["keypoints"])
    # score = sigmoid(clip(logit, -100, 100)); UltraFace pair (background, face)
    t = np.float32(COMMON["score_clipping_thresh"])
    node("Clip", [cls, init("clip_lo", -t), init("clip_hi", t)], ["logit"])
    node("Sigmoid", ["logit"], ["p_face"])
    node("Sub", [init("one", np.float32(1.0)), "p_face"], ["p_background"])
    node("Concat", ["p_background", "p_face"], ["scores"], axis=2)

    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        cv.nodes,
        f"blazeface_{key}_{S}",
        [helper.make_tensor_value_info("input", f32, [1, 3, S, S])],
        [helper.make_tensor_value_info("scores", f32, [1, N, 2]),
         helper.make_tensor_value_info("boxes", f32, [1, N, 4]),
         helper.make_tensor_value_info("keypoints", f32, [1, N, 12])],
        initializer=cv.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="sitfer models/detectors/blazeface/convert.py")
    model.ir_version = IR_VERSION
    model.doc_string = (
        f"MediaPipe BlazeFace ({spec['graph_type']}) from PyPI mediapipe=={WHEEL_VERSION}, "
        f"{spec['member']} (sha256 {tfl_sha}), Apache-2.0. Input [1,3,{S},{S}] RGB (x-127.5)/127.5, "
        f"letterboxed to square with black bars in MediaPipe. Outputs scores [1,{N},2] (1-p, p), "
        f"boxes [1,{N},4] x1 y1 x2 y2 and keypoints [1,{N},12] (x, y) x6 as fractions of the input: "
        f"right eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion. "
        f"MediaPipe keeps p >= {spec['min_score_thresh']} and runs weighted NMS at IoU 0.3.")
    for k, v in [("source", f"pypi:mediapipe=={WHEEL_VERSION}:{spec['member']}"), ("source_sha256", tfl_sha),
                 ("license", "Apache-2.0"), ("mean", "127.5"), ("std", "127.5"),
                 ("min_score_thresh", str(spec["min_score_thresh"])), ("nms_iou", "0.3")]:
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.checker.check_model(model, full_check=True)
    return model, cv, (reg, cls)


def _rename_input(nd, old, new):
    if old in nd.input:
        nd.input[:] = [new if x == old else x for x in nd.input]
    return nd


# --------------------------------------------------------------------------------------------
# Parity


def make_tflite_interpreter(data):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            from tensorflow.lite import Interpreter  # type: ignore
    it = Interpreter(model_content=data, num_threads=1)
    it.allocate_tensors()
    return it


def run_tflite(it, x_nchw):
    it.set_tensor(it.get_input_details()[0]["index"], np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)))
    it.invoke()
    outs = {tuple(d["shape"])[-1]: it.get_tensor(d["index"]) for d in it.get_output_details()}
    return outs[16][0], outs[1][0]  # [N, 16], [N, 1]


def with_raw_outputs(model, reg, cls, N):
    """A copy of the model that also returns the raw network outputs, for the comparison."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.output.append(helper.make_tensor_value_info(reg, TensorProto.FLOAT, [1, N, 16]))
    m.graph.output.append(helper.make_tensor_value_info(cls, TensorProto.FLOAT, [1, N, 1]))
    return m


def ort_session(model):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def weighted_nms(p, boxes, kps, min_score, iou_thr):
    """MediaPipe's WEIGHTED non-max suppression (IoU): each kept face is the score-weighted mean of
    the boxes / keypoints overlapping the best remaining one."""
    order = [i for i in np.argsort(-p, kind="stable") if p[i] >= min_score]
    out = []
    while order:
        top = order[0]
        b = boxes[top]
        area = lambda q: max(q[2] - q[0], 0) * max(q[3] - q[1], 0)
        group, rest = [], []
        for i in order:
            q = boxes[i]
            iw = max(min(b[2], q[2]) - max(b[0], q[0]), 0)
            ih = max(min(b[3], q[3]) - max(b[1], q[1]), 0)
            inter = iw * ih
            union = area(b) + area(q) - inter
            (group if union > 0 and inter / union > iou_thr else rest).append(i)
        if top not in group:
            group.insert(0, top)
            rest.remove(top)
        wts = p[group][:, None]
        out.append((float(p[top]), (boxes[group] * wts).sum(0) / wts.sum(), (kps[group] * wts).sum(0) / wts.sum()))
        order = rest
    return out


def load_image(path, size):
    from PIL import Image
    img = Image.open(path).convert("RGB")
    w, h = img.size
    if w != h:
        fail(f"{path}: the check image must be square (MediaPipe would letterbox it)")
    img = img.resize((size, size), Image.BILINEAR)
    x = np.asarray(img, dtype=np.float32)
    return ((x - 127.5) / 127.5).transpose(2, 0, 1)[None]  # [1, 3, S, S]


def check_parity(key, tfl_bytes, model, raw_names, image_path):
    spec = MODELS[key]
    S, N = spec["size"], spec["num_boxes"]
    it = make_tflite_interpreter(tfl_bytes)
    sess = ort_session(with_raw_outputs(model, *raw_names, N))
    anchors = ssd_anchors(spec)
    rng = np.random.default_rng(20250131)
    inputs = [(f"random#{i}", rng.uniform(-1, 1, size=(1, 3, S, S)).astype(np.float32)) for i in range(3)]
    inputs.append(("astronaut", load_image(image_path, S)))
    worst = dict(reg=0.0, logit=0.0, p=0.0, box=0.0, kp=0.0)
    results = {}
    for label, x in inputs:
        t_reg, t_cls = run_tflite(it, x)
        o_scores, o_boxes, o_kps, o_reg, o_cls = sess.run(None, {"input": x})
        o_scores, o_boxes, o_kps, o_reg, o_cls = o_scores[0], o_boxes[0], o_kps[0], o_reg[0], o_cls[0]
        r_p, r_boxes, r_kps = reference_decode(t_reg, t_cls, anchors, spec)
        d = dict(
            reg=float(np.abs(o_reg - t_reg).max()),
            logit=float(np.abs(o_cls - t_cls).max()),
            p=float(max(np.abs(o_scores[:, 1] - r_p).max(), np.abs(o_scores[:, 0] - (1 - r_p)).max())),
            box=float(np.abs(o_boxes - r_boxes).max()),
            kp=float(np.abs(o_kps - r_kps).max()),
        )
        for k in worst:
            worst[k] = max(worst[k], d[k])
        best_t, best_o = int(np.argmax(r_p)), int(np.argmax(o_scores[:, 1]))
        print(f"[{key}] {label:10s} raw max|diff| regressors {d['reg']:.2e} (max |value| {np.abs(t_reg).max():.1f}), "
              f"logits {d['logit']:.2e}; decoded p {d['p']:.2e}, boxes {d['box']:.2e}, keypoints {d['kp']:.2e}; "
              f"best anchor tflite #{best_t} p={r_p[best_t]:.4f} / onnx #{best_o} p={o_scores[best_o, 1]:.4f}")
        if r_p[best_t] >= spec["min_score_thresh"] and best_t != best_o and abs(r_p[best_t] - r_p[best_o]) > 1e-4:
            fail(f"{key} {label}: best anchor differs (tflite #{best_t}, onnx #{best_o})")
        results[label] = (o_scores[:, 1], o_boxes, o_kps, r_boxes)
    limits = dict(reg=MAX_RAW_REGRESSOR_DIFF, logit=MAX_RAW_LOGIT_DIFF, p=MAX_DECODED_DIFF,
                  box=MAX_DECODED_DIFF, kp=MAX_DECODED_DIFF)
    bad = [f"{k} {worst[k]:.2e} > {limits[k]:.0e}" for k in worst if worst[k] > limits[k]]
    if bad:
        fail(f"{key}: ONNX drifts from TFLite: " + ", ".join(bad))

    # the astronaut: one face, roughly x 0.33-0.55, y 0.1-0.45 of the picture
    p, boxes, kps, r_boxes = results["astronaut"]
    b = int(np.argmax(p))
    print(f"[{key}] astronaut best anchor #{b}: p={p[b]:.4f} box x1 {boxes[b, 0]:.4f} y1 {boxes[b, 1]:.4f} "
          f"x2 {boxes[b, 2]:.4f} y2 {boxes[b, 3]:.4f} (tflite + reference decode: "
          f"{' '.join(f'{v:.4f}' for v in r_boxes[b])})")
    faces = weighted_nms(p, boxes, kps, spec["min_score_thresh"], COMMON["nms_min_suppression_threshold"])
    names = ["right eye", "left eye", "nose", "mouth", "right ear", "left ear"]
    for score, box, kp in faces:
        print(f"[{key}] astronaut face after weighted NMS: p={score:.4f} box ({box[0]:.4f}, {box[1]:.4f}, "
              f"{box[2]:.4f}, {box[3]:.4f}); "
              + ", ".join(f"{n} ({kp[2 * i]:.3f}, {kp[2 * i + 1]:.3f})" for i, n in enumerate(names)))
    cx, cy = (boxes[b, 0] + boxes[b, 2]) / 2, (boxes[b, 1] + boxes[b, 3]) / 2
    if len(faces) != 1 or p[b] < spec["min_score_thresh"] or not (0.33 < cx < 0.55 and 0.1 < cy < 0.45):
        fail(f"{key}: the astronaut's face was not found where expected ({len(faces)} faces, "
             f"best p={p[b]:.3f}, centre {cx:.3f},{cy:.3f})")
    return worst, (float(p[b]), boxes[b].tolist()), faces


def time_onnx(model, S, runs=50):
    sess = ort_session(model)
    x = np.random.default_rng(1).uniform(-1, 1, size=(1, 3, S, S)).astype(np.float32)
    for _ in range(10):
        sess.run(None, {"input": x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {"input": x})
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


# --------------------------------------------------------------------------------------------


def write_atomic(path, data):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", required=True, help=f"the mediapipe=={WHEEL_VERSION} wheel (any platform)")
    ap.add_argument("--out-dir", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--image", default="models/demo/astronaut.png", help="square RGB photo with one face")
    ap.add_argument("--models", default="short,full")
    args = ap.parse_args()

    wheel = open(args.wheel, "rb").read()
    print(f"wheel {os.path.basename(args.wheel)} sha256 {sha256(wheel)}")
    files = read_wheel(args.wheel)
    os.makedirs(args.out_dir, exist_ok=True)
    for key in args.models.split(","):
        if key not in MODELS:
            fail(f"unknown model {key}")
        spec = MODELS[key]
        tfl = files[spec["member"]]
        tfl_sha = sha256(tfl)
        print(f"[{key}] {spec['member']} ({len(tfl)} bytes) sha256 {tfl_sha}")
        check_graph_options(files["__so__"], key)
        model, cv, raw_names = build_onnx(tfl, key, tfl_sha)
        print(f"[{key}] TFLite operators: " + ", ".join(f"{k} x{v}" for k, v in sorted(cv.used_ops.items())))
        ops = {}
        for nd in model.graph.node:
            ops[nd.op_type] = ops.get(nd.op_type, 0) + 1
        print(f"[{key}] ONNX operators: " + ", ".join(f"{k} x{v}" for k, v in sorted(ops.items())))
        worst, best, faces = check_parity(key, tfl, model, raw_names, args.image)
        print(f"[{key}] parity OK, worst over all inputs: raw regressors {worst['reg']:.2e}, raw logits "
              f"{worst['logit']:.2e}, p {worst['p']:.2e}, boxes {worst['box']:.2e}, keypoints {worst['kp']:.2e}")
        data = model.SerializeToString()
        ms = time_onnx(model, spec["size"])
        out = os.path.join(args.out_dir, spec["out"])
        write_atomic(out, data)
        print(f"[{key}] wrote {out} ({len(data)} bytes) sha256 {sha256(data)}; "
              f"onnxruntime 1 thread: {ms:.2f} ms per image (median of 50)")


if __name__ == "__main__":
    main()
