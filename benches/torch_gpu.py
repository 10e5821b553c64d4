"""PyTorch's side of the GPU benchmark (scripts/gpu-test): the same model families
owlet's large test bundles are exported from (models/export.py --random vit-b32,
models/export_blip2.py --random opt-125m), random weights, eager PyTorch on the GPU.

    python3 benches/torch_gpu.py --prefix 42 --steps 16 --runs 20 > torch.json

Times what `owlet bench` times: the CLIP vision encoder with its projection
(batch 1 and 8), and one OPT decoder step with a KV cache after a prefill of
`--prefix` positions (batch 1 and 8 rows), in fp32 and fp16; medians in ms,
synchronised on the GPU.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "models"))
from export import RANDOM_CONFIGS  # noqa: E402
from export_blip2 import BLIP2_RANDOM  # noqa: E402


def median_ms(runs: int, f) -> float:
    f()
    torch.cuda.synchronize()
    t = []
    for _ in range(runs):
        s = time.perf_counter()
        f()
        torch.cuda.synchronize()
        t.append((time.perf_counter() - s) * 1e3)
    t.sort()
    return t[len(t) // 2]


@torch.no_grad()
def main():
    p = argparse.ArgumentParser()
    p.add_argument("--prefix", type=int, default=42)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--runs", type=int, default=20)
    args = p.parse_args()
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, OPTConfig, OPTForCausalLM

    dev = torch.device("cuda")
    rows = []
    cfg = RANDOM_CONFIGS["vit-b32"]
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(**cfg["vision"], projection_dim=cfg["projection_dim"])).eval()
    text = BLIP2_RANDOM["opt-125m"]["text"]
    lm = OPTForCausalLM(OPTConfig(**text, do_layer_norm_before=True)).eval()
    for dtype, name in [(torch.float32, "f32"), (torch.float16, "f16")]:
        v = vision.to(dev, dtype)
        for b in (1, 8):
            px = torch.randn(b, 3, 224, 224, device=dev, dtype=dtype)
            rows.append({"graph": "clip vision", "precision": name, "batch": b,
                         "ms": median_ms(args.runs, lambda: v(pixel_values=px).image_embeds)})
        m = lm.to(dev, dtype)
        for b in (1, 8):
            embeds = torch.randn(b, args.prefix, text["hidden_size"], device=dev, dtype=dtype)
            tok = torch.full((b, 1), 5, device=dev, dtype=torch.long)

            def steps():
                out = m(inputs_embeds=embeds, use_cache=True)
                past = out.past_key_values
                torch.cuda.synchronize()
                s = time.perf_counter()
                for k in range(args.steps):
                    mask = torch.ones(b, args.prefix + k + 1, device=dev, dtype=torch.long)
                    out = m(input_ids=tok, past_key_values=past, attention_mask=mask, use_cache=True)
                    past = out.past_key_values
                    out.logits[:, -1].argmax(-1)
                torch.cuda.synchronize()
                return (time.perf_counter() - s) * 1e3 / args.steps

            steps()
            t = sorted(steps() for _ in range(max(1, args.runs // 4)))
            rows.append({"graph": "blip2 decoder step", "precision": name, "batch": b, "prefix": args.prefix,
                         "ms": t[len(t) // 2]})
    print(json.dumps({"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0), "results": rows}, indent=1))


if __name__ == "__main__":
    main()
