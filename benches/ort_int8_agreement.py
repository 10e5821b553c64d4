#!/usr/bin/env python3
"""The yardstick for owlet-quantize's accuracy report: onnxruntime's own int8
(quantize_dynamic, per channel) against onnxruntime fp32 on the demo CLIP, with the
report's numbers (embedding cosine, top-1 agreement on all 200 held-out frames and
on those where fp32 leads by >= 0.1, fp32's largest lead among the flips).
Run from the repository root: python3 benches/ort_int8_agreement.py"""
import glob, tempfile
import numpy as np, onnxruntime as ort
from PIL import Image
from tokenizers import Tokenizer
from ort_int8 import int8_graphs
B = "models/clip-demo"
Q = int8_graphs(B, ("vision", "text"), tempfile.mkdtemp())
mean = np.array([0.48145466, 0.4578275, 0.40821073], np.float32); std = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
def prep(p):  # the bundle's preprocessing: shortest edge 96, bicubic, centre crop
    im = Image.open(p).convert("RGB"); w, h = im.size; s = 96 / min(w, h)
    im = im.resize((max(96, round(w * s)), max(96, round(h * s))), Image.BICUBIC)
    w, h = im.size; l, t = (w - 96) // 2, (h - 96) // 2
    a = (np.asarray(im.crop((l, t, l + 96, t + 96)), np.float32) / 255 - mean) / std
    return a.transpose(2, 0, 1)
files = sorted(glob.glob("models/scenes/heldout/*.jpg"))
px = np.stack([prep(f) for f in files])
labels = ["car", "person", "dog", "bird", "bicycle", "package"]
tok = Tokenizer.from_file(f"{B}/tokenizer.json"); pad = tok.token_to_id("<|endoftext|>")
ids = np.full((6, 32), pad, np.int64); mask = np.zeros((6, 32), np.int64)
for i, l in enumerate(labels):
    e = tok.encode(f"a photo of a {l}").ids[:32]; ids[i, :len(e)] = e; mask[i, :len(e)] = 1
def top(vis, txt):  # label probabilities and image embeddings
    so = ort.SessionOptions(); so.intra_op_num_threads = 2
    v = ort.InferenceSession(vis, so).run(None, {"pixel_values": px})[0]
    t = ort.InferenceSession(txt, so).run(None, {"input_ids": ids, "attention_mask": mask})[0]
    v /= np.linalg.norm(v, axis=1, keepdims=True); t /= np.linalg.norm(t, axis=1, keepdims=True)
    logits = 25.93 * v @ t.T; p = np.exp(logits - logits.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
    return p, v
p32, v32 = top(f"{B}/vision.onnx", f"{B}/text.onnx")
p8, v8 = top(Q["vision"], Q["text"])
a, b = p32.argmax(1), p8.argmax(1)
srt = np.sort(p32, 1); lead = srt[:, -1] - srt[:, -2]
cos = (v32 * v8).sum(1)
print(f"onnxruntime int8 vs fp32: cosine mean {cos.mean():.6f} worst {cos.min():.6f}; same top label {np.mean(a == b) * 100:.1f}% of {len(a)}; "
      f"decided (lead >= 0.1) {np.mean((a == b)[lead >= 0.1]) * 100:.1f}% of {(lead >= 0.1).sum()}; largest flipped lead {lead[a != b].max() if (a != b).any() else 0:.4f}")
