#!/usr/bin/env python3
"""onnxruntime side of the BLIP-2 benchmark: the same bundle graphs and the same
loop as owlet's (vision -> prefill -> one greedy token per decoder call with the
KV cache), same threads. Prints JSON: ttft_ms (list), step_ms (list).

With --int8 DIR it times onnxruntime's own int8 form of the same fp32 graphs:
quantize_dynamic (int8 weights per output channel, activations quantized at run
time), cached in DIR."""
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
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--prompt-ids", required=True, help="comma-separated prompt ids")
    p.add_argument("--new-tokens", type=int, default=20)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--int8", metavar="DIR", help="time onnxruntime's int8 (quantize_dynamic) graphs, cached in DIR")
    a = p.parse_args()
    graphs = ("vision", "decoder")
    paths = int8_graphs(a.model, graphs, a.int8) if a.int8 else {g: f"{a.model}/{g}.onnx" for g in graphs}
    t_load = time.perf_counter()
    vis = session(paths["vision"], a.threads)
    dec = session(paths["decoder"], a.threads)
    table = np.load(f"{a.model}/embed_tokens.npy")
    load_ms = (time.perf_counter() - t_load) * 1e3
    ids = [int(x) for x in a.prompt_ids.split(",")]
    side = vis.get_inputs()[0].shape[2]
    pv = np.random.default_rng(0).standard_normal((1, 3, side, side), dtype=np.float32)
    names = [i.name for i in dec.get_inputs()][2:]
    shape = dec.get_inputs()[2].shape
    ttft, steps = [], []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        q = vis.run(None, {"pixel_values": pv})[0]
        embeds = np.concatenate([q, table[ids][None]], axis=1).astype(np.float32)
        past = {n: np.zeros((1, shape[1], 0, shape[3]), np.float32) for n in names}
        total = 0
        for i in range(a.new_tokens):
            t = time.perf_counter()
            total += embeds.shape[1]
            outs = dec.run(None, {"inputs_embeds": embeds, "attention_mask": np.ones((1, total), np.int64), **past})
            tok = int(outs[0][0].argmax())
            if i == 0:
                ttft.append((time.perf_counter() - t0) * 1e3)
            else:
                steps.append((time.perf_counter() - t) * 1e3)
            past = dict(zip(names, outs[1:]))
            embeds = table[[tok]][None].astype(np.float32)
    print(json.dumps({"ttft_ms": ttft, "step_ms": steps, "load_ms": load_ms, "onnxruntime": ort.__version__}))


if __name__ == "__main__":
    main()
