#!/usr/bin/env python3
"""Greedy caption tokens of a BLIP-2 bundle in owlet and in onnxruntime, on the same
frames: are they the same (fp32), and how far does int8 stay with fp32 (each runtime
against its own fp32).

    benches/blip2_tokens.py --model FP32_BUNDLE [--int8 OWLET_INT8 --ort-int8 CACHE]
        [--new-tokens N] [--threads N] IMAGE...

onnxruntime's pixels come from transformers' BLIP image processor (PIL) with the
manifest's size, mean and std: the processor owlet's preprocessing is tested
bit-identical against (runtime/tests/it/parity.rs). eos is suppressed on both sides
(owlet's --min-new-tokens, as transformers' min_new_tokens does it), so every frame
gives --new-tokens tokens to compare. Prints a table and one JSON line.
"""
import argparse
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def owlet_tokens(bundle, images, new_tokens, threads):
    out = subprocess.run([ROOT / "target/release/owlet", "caption", "--model", bundle, *images,
                          "--max-new-tokens", str(new_tokens), "--min-new-tokens", str(new_tokens),
                          "--threads", str(threads), "--json"],
                         check=True, capture_output=True, text=True).stdout
    return [r["token_ids"] for r in json.loads(out)["results"]]


def ort_tokens(bundle, graphs, images, new_tokens, threads):
    import onnxruntime as ort
    from PIL import Image
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    m = tomllib.loads((Path(bundle) / "owlet.toml").read_text())
    pre, gen = m["vision"]["preprocess"], m["generation"]
    proc = BlipImageProcessorPil(size={"height": pre["size"], "width": pre["size"]},
                                 image_mean=pre["mean"], image_std=pre["std"])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    vis = ort.InferenceSession(str(graphs[0]), so, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(graphs[1]), so, providers=["CPUExecutionProvider"])
    table = np.load(Path(bundle) / "embed_tokens.npy")
    names = [i.name for i in dec.get_inputs()][2:]
    shape = dec.get_inputs()[2].shape
    prompt = [gen["bos_token_id"]]  # the caption prompt is empty: the tokenizer's bos
    result, queries = [], []
    for path in images:
        pv = proc(Image.open(path).convert("RGB"), return_tensors="np")["pixel_values"].astype(np.float32)
        q = vis.run(None, {"pixel_values": pv})[0]
        queries.append(q)
        embeds = np.concatenate([q, table[prompt][None]], axis=1).astype(np.float32)
        past = {n: np.zeros((1, shape[1], 0, shape[3]), np.float32) for n in names}
        total, ids = 0, []
        for _ in range(new_tokens):
            total += embeds.shape[1]
            outs = dec.run(None, {"inputs_embeds": embeds, "attention_mask": np.ones((1, total), np.int64), **past})
            logits = outs[0][0].copy()
            logits[gen["eos_token_id"]] = -np.inf  # --min-new-tokens: every token counts
            t = int(logits.argmax())
            ids.append(t)
            past = dict(zip(names, outs[1:]))
            embeds = table[[t]][None].astype(np.float32)
        result.append(ids)
    return result, queries


def agreement(a, b):
    """Share of positions that agree (over the longer), and the first that differs."""
    n = max(len(a), len(b))
    same = sum(x == y for x, y in zip(a, b))
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
    if first is None and len(a) != len(b):
        first = min(len(a), len(b))
    return same / n if n else 1.0, first


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--int8", help="owlet-quantize --to int8 of the model")
    p.add_argument("--ort-int8", help="folder of onnxruntime's quantize_dynamic graphs (benches/ort_int8.py)")
    p.add_argument("--new-tokens", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("images", nargs="+")
    a = p.parse_args()
    fp32_graphs = [Path(a.model) / "vision.onnx", Path(a.model) / "decoder.onnx"]
    res = {"owlet_fp32": owlet_tokens(a.model, a.images, a.new_tokens, a.threads)}
    res["ort_fp32"], q_fp32 = ort_tokens(a.model, fp32_graphs, a.images, a.new_tokens, a.threads)
    if a.int8:
        res["owlet_int8"] = owlet_tokens(a.int8, a.images, a.new_tokens, a.threads)
    cosines = {}
    if a.ort_int8:
        q = [Path(a.ort_int8) / "vision.onnx", Path(a.ort_int8) / "decoder.onnx"]
        res["ort_int8"], q_int8 = ort_tokens(a.model, q, a.images, a.new_tokens, a.threads)
        # Query embeddings (image -> language model space), each query row its own vector.
        rows = [(x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])) for x, y in zip(q_fp32, q_int8)]
        cos = np.concatenate([(x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
                              for x, y in rows])
        cosines["onnxruntime int8 queries vs fp32"] = {"mean": float(cos.mean()), "worst": float(cos.min())}
        print(f"onnxruntime int8 query embeddings vs its fp32: cosine mean {cos.mean():.6f}, worst {cos.min():.6f}")
    pairs = [("owlet fp32 vs onnxruntime fp32", "owlet_fp32", "ort_fp32")]
    if "owlet_int8" in res:
        pairs.append(("owlet int8 vs owlet fp32", "owlet_int8", "owlet_fp32"))
    if "ort_int8" in res:
        pairs.append(("onnxruntime int8 vs onnxruntime fp32", "ort_int8", "ort_fp32"))
    summary = {}
    for label, x, y in pairs:
        rows = [agreement(s, t) for s, t in zip(res[x], res[y])]
        identical = sum(f is None for _, f in rows)
        mean = sum(r for r, _ in rows) / len(rows)
        firsts = [f for _, f in rows if f is not None]
        print(f"{label}: identical on {identical}/{len(rows)} frames, token agreement {mean:.1%}, "
              f"first divergence at {firsts if firsts else 'none'}")
        summary[label] = {"identical": identical, "frames": len(rows), "agreement": mean, "first_divergence": firsts}
    print(json.dumps({"new_tokens": a.new_tokens, "tokens": res, "summary": summary, "query_cosine": cosines}))
    return 0 if "owlet fp32 vs onnxruntime fp32" not in summary or \
        summary["owlet fp32 vs onnxruntime fp32"]["identical"] == len(a.images) else 1


if __name__ == "__main__":
    sys.exit(main())
