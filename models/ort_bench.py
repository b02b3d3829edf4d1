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
from quantize import letterbox, list_frames, load_manifest, shared_dir, spread  # noqa: E402


def main() -> int:
    here = Path(__file__).resolve().parent
    man = load_manifest()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=100, help="frames, evenly spread over --frames-dir")
    ap.add_argument("--frames-dir", type=Path,
                    default=shared_dir() / "data" / "drive-tmo324-lane-detecting" / "frames")
    ap.add_argument("--model-dir", type=Path, default=here, help="directory holding the model files")
    a = ap.parse_args()

    import onnxruntime as ort

    size, pad = int(man["input"]["width"]), float(man["input"]["pad_value"])
    name = man["input"]["name"]
    frames = list_frames(a.frames_dir)
    paths = [frames[i] for i in spread(len(frames), a.frames, 0.0)]
    t = time.perf_counter()
    xs = [letterbox(p, size, pad)[0] for p in paths]
    prep_ms = (time.perf_counter() - t) * 1e3 / len(xs)
    cores = os.cpu_count() or 1
    print(f"onnxruntime {ort.__version__}, {len(xs)} frames from {a.frames_dir}, {cores} cores "
          f"(letterbox {prep_ms:.1f} ms/frame, not timed)")
    print(f"{'model':<24}{'threads':>8}{'ms/frame':>10}{'p90 ms':>8}{'fps':>8}")
    for f in (man["fp32_file"], man["int8_file"]):
        p = a.model_dir / f
        if not p.exists():
            print(f"{f:<24}  missing ({p})")
            continue
        for threads in (1, cores):
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
            sess.run(None, {name: xs[0]})  # warm-up
            times = []
            for x in xs:
                t = time.perf_counter()
                sess.run(None, {name: x})
                times.append((time.perf_counter() - t) * 1e3)
            mean = statistics.fmean(times)
            p90 = float(np.percentile(times, 90))
            print(f"{f:<24}{threads:>8}{mean:>10.2f}{p90:>8.2f}{1e3 / mean:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
