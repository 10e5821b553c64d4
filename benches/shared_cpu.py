#!/usr/bin/env python3
"""owlet and onnxruntime with the CPU shared (issue 27): each runtime's CLIP times on
a quiet machine and with a fixed competing load, and the slowdown each suffers.

On a board, the camera's process (ffmpeg, rpicam-vid) and the OS run on the cores
inference uses. The load here is ffmpeg encoding a 720p test pattern to MJPEG as
fast as it can on one thread, pinned to the last core (`taskset`), the same for
every run. Rounds alternate quiet and loaded runs (this machine drifts), and each
runtime is timed in each round: owlet (`owlet bench`, with each pool policy given
on the command line) and onnxruntime (benches/ort_clip.py), fp32 and int8, vision
and text at batches 1 and 8, the same threads on both sides. Preprocessing is
excluded on both sides.

  benches/shared_cpu.py --model target/bench-models/clip-vit-b32 \
      --int8 target/bench-models/clip-vit-b32-int8 [--rounds 3] [--runs 10]

Prints each runtime's medians quiet and loaded, its slowdown (loaded / quiet) and
owlet's time over onnxruntime's in both conditions, as Markdown.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def competing_load():
    """ffmpeg encoding MJPEG flat out on one thread, pinned to the last core."""
    core = os.cpu_count() - 1
    cmd = ["taskset", "-c", str(core), "ffmpeg", "-hide_banner", "-loglevel", "error",
           "-f", "lavfi", "-i", "testsrc=size=1280x720:rate=30", "-c:v", "mjpeg",
           "-q:v", "5", "-threads", "1", "-f", "null", "-"]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    time.sleep(1.0)  # running flat out before anything is timed
    if p.poll() is not None:
        sys.exit(f"the competing load exited at once: {' '.join(cmd)}")
    return p


def owlet(bundle, env, threads, runs):
    out = subprocess.run(
        [str(REPO / "target/release/owlet"), "bench", "--model", bundle, "--batch", "1,8",
         "--runs", str(runs), "--threads", str(threads), "--device", "cpu", "--json"],
        capture_output=True, text=True, env={**os.environ, **env})
    if out.returncode != 0:
        sys.exit(f"owlet bench failed: {out.stderr}")
    return {(r["graph"].split()[-1], r["batch"]): r["ms"] for r in json.loads(out.stdout)["results"]}


def onnxruntime(bundle, int8_dir, threads, runs):
    args = [sys.executable, str(REPO / "benches/ort_clip.py"), "--model", bundle,
            "--threads", str(threads), "--batches", "1,8", "--iters", str(runs)]
    if int8_dir:
        args += ["--int8", int8_dir]
    out = subprocess.run(args, capture_output=True, text=True, cwd=REPO / "benches")
    if out.returncode != 0:
        sys.exit(f"ort_clip.py failed: {out.stderr}")
    res = json.loads(out.stdout)
    return {(g, int(b)): statistics.median(ms) for g in ("vision", "text") for b, ms in res[g].items()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, help="the fp32 CLIP bundle")
    p.add_argument("--int8", required=True, help="owlet-quantize's int8 form of it")
    p.add_argument("--ort-int8", default=None,
                   help="where onnxruntime's quantize_dynamic graphs go (default: MODEL-ort-int8)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--policy", action="append", default=None, metavar="NAME=VAR=VALUE",
                   help="an owlet variant, e.g. 'no-spin=OWLET_POOL_SPIN=off' (default: owlet as built)")
    a = p.parse_args()
    model, int8 = str(Path(a.model).resolve()), str(Path(a.int8).resolve())
    ort_int8 = str(Path(a.ort_int8 or f"{a.model}-ort-int8").resolve())
    policies = {"owlet": {}}
    for spec in a.policy or []:
        name, var, value = spec.split("=", 2)
        policies[f"owlet {name}"] = {var: value}
    sides = [(name, prec, env) for name, env in policies.items() for prec in ("fp32", "int8")]
    sides += [("onnxruntime", "fp32", None), ("onnxruntime", "int8", None)]
    times = {}  # (side, precision, condition) -> {(graph, batch): [ms per round]}
    for r in range(a.rounds):
        for condition in (("quiet", "loaded") if r % 2 == 0 else ("loaded", "quiet")):
            load = competing_load() if condition == "loaded" else None
            try:
                for name, prec, env in sides:
                    if name == "onnxruntime":
                        got = onnxruntime(model, ort_int8 if prec == "int8" else None, a.threads, a.runs)
                    else:
                        got = owlet(int8 if prec == "int8" else model, env, a.threads, a.runs)
                    for k, ms in got.items():
                        times.setdefault((name, prec, condition), {}).setdefault(k, []).append(ms)
                    print(f"round {r + 1} {condition} {name} {prec}: "
                          + ", ".join(f"{g} b{b} {ms:.1f} ms" for (g, b), ms in sorted(got.items())),
                          file=sys.stderr, flush=True)
            finally:
                if load:
                    load.terminate()
                    load.wait()
    med = {k: {g: statistics.median(v) for g, v in d.items()} for k, d in times.items()}
    print(f"{a.rounds} rounds, {a.runs} runs each, {a.threads} threads; load: ffmpeg MJPEG "
          f"encoding on core {os.cpu_count() - 1}. Medians over rounds, ms.\n")
    print("| runtime | precision | graph | batch | quiet | loaded | slowdown | / onnxruntime quiet | / onnxruntime loaded |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, prec, _ in sides:
        for (g, b) in sorted(med[(name, prec, "quiet")], key=lambda k: (k[0] != "vision", k[1])):
            q, l = med[(name, prec, "quiet")][(g, b)], med[(name, prec, "loaded")][(g, b)]
            oq, ol = med[("onnxruntime", prec, "quiet")][(g, b)], med[("onnxruntime", prec, "loaded")][(g, b)]
            ratios = "| | " if name == "onnxruntime" else f"| {q / oq:.2f}x | {l / ol:.2f}x "
            print(f"| {name} | {prec} | {g} | {b} | {q:.1f} | {l:.1f} | {l / q:.2f}x {ratios}|")


if __name__ == "__main__":
    main()
