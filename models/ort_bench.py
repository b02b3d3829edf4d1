#!/usr/bin/env python3
"""Time the fp32 and int8 detector files under onnxruntime (CPU) on real frames.

Frames are letterboxed before timing (preprocessing is not timed); one warm-up run per session is
not timed. Each model is timed with intra_op_num_threads=1 and with all cores.
This measures onnxruntime, not tract: the Rust binary's speed is measured by the Rust side.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quantize import letterbox_to, list_frames, load_manifest, relax_input, shared_dir, spread  # noqa: E402


def relaxed(path: Path) -> bytes:
    """The model file, accepting any stride-aligned input size (quantize.relax_input)."""
    import onnx

    m = onnx.load(str(path))
    relax_input(m)
    return m.SerializeToString()


def parse_shape(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    return int(w), int(h)


def main() -> int:
    here = Path(__file__).resolve().parent
    man = load_manifest()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=100, help="frames, evenly spread over --frames-dir")
    ap.add_argument("--frames-dir", type=Path,
                    default=shared_dir() / "data" / "drive-tmo324-lane-detecting" / "frames")
    ap.add_argument("--model-dir", type=Path, default=here, help="directory holding the model files")
    ap.add_argument("--shapes", default="",
                    help="input shapes WxH, comma-separated (default: the manifest's)")
    ap.add_argument("--precisions", default="fp32,int8", help="fp32, int8 or both")
    ap.add_argument("--threads", default="", help="thread counts, comma-separated (default: 1 and all cores)")
    ap.add_argument("--rows", action="store_true",
                    help="machine-readable lines: ort PRECISION THREADS WxH MS_PER_FRAME")
    a = ap.parse_args()

    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime is not installed (pip install -r models/requirements.txt)", file=sys.stderr)
        return 3

    pad = float(man["input"]["pad_value"])
    name = man["input"]["name"]
    square = (int(man["input"]["width"]), int(man["input"]["height"]))
    shapes = [parse_shape(s) for s in a.shapes.split(",") if s] or [square]
    cores = os.cpu_count() or 1
    threads = [int(t) for t in a.threads.split(",") if t] or sorted({1, cores})
    files = {"fp32": man["fp32_file"], "int8": man["int8_file"]}
    frames = list_frames(a.frames_dir)
    paths = [frames[i] for i in spread(len(frames), a.frames, 0.0)]
    inputs = {shape: [letterbox_to(p, *shape, pad) for p in paths] for shape in shapes}
    if not a.rows:
        print(f"onnxruntime {ort.__version__}, {len(paths)} frames from {a.frames_dir}, {cores} cores "
              "(letterbox not timed)")
        print(f"{'model':<24}{'input':>9}{'threads':>8}{'ms/frame':>10}{'p90 ms':>8}{'fps':>8}")
    for precision in [p for p in a.precisions.split(",") if p]:
        f = files[precision]
        p = a.model_dir / f
        if not p.exists():
            print(f"{f:<24}  missing ({p})", file=sys.stderr)
            continue
        model = relaxed(p)
        for shape in shapes:
            xs = inputs[shape]
            for t in threads:
                so = ort.SessionOptions()
                so.intra_op_num_threads = t
                so.inter_op_num_threads = 1
                sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
                sess.run(None, {name: xs[0]})  # warm-up
                times = []
                for x in xs:
                    t0 = time.perf_counter()
                    sess.run(None, {name: x})
                    times.append((time.perf_counter() - t0) * 1e3)
                mean = statistics.fmean(times)
                if a.rows:
                    print(f"ort {precision} {t} {shape[0]}x{shape[1]} {mean:.3f} {min(times):.3f}", flush=True)
                else:
                    p90 = float(np.percentile(times, 90))
                    print(f"{f:<24}{shape[0]:>5}x{shape[1]:<3}{t:>8}{mean:>10.2f}{p90:>8.2f}{1e3 / mean:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
