#!/usr/bin/env python3
"""Peak memory of loading and running a CLIP bundle, owlet against onnxruntime, on the
same graphs with the same threads: each side is a whole child process (owlet's CLI;
a Python process with onnxruntime) that loads both graphs and runs one image and one
text; its peak resident set comes from wait4. Load and run times are wall clock of
the same process.

    benches/memory.py --model B [--int8 OWLET_INT8_BUNDLE --ort-int8 CACHE] [--threads N]

Prints a table and one JSON line. onnxruntime's int8 is quantize_dynamic of the same
fp32 graphs (benches/ort_int8.py), cached in CACHE.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
IMAGE = ROOT / "models/demo-frames/coffee.jpg"
PEAK_RSS = ROOT / "target/release/peak-rss"

ORT_CHILD = r"""
import sys, time, numpy as np, onnxruntime as ort
vision, text, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
t = time.perf_counter()
v = ort.InferenceSession(vision, so, providers=["CPUExecutionProvider"])
x = ort.InferenceSession(text, so, providers=["CPUExecutionProvider"])
load = time.perf_counter() - t
side = v.get_inputs()[0].shape[2] if isinstance(v.get_inputs()[0].shape[2], int) else 224
t = time.perf_counter()
v.run(None, {"pixel_values": np.zeros((1, 3, side, side), np.float32)})
ids = np.full((1, 77), 49407, np.int64); ids[0, 0] = 49406
x.run(None, {"input_ids": ids, "attention_mask": np.ones((1, 77), np.int64)})
print(f"{load:.3f} {time.perf_counter() - t:.3f}")
"""


def run(cmd):
    """Runs cmd to its end; returns (peak MiB of the whole process, wall s, stdout)."""
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    out_path, err_path = tmp / f"owlet-memory-{os.getpid()}.out", tmp / f"owlet-memory-{os.getpid()}.err"
    t = time.perf_counter()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        # Files, not pipes: nobody reads a pipe while wait4 waits.
        # Through peak-rss (tests/bin/peak_rss.rs): a child forked from this Python
        # process would report this process's own high-water mark as its peak.
        code = subprocess.call([PEAK_RSS, *cmd], stdout=out, stderr=err, cwd=ROOT)
    wall = time.perf_counter() - t
    text, errors = out_path.read_text(), err_path.read_text()
    out_path.unlink(), err_path.unlink()
    last = errors.strip().splitlines()[-1] if errors.strip() else ""
    if code != 0 or not last.startswith("peak_rss_kib="):
        sys.exit(f"{' '.join(map(str, cmd))} failed ({code}): {errors[-2000:]}")
    return int(last.split("=")[1]) / 1024, wall, text


def graph_mb(paths):
    total = 0
    for p in paths:
        p = Path(p)
        total += p.stat().st_size
        data = p.with_name(p.name + ".data")
        if data.exists():
            total += data.stat().st_size
    return total / 2**20


def owlet_side(bundle, threads):
    cmd = [ROOT / "target/release/owlet", "similarity", "--model", bundle, "--images", IMAGE,
           "--texts", "a photo of a cat", "--threads", str(threads)]
    peak, wall, _ = run(cmd)
    return dict(peak_mb=peak, wall_s=wall, graphs_mb=graph_mb([f"{bundle}/vision.onnx", f"{bundle}/text.onnx"]))


def ort_side(vision, text, threads):
    peak, wall, out = run([sys.executable, "-c", ORT_CHILD, vision, text, str(threads)])
    load, runs = map(float, out.split())
    return dict(peak_mb=peak, wall_s=wall, load_s=load, run_s=runs, graphs_mb=graph_mb([vision, text]))


def baseline(threads):
    """The same two programs on the tiny test bundle: what they hold without weights."""
    tiny = ROOT / "models/clip-test"
    return (owlet_side(tiny, threads)["peak_mb"],
            ort_side(f"{tiny}/vision.onnx", f"{tiny}/text.onnx", threads)["peak_mb"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, help="fp32 CLIP bundle")
    p.add_argument("--int8", help="owlet-quantize --to int8 of it")
    p.add_argument("--fp16", help="owlet-quantize --to fp16 of it")
    p.add_argument("--ort-int8", help="folder for onnxruntime's quantize_dynamic graphs (made once)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    a = p.parse_args()
    sys.path.insert(0, str(HERE))
    base_owlet, base_ort = baseline(a.threads)
    rows = []
    fp32 = {"owlet": owlet_side(a.model, a.threads),
            "ort": ort_side(f"{a.model}/vision.onnx", f"{a.model}/text.onnx", a.threads)}
    rows.append(("fp32", fp32))
    if a.int8 and a.ort_int8:
        from ort_int8 import int8_graphs
        q = int8_graphs(a.model, ("vision", "text"), a.ort_int8)
        rows.append(("int8", {"owlet": owlet_side(a.int8, a.threads),
                              "ort": ort_side(q["vision"], q["text"], a.threads)}))
    if a.fp16:
        rows.append(("fp16 (owlet only)", {"owlet": owlet_side(a.fp16, a.threads)}))
    print(f"baseline (tiny test bundle): owlet {base_owlet:.0f} MiB, onnxruntime {base_ort:.0f} MiB")
    print("| bundle | graphs MiB | owlet peak MiB | x graphs | onnxruntime peak MiB | x graphs | owlet / ort |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows:
        o = r["owlet"]
        line = f"| {name} | {o['graphs_mb']:.0f} | {o['peak_mb']:.0f} | {o['peak_mb'] / o['graphs_mb']:.2f} |"
        if "ort" in r:
            t = r["ort"]
            line += f" {t['peak_mb']:.0f} | {t['peak_mb'] / t['graphs_mb']:.2f} | {o['peak_mb'] / t['peak_mb']:.2f} |"
        else:
            line += " | | |"
        print(line)
    print(json.dumps({"threads": a.threads, "baseline": {"owlet": base_owlet, "ort": base_ort},
                      "rows": dict(rows)}))


if __name__ == "__main__":
    main()
