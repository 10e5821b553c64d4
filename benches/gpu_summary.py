"""The GPU benchmark table (scripts/gpu-test): owlet on the CPU, owlet on CUDA in
fp32 and fp16, and PyTorch eager on the same GPU, from one run's JSON files.

    python3 benches/gpu_summary.py RESULTS_DIR THREADS
"""
import json
import sys
from pathlib import Path

out, threads = Path(sys.argv[1]), sys.argv[2]
gpu = (out / "gpu.txt").read_text().strip() if (out / "gpu.txt").exists() else "?"
torch = json.loads((out / "torch.json").read_text())


def owlet(bundle, tag):
    return {(r["graph"], r["batch"]): r["ms"] for r in json.loads((out / f"bench-{bundle}-{tag}.json").read_text())["results"]}


def ms(d, k):
    return f"{d[k]:.2f}" if k in d else "-"


def ratio(a, b, k):
    return f"{a[k] / b[k]:.2f}x" if k in a and k in b else "-"


print(f"GPU: {gpu}; PyTorch {torch['torch']}; owlet cpu with {threads} threads. Milliseconds, medians.\n")
print("| graph | batch | owlet cpu | owlet cuda f32 | owlet cuda f16 | PyTorch f32 | PyTorch f16 "
      "| owlet/PyTorch f32 | owlet/PyTorch f16 |")
print("|---|---|---|---|---|---|---|---|---|")
for bundle in ("clip-vitb32", "blip2-opt125m"):
    cpu, f32, f16 = owlet(bundle, "cpu"), owlet(bundle, "cuda-f32"), owlet(bundle, "cuda-f16")
    t32 = {(r["graph"], r["batch"]): r["ms"] for r in torch["results"] if r["precision"] == "f32"}
    t16 = {(r["graph"], r["batch"]): r["ms"] for r in torch["results"] if r["precision"] == "f16"}
    for k in sorted(set(cpu) | set(f32)):
        print(f"| {k[0]} ({bundle}) | {k[1]} | {ms(cpu, k)} | {ms(f32, k)} | {ms(f16, k)} | {ms(t32, k)} | {ms(t16, k)} "
              f"| {ratio(f32, t32, k)} | {ratio(f16, t16, k)} |")
