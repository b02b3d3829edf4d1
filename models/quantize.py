#!/usr/bin/env python3
"""Build the int8 YOLOX-nano model from the fp32 one and check it agrees with fp32.

Static quantization (onnxruntime.quantization.quantize_static), calibrated on real frames
preprocessed exactly as the model contract in yolox_nano.toml says (BGR, letterbox to 416x416 at
the top-left, pad 114, raw 0-255 values).

The default export is chosen for tract-onnx 0.23 (the Rust runtime), not for onnxruntime:
QOperator format, Conv only, per-tensor symmetric int8 weights, uint8 activations, MinMax
calibration, and only the 16 pointwise convs of the stride-32 (13x13) stage are quantized
(DEFAULT_QUANTIZE_ONLY: dark5 + SPP + its CSP block, the PAN stride-32 CSP block, the stride-32
head stem). Every other conv (stem, the 30 depthwise convs, the stride-8/16 pointwise convs, the
prediction convs) and every other op stays float. Why (measured, tract 0.23.9, x86_64 AVX-512 VNNI,
1 thread, per-node profile):
  - tract's QuantizeLinear (f32 -> u8) is a scalar per-element loop (round-ties-to-even):
    ~24 ms/frame for the 65 of them the old "all 73 pointwise convs" export needed, while the
    int8 matmuls it bought saved only ~2.5 ms over float (OptMatMul+Pack 24.0 vs 26.6 ms) because
    tract's f32 kernels are already fast on these small convs. Every conv here is followed by
    SiLU (float), so every quantized conv whose input is a float op (depthwise conv, Concat, Add,
    MaxPool) pays a QuantizeLinear. Only where one quantized pointwise conv feeds another does
    tract fold DequantizeLinear -> SiLU -> QuantizeLinear into a u8 LookupTable (no requantize).
    At 13x13 the tensors are small (cheap QuantizeLinear) and the convs are the widest (256/512
    input channels), which is the only place the trade is even; at stride 8/16 it loses.
  - quantized depthwise convs go through Im2col + int8 matmul + unfused i32 requantization
    (QScale/Add/Min/Max/Sub): ~250 ms/frame (profiled) with them quantized, so they cannot be used to build
    longer int8 chains;
  - unrestricted QOperator emits com.microsoft QLinearSigmoid/QLinearMul/QLinearConcat/QLinearAdd,
    which tract does not load;
  - QDQ loads in tract but tract only folds Q/DQ pairs around unary ops (into lookup tables); the
    convs stay float and the fake-quant ops are pure overhead (72-150 ms);
  - per-channel QLinearConv loads but tract does not fuse per-channel requantization into the
    matmul: ~8x slower than fp32;
  - replacing QuantizeLinear by Mul/Add/Clip/Cast does not help (Cast f32->u8 + the Mul/Add/Clip chain cost ~27 ms vs 24).
Result: this default runs at the same speed as fp32 in tract on x86_64 (within measurement noise,
~34 ms/frame both on a loaded 2-core box) and matches ~96% of the fp32 detections; the previous
default (all 73 pointwise convs, `--quantize-only "" --keep-float stem,depthwise,head`) was ~50 ms
and ~75-80%. It is not faster than fp32 on x86_64. On ARM (NEON/dotprod int8 kernels) re-measure.

The tensor named by [embedding].tensor in the manifest ("1024", output of Mul_298, the PAN
stride-32 feature map) is read by the Rust side as an extra output; this script fails if the
int8 graph no longer has a float tensor of that name.

Deterministic: fixed frame selection, MinMax calibration, no randomness.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MANIFEST = HERE / "yolox_nano.toml"


def shared_dir() -> Path:
    env = os.environ.get("EDGESIEVE_SHARED")
    return Path(env) if env else (REPO.parent / "shared")


def load_manifest(path: Path = MANIFEST) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


# ---------------------------------------------------------------- preprocessing / decode

def list_frames(d: Path) -> list[Path]:
    d = Path(d)
    if (d / "frames").is_dir():
        d = d / "frames"
    exts = {".jpg", ".jpeg", ".png"}
    return sorted(p for p in d.iterdir() if p.suffix.lower() in exts)


def spread(n_total: int, count: int, offset: float = 0.0) -> list[int]:
    """`count` indices evenly spread over range(n_total); offset in [0,1) shifts by a fraction of the step."""
    count = min(count, n_total)
    if count <= 0:
        return []
    step = n_total / count
    return sorted({min(n_total - 1, int((i + offset) * step)) for i in range(count)})


def letterbox(path: Path, size: int = 416, pad: float = 114.0) -> tuple[np.ndarray, float]:
    """Return (1x3xSxS float32 BGR tensor, scale)."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    r = min(size / w, size / h)
    nw, nh = max(1, int(round(w * r))), max(1, int(round(h * r)))
    canvas = np.full((size, size, 3), pad, dtype=np.float32)
    canvas[:nh, :nw] = np.asarray(im.resize((nw, nh), Image.BILINEAR), dtype=np.float32)
    x = np.ascontiguousarray(canvas[:, :, ::-1].transpose(2, 0, 1))[None]  # RGB->BGR, HWC->NCHW
    return x, r


def fit_shape(frame_w: int, frame_h: int, width: int, height: int, stride: int) -> tuple[int, int]:
    """The model input edgesieve runs for frames of frame_w x frame_h (detector.input_shape =
    "fit", src/detect/model.rs input_shape_for): the frame scaled to fit width x height, each side
    plus half the stride rounded up to the stride, no larger than width x height."""
    r = min(width / frame_w, height / frame_h)
    rw, rh = min(width, max(1, int(frame_w * r))), min(height, max(1, int(frame_h * r)))

    def up(v: int, most: int) -> int:
        return max(min(stride, most), min(most, -(-(v + stride // 2) // stride) * stride))

    return up(rw, width), up(rh, height)


def letterbox_to(path: Path, width: int, height: int, pad: float) -> np.ndarray:
    """1x3xHxW float32 BGR: the frame scaled to fit, top-left, the rest padded (as edgesieve)."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    r = min(width / w, height / h)
    nw, nh = max(1, int(w * r)), max(1, int(h * r))
    canvas = np.full((height, width, 3), pad, dtype=np.float32)
    canvas[:nh, :nw] = np.asarray(im.resize((nw, nh), Image.BILINEAR), dtype=np.float32)
    return np.ascontiguousarray(canvas[:, :, ::-1].transpose(2, 0, 1))[None]


def relax_input(model) -> None:
    """Makes an ONNX model (onnx.ModelProto, changed in place) accept any stride-aligned input
    size: its input's height and width become symbolic and the shapes the file pins for the
    declared size (value_info, output dims) are cleared, as edgesieve's loader ignores them."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    del model.graph.value_info[:]
    for o in model.graph.output:
        o.type.tensor_type.ClearField("shape")


_GRID_CACHE: dict = {}


def _grid(size: int, strides: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    key = (size, strides)
    if key not in _GRID_CACHE:
        gs, ss = [], []
        for s in strides:
            n = size // s
            yv, xv = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
            gs.append(np.stack([xv, yv], -1).reshape(-1, 2))
            ss.append(np.full((n * n, 1), s))
        _GRID_CACHE[key] = (np.concatenate(gs).astype(np.float32), np.concatenate(ss).astype(np.float32))
    return _GRID_CACHE[key]


def decode(raw: np.ndarray, size: int = 416, strides=(8, 16, 32), score_thr: float = 0.3,
           iou_thr: float = 0.45) -> np.ndarray:
    """raw: (N,85) or (1,N,85). Returns (K,6) [x1,y1,x2,y2,score,cls] in network-input pixels, after
    class-aware NMS. obj and class scores are already sigmoided in this export."""
    raw = raw.reshape(-1, raw.shape[-1]).astype(np.float32)
    grid, stride = _grid(size, tuple(strides))
    xy = (raw[:, :2] + grid) * stride
    wh = np.exp(raw[:, 2:4]) * stride
    scores = raw[:, 4:5] * raw[:, 5:]
    cls = scores.argmax(1)
    sc = scores[np.arange(len(cls)), cls]
    keep = sc >= score_thr
    if not keep.any():
        return np.zeros((0, 6), np.float32)
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1)[keep]
    sc, cls = sc[keep], cls[keep]
    out = []
    for c in np.unique(cls):
        m = cls == c
        b, s = boxes[m], sc[m]
        for i in nms(b, s, iou_thr):
            out.append([*b[i], s[i], c])
    out = np.array(out, np.float32).reshape(-1, 6)
    return out[np.argsort(-out[:, 4], kind="stable")]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        if not order:
            break
        ious = iou_matrix(boxes[i:i + 1], boxes[order])[0]
        order = [j for j, v in zip(order, ious) if v < thr]
    return keep


def match(ref: np.ndarray, test: np.ndarray, iou_thr: float = 0.5) -> tuple[int, list[float]]:
    """Greedy one-to-one matching of ref boxes (by descending score) to test boxes of the same class
    at IoU >= iou_thr. Returns (matched count, list of |score diff| of matched pairs)."""
    if len(ref) == 0 or len(test) == 0:
        return 0, []
    ious = iou_matrix(ref[:, :4], test[:, :4])
    ious[ref[:, 5][:, None] != test[:, 5][None, :]] = 0
    used = np.zeros(len(test), bool)
    n, diffs = 0, []
    for i in range(len(ref)):
        cand = np.where(~used & (ious[i] >= iou_thr))[0]
        if len(cand):
            j = cand[np.argmax(ious[i, cand])]
            used[j] = True
            n += 1
            diffs.append(abs(float(ref[i, 4]) - float(test[j, 4])))
    return n, diffs


# ---------------------------------------------------------------- quantization

# The pointwise (1x1, group 1) SiLU convs of the stride-32 (13x13) stage of yolox_nano.onnx: dark5
# (Conv_165/168), SPP out (175) and its CSP block (178-197 without the depthwise 187), the PAN
# stride-32 CSP block (276-296 without the depthwise 289; Conv_296 -> Mul_298 = tensor "1024") and
# the stride-32 head stem (365). See the module docstring for why only these.
DEFAULT_QUANTIZE_ONLY = ("Conv_165,Conv_168,Conv_175,Conv_178,Conv_181,Conv_184,Conv_190,Conv_194,Conv_197,"
                         "Conv_276,Conv_280,Conv_283,Conv_286,Conv_292,Conv_296,Conv_365")

class FrameReader:
    """CalibrationDataReader over a list of image paths."""

    def __init__(self, paths: list[Path], input_name: str, size: int, pad: float):
        self.paths, self.input_name, self.size, self.pad = paths, input_name, size, pad
        self.i = 0

    def get_next(self):
        if self.i >= len(self.paths):
            return None
        x, _ = letterbox(self.paths[self.i], self.size, self.pad)
        self.i += 1
        return {self.input_name: x}

    def rewind(self):
        self.i = 0


def float_tensor_names(model) -> set[str]:
    """Names of float tensors produced by nodes (or graph inputs) in the model."""
    import onnx
    from onnx import TensorProto
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    produced = {o for n in model.graph.node for o in n.output}
    return {n for n in produced if types.get(n) == TensorProto.FLOAT}


def conv_groups(model) -> dict[str, list[str]]:
    """Named groups of Conv nodes: stem (first conv), depthwise (group > 1), head (prediction convs,
    i.e. convs not followed by SiLU: reg/obj/cls outputs)."""
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.op_type)
    dw = [n.name for n in convs if any(a.name == "group" and a.i > 1 for a in n.attribute)]
    head = [n.name for n in convs if "Mul" not in consumers.get(n.output[0], [])]
    return {"stem": [convs[0].name] if convs else [], "depthwise": dw, "head": head}


def quantize(fp32: Path, out: Path, calib: list[Path], fmt: str, per_channel: bool, ops: list[str],
             act_type: str, weight_type: str, embed: str, input_name: str, size: int, pad: float,
             preprocess: bool, keep_float: list[str], calib_method: str, sym_act: bool = False,
             quantize_only: list[str] | None = None) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    qt = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    with tempfile.TemporaryDirectory() as td:
        src = fp32
        if preprocess:
            src = Path(td) / "pre.onnx"
            quant_pre_process(str(fp32), str(src), skip_symbolic_shape=True)
        model = onnx.load(str(src))
        if fmt == "qdq" and per_channel and model.opset_import[0].version < 13:
            # per-axis DequantizeLinear needs opset 13
            from onnx import version_converter
            model = version_converter.convert_version(model, 13)
            src = Path(td) / "op13.onnx"
            onnx.save(model, str(src))
        groups = conv_groups(model)
        names = {n.name for n in model.graph.node}
        float_nodes = []
        for k in keep_float:
            if k in groups:
                float_nodes += groups[k]
            elif k in names:
                float_nodes.append(k)
            else:
                raise SystemExit(f"error: --keep-float {k!r} is neither a group {sorted(groups)} nor a node name")
        if quantize_only:
            # quantize exactly these nodes (groups or node names); every other node of `ops` stays float
            only = set()
            for k in quantize_only:
                if k in groups:
                    only |= set(groups[k])
                elif k in names:
                    only.add(k)
                else:
                    raise SystemExit(f"error: --quantize-only {k!r} is neither a group {sorted(groups)} nor a node name")
            float_nodes += [n.name for n in model.graph.node
                            if (not ops or n.op_type in ops) and n.name not in only]
        # Keep the embedding tensor a float tensor under its exact name: never quantize its producer
        # (only matters when Mul is in `ops`; Conv-only never touches Mul_298).
        producer = [n.name for n in model.graph.node if embed in n.output]
        exclude = producer if embed and (not ops or any(n.op_type in ops for n in model.graph.node if n.name in producer)) else []
        quantize_static(
            str(src), str(out), FrameReader(calib, input_name, size, pad),
            quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
            op_types_to_quantize=ops or None, per_channel=per_channel, reduce_range=False,
            activation_type=qt[act_type], weight_type=qt[weight_type],
            nodes_to_exclude=sorted(set(exclude + float_nodes)),
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[calib_method],
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": sym_act},
        )
    q = onnx.load(str(out))
    contrib = sorted({n.op_type for n in q.graph.node if n.domain not in ("", "ai.onnx")})
    if contrib:
        print(f"warning: int8 graph uses non-standard ops {contrib} (tract-onnx cannot load them)", file=sys.stderr)
    if embed:
        if embed not in float_tensor_names(q):
            raise SystemExit(f"error: embedding tensor {embed!r} is no longer a float tensor in {out}")
    from collections import Counter
    ops_hist = Counter(n.op_type for n in q.graph.node)
    if float_nodes:
        print(f"kept float: {len(set(float_nodes))} nodes ({', '.join(keep_float)}"
              + (f"; quantize-only {len(quantize_only)} entries" if quantize_only else "") + ")")
    print(f"wrote {out} ({out.stat().st_size:,} bytes); ops: " + ", ".join(f"{k}x{v}" for k, v in sorted(ops_hist.items())))
    if embed:
        how = "its producer excluded from quantization" if exclude else "its producer is not quantized"
        print(f"embedding tensor {embed!r}: present as a float tensor ({', '.join(producer) or '?'}; {how})")


# ---------------------------------------------------------------- agreement

def agreement(fp32: Path, int8: Path, sets: list[tuple[str, list[Path]]], input_name: str, size: int,
              pad: float, strides, score_thr: float, iou_thr: float, embed: str | None) -> None:
    import onnxruntime as ort

    import onnx

    def session(p):
        # expose the embedding tensor as an extra output (it is not a graph output)
        m = onnx.load(str(p))
        if embed and embed not in {o.name for o in m.graph.output}:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(embed))
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])

    sf, sq = session(fp32), session(int8)
    outs = ["output"] + ([embed] if embed else [])
    print(f"\nagreement int8 vs fp32 (onnxruntime CPU; class-aware NMS IoU {iou_thr}, score >= {score_thr}; "
          f"match = same class, IoU >= 0.5)")
    print(f"{'set':<40}{'frames':>7}{'fp32 boxes':>11}{'int8 boxes':>11}{'matched':>13}{'max |dscore|':>14}"
          f"{'mean |dscore|':>14}" + (f"{'emb cos min / mean':>20}" if len(outs) > 1 else ""))
    tot = [0, 0, 0, 0, []]
    for name, paths in sets:
        nf = nq = nm = 0
        diffs, coss = [], []
        for p in paths:
            x, _ = letterbox(p, size, pad)
            rf = sf.run(outs, {input_name: x})
            rq = sq.run(outs, {input_name: x})
            df = decode(rf[0], size, strides, score_thr, iou_thr)
            dq = decode(rq[0], size, strides, score_thr, iou_thr)
            m, d = match(df, dq)
            nf, nq, nm = nf + len(df), nq + len(dq), nm + m
            diffs += d
            if len(outs) > 1:
                a, b = rf[1].ravel().astype(np.float64), rq[1].ravel().astype(np.float64)
                coss.append(float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)))
        share = nm / nf if nf else float("nan")
        print(f"{name:<40}{len(paths):>7}{nf:>11}{nq:>11}{f'{nm} ({share:.1%})':>13}"
              f"{(max(diffs) if diffs else 0):>14.3f}{(float(np.mean(diffs)) if diffs else 0):>14.3f}"
              + (f"{min(coss):>9.3f} / {float(np.mean(coss)):.3f}" if coss else ""))
        tot[0] += len(paths); tot[1] += nf; tot[2] += nq; tot[3] += nm; tot[4] += diffs
    share = tot[3] / tot[1] if tot[1] else float("nan")
    print(f"{'total':<40}{tot[0]:>7}{tot[1]:>11}{tot[2]:>11}{f'{tot[3]} ({share:.1%})':>13}"
          f"{(max(tot[4]) if tot[4] else 0):>14.3f}{(float(np.mean(tot[4])) if tot[4] else 0):>14.3f}")
    if len(outs) > 1:
        print(f"(emb cos = lowest / mean per-frame cosine similarity between the fp32 and int8 {embed!r} tensors over the set)")


def main() -> int:
    man = load_manifest()
    shared = shared_dir()
    data = shared / "data"
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fp32", type=Path, default=HERE / man["fp32_file"], help="fp32 model (default: models/<fp32_file>)")
    ap.add_argument("--out", type=Path, default=HERE / man["int8_file"], help="int8 model to write")
    ap.add_argument("--calib-dir", type=Path, default=data / "drive-tmo324-lane-detecting" / "frames")
    ap.add_argument("--calib-count", type=int, default=64, help="frames evenly spread over --calib-dir")
    ap.add_argument("--format", choices=["qdq", "qoperator"], default="qoperator")
    ap.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=False,
                    help="per-output-channel weight scales (default off: tract runs per-channel requantization unfused, ~2.5x slower)")
    ap.add_argument("--ops", default="Conv", help="comma-separated op types to quantize (default: Conv)")
    ap.add_argument("--activation-type", choices=["uint8", "int8"], default="uint8")
    ap.add_argument("--weight-type", choices=["uint8", "int8"], default="int8")
    ap.add_argument("--quantize-only", default=DEFAULT_QUANTIZE_ONLY,
                    help="comma-separated conv groups (stem, depthwise, head) or node names to quantize; every other "
                         "node of --ops stays float (default: the 16 stride-32 pointwise convs; '' = quantize all "
                         "--ops nodes except --keep-float)")
    ap.add_argument("--keep-float", default="stem,depthwise,head",
                    help="comma-separated conv groups (stem, depthwise, head) or node names left in float "
                         "(applies on top of --quantize-only)")
    ap.add_argument("--symmetric-activations", action="store_true", help="activation zero point 0 (int8) / 128 (uint8)")
    ap.add_argument("--calibrate-method", choices=["minmax", "percentile"], default="minmax")
    ap.add_argument("--no-preprocess", action="store_true", help="skip quant_pre_process (shape inference + ORT basic optimisation)")
    ap.add_argument("--eval-count", type=int, default=50, help="held-out frames per evaluation set (0 = skip evaluation)")
    ap.add_argument("--eval-dir", type=Path, action="append",
                    help="extra held-out set(s) (default: drive-udacity-lanelines); calibration dir is always used")
    ap.add_argument("--eval-only", action="store_true", help="do not quantize; only compare an existing --out with --fp32")
    a = ap.parse_args()

    inp, outp = man["input"], man["output"]
    size, pad = int(inp["width"]), float(inp["pad_value"])
    if inp["width"] != inp["height"] or inp.get("channel_order", "bgr") != "bgr" or float(inp.get("scale", 1.0)) != 1.0:
        raise SystemExit("quantize.py implements only the square, BGR, raw-0-255 contract of yolox_nano.toml")
    embed = man.get("embedding", {}).get("tensor")
    if not a.fp32.exists():
        raise SystemExit(f"error: {a.fp32} not found; run models/fetch first")

    frames = list_frames(a.calib_dir)
    if not frames:
        raise SystemExit(f"error: no frames in {a.calib_dir}")
    calib_idx = spread(len(frames), a.calib_count, 0.0)
    calib = [frames[i] for i in calib_idx]
    if not a.eval_only:
        t = time.time()
        print(f"calibrating on {len(calib)} frames of {a.calib_dir} (of {len(frames)}); format={a.format} "
              f"ops={a.ops} per_channel={a.per_channel} act={a.activation_type} weight={a.weight_type} "
              f"quantize_only={'default (16 stride-32 pointwise convs)' if a.quantize_only == DEFAULT_QUANTIZE_ONLY else (a.quantize_only or 'all')}")
        quantize(a.fp32, a.out, calib, a.format, a.per_channel, [o for o in a.ops.split(",") if o],
                 a.activation_type, a.weight_type, embed, inp["name"], size, pad, not a.no_preprocess,
                 [k for k in a.keep_float.split(",") if k], a.calibrate_method, a.symmetric_activations,
                 [k for k in a.quantize_only.split(",") if k])
        print(f"quantized in {time.time() - t:.0f} s")

    if a.eval_count > 0:
        # held-out: offset half a calibration step, excluding any calibration frame
        cal = set(calib_idx)
        held = [frames[i] for i in spread(len(frames), a.eval_count, 0.5) if i not in cal]
        sets = [(f"{a.calib_dir.parent.name if a.calib_dir.name == 'frames' else a.calib_dir.name} (held-out)", held)]
        for d in (a.eval_dir or [data / "drive-udacity-lanelines"]):
            if d.exists():
                fs = list_frames(d)
                sets.append((d.name, [fs[i] for i in spread(len(fs), a.eval_count, 0.5)]))
        agreement(a.fp32, a.out, sets, inp["name"], size, pad, outp.get("strides", [8, 16, 32]),
                  0.3, 0.45, embed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
