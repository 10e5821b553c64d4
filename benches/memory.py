#!/usr/bin/env python3
"""Peak memory of loading and running a bundle, owlet against onnxruntime, on the same
graphs with the same threads: each side is a whole child process (owlet's CLI; a
Python process with onnxruntime) that loads the graphs and runs them (CLIP: one image
and one text; BLIP-2, --blip2: a greedy caption of --new-tokens tokens); its peak
resident set comes from wait4. BLIP-2 rows also give load time, time to the first
token and the mean decode step of the same process.

    benches/memory.py --model B [--int8 OWLET_INT8_BUNDLE --ort-int8 CACHE] [--threads N]
    benches/memory.py --blip2 --model B [--int8 ...] [--new-tokens N]

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


def owlet_blip2(bundle, threads, new_tokens):
    cmd = [ROOT / "target/release/owlet", "caption", "--model", bundle, IMAGE, "--threads",
           str(threads), "--max-new-tokens", str(new_tokens), "--min-new-tokens", str(new_tokens),
           "--json"]
    peak, wall, out = run(cmd)
    r = json.loads(out)
    row = r["results"][0]
    n = len(row["token_ids"])
    step = (row["latency_ms"] - row["first_token_ms"]) / max(n - 1, 1)
    return dict(peak_mb=peak, wall_s=wall, load_ms=r["load_ms"], ttft_ms=row["first_token_ms"],
                step_ms=step, tokens=n, graphs_mb=bundle_mb(bundle))


def ort_blip2(bundle, threads, new_tokens, int8_cache):
    cmd = [sys.executable, HERE / "ort_blip2.py", "--model", bundle, "--threads", str(threads),
           "--prompt-ids", "2", "--new-tokens", str(new_tokens), "--runs", "1"]
    if int8_cache:
        cmd += ["--int8", int8_cache]
    peak, wall, out = run(cmd)
    r = json.loads(out)
    # The fp32 bundle's files, or onnxruntime's int8 graphs with the bundle's table.
    size = bundle_mb(bundle) if not int8_cache else \
        bundle_mb(int8_cache) + (Path(bundle) / "embed_tokens.npy").stat().st_size / 2**20
    return dict(peak_mb=peak, wall_s=wall, load_ms=r["load_ms"], ttft_ms=r["ttft_ms"][0],
                step_ms=sum(r["step_ms"]) / len(r["step_ms"]), tokens=new_tokens, graphs_mb=size)


def bundle_mb(bundle):
    """Every file of a bundle: graphs, their external data (torch.onnx.export writes
    a file per tensor), the token table, tokenizer and manifest."""
    return sum(f.stat().st_size for f in Path(bundle).iterdir() if f.is_file()) / 2**20


def blip2_main(a):
    rows = []
    if a.int8 and a.ort_int8:
        from ort_int8 import int8_graphs
        int8_graphs(a.model, ("vision", "decoder"), a.ort_int8)  # made once, cached
        rows.append(("int8", owlet_blip2(a.int8, a.threads, a.new_tokens),
                     ort_blip2(a.model, a.threads, a.new_tokens, a.ort_int8)))
    if not a.skip_fp32:
        rows.append(("fp32", owlet_blip2(a.model, a.threads, a.new_tokens),
                     ort_blip2(a.model, a.threads, a.new_tokens, None)))
    print("| bundle | MiB | peak MiB owlet / ort | x bundle | load s | first token ms | decode step ms |")
    print("|---|---|---|---|---|---|---|")
    for name, o, t in rows:
        print(f"| {name} | {o['graphs_mb']:.0f} / {t['graphs_mb']:.0f} | {o['peak_mb']:.0f} / {t['peak_mb']:.0f} "
              f"({o['peak_mb'] / t['peak_mb']:.2f}x) | {o['peak_mb'] / o['graphs_mb']:.2f} / "
              f"{t['peak_mb'] / t['graphs_mb']:.2f} | {o['load_ms'] / 1e3:.1f} / {t['load_ms'] / 1e3:.1f} | "
              f"{o['ttft_ms']:.0f} / {t['ttft_ms']:.0f} ({o['ttft_ms'] / t['ttft_ms']:.2f}x) | "
              f"{o['step_ms']:.1f} / {t['step_ms']:.1f} ({o['step_ms'] / t['step_ms']:.2f}x) |")
    print(json.dumps({"threads": a.threads, "new_tokens": a.new_tokens,
                      "rows": {name: {"owlet": o, "ort": t} for name, o, t in rows}}))


def baseline(threads):
    """The same two programs on the tiny test bundle: what they hold without weights."""
    tiny = ROOT / "models/clip-test"
    return (owlet_side(tiny, threads)["peak_mb"],
            ort_side(f"{tiny}/vision.onnx", f"{tiny}/text.onnx", threads)["peak_mb"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, help="fp32 bundle")
    p.add_argument("--int8", help="owlet-quantize --to int8 of it")
    p.add_argument("--fp16", help="owlet-quantize --to fp16 of it")
    p.add_argument("--ort-int8", help="folder for onnxruntime's quantize_dynamic graphs (made once)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--blip2", action="store_true", help="the bundles are BLIP-2: caption a frame")
    p.add_argument("--new-tokens", type=int, default=20)
    p.add_argument("--skip-fp32", action="store_true", help="BLIP-2: int8 rows only")
    a = p.parse_args()
    sys.path.insert(0, str(HERE))
    if a.blip2:
        return blip2_main(a)
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
