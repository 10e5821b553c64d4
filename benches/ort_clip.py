#!/usr/bin/env python3
"""onnxruntime side of the CLIP benchmark: the same bundle graphs, the same inputs'
shapes and thread count as owlet's side (runtime/benches/clip.rs calls this).

With --int8 DIR it times onnxruntime's own int8 form of the same fp32 graphs instead:
quantize_dynamic (int8 weights per output channel, activations quantized at run
time: MatMulInteger + DynamicQuantizeLinear), written once into DIR.

Prints one JSON object: {"vision": {"1": [ms...], "8": [...]}, "text": {...}}.
"""
import argparse
import json
import time

import numpy as np
import onnxruntime as ort

from ort_int8 import int8_graphs


def session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def times(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--batches", default="1,8")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--side", type=int, default=224)
    p.add_argument("--context", type=int, default=77)
    p.add_argument("--int8", metavar="DIR", help="time onnxruntime's int8 (quantize_dynamic) graphs, cached in DIR")
    a = p.parse_args()
    rng = np.random.default_rng(0)
    graphs = ("vision", "text")
    paths = int8_graphs(a.model, graphs, a.int8) if a.int8 else {g: f"{a.model}/{g}.onnx" for g in graphs}
    vis = session(paths["vision"], a.threads)
    txt = session(paths["text"], a.threads)
    res = {"vision": {}, "text": {}, "onnxruntime": ort.__version__}
    for b in [int(x) for x in a.batches.split(",")]:
        pv = rng.standard_normal((b, 3, a.side, a.side), dtype=np.float32)
        res["vision"][str(b)] = times(lambda: vis.run(None, {"pixel_values": pv}), a.warmup, a.iters)
        ids = np.full((b, a.context), 49407, dtype=np.int64)
        ids[:, 0] = 49406
        ids[:, 1:9] = rng.integers(300, 40000, (b, 8))
        mask = np.zeros((b, a.context), dtype=np.int64)
        mask[:, :10] = 1
        res["text"][str(b)] = times(lambda: txt.run(None, {"input_ids": ids, "attention_mask": mask}),
                                    a.warmup, a.iters)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
