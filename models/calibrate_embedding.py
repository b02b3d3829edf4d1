#!/usr/bin/env python3
"""Learn the frame-embedding transform of a detector from calibration frames (issue 10).

edgesieve pools the feature map named by the manifest's `[embedding] tensor` over the cells that
cover the picture (not the letterbox padding), L2-normalises it, subtracts a fixed centre and
projects it onto fixed principal axes:

    e = normalise(C (normalise(pool(x)) - mean))

This script computes `mean` (the mean of the normalised pooled vectors) and `C` (the top `dim`
principal axes of the centred vectors, one row per axis, sign fixed so each row's largest
component is positive) from the fp32 model under onnxruntime on the calibration frames, and
writes them as TOML to the manifest's `[embedding] calibration` file. The Rust side
(src/select/embedding.rs) reads that file; the pooling rule here must match
`Detector::postprocess` (cells `0..ceil(resized_h * H / input_h)` x `0..ceil(resized_w * W /
input_w)`), which tests/embedding_calibration.rs checks against tract. Each frame runs at the
input shape `edgesieve run` gives its frames (`detector.input_shape = "fit"`, e.g. 416x256 for
640x360, 416x160 for KITTI's 1242x375).

Calibration frames (deterministic): all of drive-udacity-lanelines, all of labeled-kitti-tiny
and every 8th frame of drive-tmo324-lane-detecting (see --help). The centre and axes are a
coordinate system: every vehicle whose sketches are merged must use the same file.

    python3 models/calibrate_embedding.py [--out FILE] [--data DIR] [--dim 64]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from quantize import MANIFEST, fit_shape, letterbox_to, list_frames, load_manifest, relax_input, shared_dir  # noqa: E402

SETS = (
    ("drive-udacity-lanelines/frames", 1),
    ("labeled-kitti-tiny/images", 1),
    ("drive-tmo324-lane-detecting/frames", 8),
)


def pooled(session, tensor: str, path: Path, input_name: str, size: int, pad: float,
           stride: int) -> np.ndarray:
    """The pooled map of one frame, with the model input shaped for it as `edgesieve run` shapes
    it (detector.input_shape = "fit")."""
    from PIL import Image

    with Image.open(path) as im:
        fw, fh = im.size
    iw, ih = fit_shape(fw, fh, size, size, stride)
    x = letterbox_to(path, iw, ih, pad)
    (fmap,) = session.run([tensor], {input_name: x})
    _, _, h, w = fmap.shape
    # As preprocess.rs: resized size truncated, at least 1 pixel.
    r = min(size / fw, size / fh)
    rw = min(iw, max(1, int(fw * r)))
    rh = min(ih, max(1, int(fh * r)))
    rows = min(h, -(-rh * h // ih))
    cols = min(w, -(-rw * w // iw))
    return fmap[0, :, :rows, :cols].astype(np.float64).mean(axis=(1, 2))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, default=MANIFEST)
    ap.add_argument("--out", type=Path, default=None, help="default: the manifest's [embedding] calibration")
    ap.add_argument("--data", type=Path, default=None, help="data root (default ../shared/data)")
    ap.add_argument("--dim", type=int, default=64, help="embedding dimension (edgesieve's EMBED_DIM)")
    args = ap.parse_args()

    import onnx
    import onnxruntime as ort

    m = load_manifest(args.manifest)
    emb = m["embedding"]
    tensor = emb["tensor"]
    out = args.out or args.manifest.parent / emb["calibration"]
    size = int(m["input"]["width"])
    pad = float(m["input"].get("pad_value", 114))
    data = args.data or shared_dir() / "data"

    stride = max(int(s) for s in m["output"]["strides"])
    model = onnx.load(str(args.manifest.parent / m["fp32_file"]))
    relax_input(model)
    if tensor not in {o.name for o in model.graph.output}:
        model.graph.output.append(onnx.ValueInfoProto(name=tensor))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])

    t0 = time.time()
    vecs, used, checks = [], [], []
    for rel, step in SETS:
        frames = list_frames(data / rel)[::step]
        if not frames:
            print(f"calibrate_embedding: no frames in {data / rel}", file=sys.stderr)
            return 1
        used.append(f"{rel} every {step}: {len(frames)}")
        for i, p in enumerate(frames):
            v = pooled(session, tensor, p, m["input"]["name"], size, pad, stride)
            if i == 1:
                # The pooled vector of one frame per set, for the Rust side to compare its own
                # pooling with (tests/embedding_calibration.rs).
                checks.append((f"{rel}/{p.name}", v))
            n = np.linalg.norm(v)
            if n > 0:
                vecs.append(v / n)
    X = np.stack(vecs)
    in_dim = X.shape[1]
    if args.dim > in_dim:
        print(f"calibrate_embedding: --dim {args.dim} > {in_dim} channels of {tensor}", file=sys.stderr)
        return 1
    mean = X.mean(axis=0)
    cov = np.cov((X - mean).T)
    w, v = np.linalg.eigh(cov)
    order = np.argsort(w)[::-1][: args.dim]
    comps = v[:, order].T
    for row in comps:
        if row[np.argmax(np.abs(row))] < 0:
            row *= -1
    explained = float(w[order].sum() / w.sum())

    def arr(a) -> str:
        return "[" + ", ".join(f"{float(x):.8g}" for x in a) + "]"

    lines = [
        f"# Embedding calibration of {m['name']} (models/calibrate_embedding.py): centre and principal",
        f"# axes of the picture-pooled, L2-normalised `{tensor}` feature map over {len(X)} frames:",
        *[f"#   {u}" for u in used],
        f"# {args.dim} axes keep {explained:.4f} of the variance. Generated; do not edit, do not commit.",
        f'tensor = "{tensor}"',
        f"in_dim = {in_dim}",
        f"out_dim = {args.dim}",
        f"frames = {len(X)}",
        f"mean = {arr(mean)}",
        "components = [",
        *[f"  {arr(row)}," for row in comps],
        "]",
        "",
        "# Pooled (not normalised) vectors of a few calibration frames under onnxruntime fp32.",
    ]
    for frame, v in checks:
        lines += ["[[check]]", f'frame = "{frame}"', f"pooled = {arr(v)}", ""]
    tmp = out.with_suffix(out.suffix + ".part")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out)
    print(f"calibrate_embedding: wrote {out} ({len(X)} frames, {in_dim} -> {args.dim}, "
          f"{explained:.3f} of the variance, {time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
