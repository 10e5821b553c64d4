#!/usr/bin/env python3
"""How far int8 can agree with fp32 on the demo CLIP's zero-shot labels, whatever the
kernels: int8 simulated in transformers' own CLIPModel (fake quantization of each
linear layer's weights, per output channel, symmetric, and/or of its input, per row
with a zero point, as owlet-quantize and its kernels do), one source of error at a
time and with parts of the model left in float. On the 200 held-out frames, printing
cosine to fp32, how many frames change top label, and the RMS change of fp32's
top-two logit difference (a measure that ties do not make noisy).
Run from the repository root: python3 benches/int8_sensitivity.py"""
import glob
import numpy as np, torch
from PIL import Image
from tokenizers import Tokenizer
from transformers import CLIPModel

torch.set_num_threads(2)
B = "models/clip-demo"
m = CLIPModel.from_pretrained("models/demo/checkpoints/clip").eval()
mean = np.array([0.48145466, 0.4578275, 0.40821073], np.float32); std = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
def prep(p):  # the bundle's preprocessing: shortest edge 96, bicubic, centre crop
    im = Image.open(p).convert("RGB"); w, h = im.size; s = 96 / min(w, h)
    im = im.resize((max(96, round(w * s)), max(96, round(h * s))), Image.BICUBIC)
    w, h = im.size; l, t = (w - 96) // 2, (h - 96) // 2
    return ((np.asarray(im.crop((l, t, l + 96, t + 96)), np.float32) / 255 - mean) / std).transpose(2, 0, 1)
px = torch.tensor(np.stack([prep(f) for f in sorted(glob.glob("models/scenes/heldout/*.jpg"))]))
tok = Tokenizer.from_file(f"{B}/tokenizer.json"); pad = tok.token_to_id("<|endoftext|>")
ids = np.full((6, 32), pad, np.int64); mask = np.zeros((6, 32), np.int64)
for i, l in enumerate(["car", "person", "dog", "bird", "bicycle", "package"]):
    e = tok.encode(f"a photo of a {l}").ids[:32]; ids[i, :len(e)] = e; mask[i, :len(e)] = 1
ids, mask = torch.tensor(ids), torch.tensor(mask)
linears = {n: mod for n, mod in m.named_modules() if isinstance(mod, torch.nn.Linear)}
W0 = {n: mod.weight.data.clone() for n, mod in linears.items()}

def qw(w):  # weights: per output channel, symmetric, 8 bits
    s = w.abs().amax(1, keepdim=True) / 127
    return (w / s).round().clamp(-127, 127) * s

def qa(x):  # activations: per row, range with 0 in it over 255 steps, zero point
    lo, hi = x.amin(-1, keepdim=True).clamp(max=0), x.amax(-1, keepdim=True).clamp(min=0)
    s = (hi - lo) / 255; s = torch.where(s == 0, torch.ones_like(s), s); z = (-lo / s).round()
    return ((x / s).round() + z).clamp(0, 255).sub(z) * s

def run(weights=False, inputs=False, keep=()):
    """Label probabilities and image embeddings; the projections stay float, as
    owlet-quantize's default; `keep`: parts of layer names left float too."""
    hooks = []
    for n, mod in linears.items():
        float_layer = "projection" in n or any(k in n for k in keep)
        mod.weight.data = qw(W0[n]) if weights and not float_layer else W0[n].clone()
        if inputs and not float_layer:
            hooks.append(mod.register_forward_pre_hook(lambda _m, a: (qa(a[0]),)))
    with torch.no_grad():
        o = m(pixel_values=px, input_ids=ids, attention_mask=mask)
    for h in hooks:
        h.remove()
    v = o.image_embeds / o.image_embeds.norm(dim=1, keepdim=True)
    return o.logits_per_image.softmax(1).numpy(), v.numpy()

p32, v32 = run()
order = np.argsort(-p32, 1); rows = np.arange(len(p32))
def top2_gap(p):
    lp = np.log(p); return lp[rows, order[:, 0]] - lp[rows, order[:, 1]]
lead = p32[rows, order[:, 0]] - p32[rows, order[:, 1]]
print(f"{len(p32)} frames; fp32's lead (top probability minus the second) below 0.005: {(lead < 0.005).sum()}, "
      f"0.01: {(lead < 0.01).sum()}, 0.02: {(lead < 0.02).sum()}, 0.1: {(lead < 0.1).sum()}")
print(f"{'int8 where':34} {'cosine mean':>11} {'flips':>5} {'rms top-2 logit change':>23}")
vision_layers = [f"vision_model.encoder.layers.{i}." for i in range(len(m.vision_model.encoder.layers))]
for name, kw in [
    ("weights and inputs (owlet)", dict(weights=True, inputs=True)),
    ("weights only", dict(weights=True)),
    ("inputs only", dict(inputs=True)),
    ("inputs of fc1 only", dict(inputs=True, keep=("q_proj", "k_proj", "v_proj", "out_proj", "fc2"))),
    ("all but the image tower's MLPs", dict(weights=True, inputs=True, keep=tuple(l + "mlp" for l in vision_layers))),
    ("text tower only", dict(weights=True, inputs=True, keep=("vision_model",))),
]:
    p, v = run(**kw)
    flips = (p.argmax(1) != p32.argmax(1)).sum()
    rms = np.sqrt(np.mean((top2_gap(p) - top2_gap(p32)) ** 2))
    print(f"{name:34} {(v * v32).sum(1).mean():11.6f} {flips:5d} {rms:23.4f}")
for name, cast in [("fp16 (weights and inputs)", lambda t: t.half().float())]:
    hooks = [mod.register_forward_pre_hook(lambda _m, a: (cast(a[0]),)) for mod in linears.values()]
    for n, mod in linears.items():
        mod.weight.data = cast(W0[n])
    with torch.no_grad():
        o = m(pixel_values=px, input_ids=ids, attention_mask=mask)
    for h in hooks:
        h.remove()
    p = o.logits_per_image.softmax(1).numpy()
    v = (o.image_embeds / o.image_embeds.norm(dim=1, keepdim=True)).numpy()
    rms = np.sqrt(np.mean((top2_gap(p) - top2_gap(p32)) ** 2))
    print(f"{name:34} {(v * v32).sum(1).mean():11.6f} {(p.argmax(1) != p32.argmax(1)).sum():5d} {rms:23.4f}")
