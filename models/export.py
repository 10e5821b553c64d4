#!/usr/bin/env python3
"""Turn a Hugging Face checkpoint (or a random-weight config) into an owlet bundle.

    python models/export.py clip OUT --from openai/clip-vit-base-patch32
    python models/export.py clip OUT --random tiny      # test bundle (a few MB)
    python models/export.py clip OUT --random vit-b32   # real dimensions, random weights
    python models/export.py clip OUT --random vit-l14   # (also vit-b16)
    python models/export.py blip2 OUT --random opt-2.7b # BLIP-2 OPT-2.7B's dimensions, part by part
    python models/export.py blip2 OUT --from Salesforce/blip2-opt-2.7b
    python models/export.py blip2 OUT --random tiny --reference

A bundle is a folder: owlet.toml (the manifest), vision.onnx, text.onnx,
tokenizer.json. With --reference, reference outputs computed by transformers
itself (never by owlet) are written to OUT/reference/ for the parity tests.

Needs the packages in models/requirements.txt. Runs where the checkpoint is; owlet
itself never runs Python.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from clip_vocab import clip_tokenizer_from_openai_vocab

HERE = Path(__file__).resolve().parent

# Configs for --random. `vit-b32` mirrors openai/clip-vit-base-patch32's config.json.
RANDOM_CONFIGS = {
    "tiny": dict(
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=77),
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, image_size=224, patch_size=32),
        projection_dim=16,
    ),
    "vit-b32": dict(
        text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                  num_attention_heads=8, max_position_embeddings=77),
        vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                    num_attention_heads=12, image_size=224, patch_size=32),
        projection_dim=512,
    ),
}
# openai/clip-vit-base-patch16: ViT-B/32's towers with 16-pixel patches (197 tokens).
RANDOM_CONFIGS["vit-b16"] = RANDOM_CONFIGS["vit-b32"] | dict(
    vision=RANDOM_CONFIGS["vit-b32"]["vision"] | dict(patch_size=16),
)
# openai/clip-vit-large-patch14's config.json: a 24-layer, 1024-wide image tower on
# 14-pixel patches (257 tokens) and a 768-wide text tower (1.7 GB of fp32 weights).
RANDOM_CONFIGS["vit-l14"] = dict(
    text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, max_position_embeddings=77),
    vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                num_attention_heads=16, image_size=224, patch_size=14),
    projection_dim=768,
)

# Strings the tokenizer parity test covers: punctuation, unicode, numbers, case,
# whitespace runs, long text (truncation), and the empty string.
TOKENIZER_CASES = [
    "a photo of a cat",
    "A Photo Of A CAT!!!",
    "",
    "   leading and    trailing   whitespace   ",
    "don't, won't; it's -- (really) \"quoted\" [brackets] {braces} <angles>",
    "numbers 1234567890 and 3.14159, 1e-9, #42",
    "café naïve résumé Ångström",
    "東京の猫 ネコ 🐈 emoji 😀👍🏽",
    "Привет мир, Καλημέρα κόσμε",
    "tabs\tand\nnewlines\r\nmixed",
    "<|startoftext|> literal special tokens <|endoftext|>",
    "hyphen-ated under_scored slash/separated dot.separated",
    "a red car next to a blue person at the front door",
    " ".join(["the quick brown fox jumps over the lazy dog"] * 12),  # > 77 tokens
    "$%^&*()_+=~`|\\",
]

# Zero-shot labels and templates used for the reference probabilities.
LABELS = ["cat", "coffee", "rocket", "person", "motorcycle"]
TEMPLATES = ["a photo of a {}", "a blurry photo of a {}"]
TEXTS = ["a photo of a cat", "a cup of coffee", "a rocket on the launch pad",
         "a portrait of a woman", "a red car next to a blue person"]


def check_against_openai(tok, openai_tok) -> dict:
    """Compare ids with OpenAI's simple_tokenizer on TOKENIZER_CASES.

    OpenAI's tokenizer cleans text with ftfy and html.unescape and has no truncation,
    so it is compared on the body ids (no bos/eos) for the cases that fit.
    """
    agree, differ = 0, []
    for s in TOKENIZER_CASES:
        ours = tok(s, add_special_tokens=False)["input_ids"]
        theirs = openai_tok.encode(s)
        if ours == theirs:
            agree += 1
        else:
            differ.append(s)
    return {"agree": agree, "total": len(TOKENIZER_CASES), "differ": differ}


def build_model(args):
    from transformers import CLIPConfig, CLIPModel

    if args.random:
        cfg = RANDOM_CONFIGS[args.random]
        torch.manual_seed(args.seed)
        config = CLIPConfig(
            text_config=dict(cfg["text"], vocab_size=49408, bos_token_id=49406,
                             eos_token_id=49407, pad_token_id=1),
            vision_config=cfg["vision"],
            projection_dim=cfg["projection_dim"],
            # A trained CLIP's temperature (exp(4.6052) = 100), so that zero-shot
            # probabilities are as peaked as in real use.
            logit_scale_init_value=4.6052,
        )
        config._attn_implementation = "eager"
        model = CLIPModel(config)
        source = f"random weights, config '{args.random}', seed {args.seed}"
    else:
        model = CLIPModel.from_pretrained(args.source, attn_implementation="eager")
        source = args.source
    return model.eval(), source


class VisionGraph(torch.nn.Module):
    """pixel_values [B,3,H,W] -> image_embeds [B,D] (projected, not normalised)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model.get_image_features(pixel_values=pixel_values).pooler_output


class TextGraph(torch.nn.Module):
    """input_ids, attention_mask [B,S] -> text_embeds [B,D] (projected, not normalised)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model.get_text_features(input_ids=input_ids,
                                            attention_mask=attention_mask).pooler_output


def export_onnx(module, inputs, names, output, path: Path, dynamic: dict):
    # The legacy (TorchScript) exporter at opset 17 gives the plain graphs tract
    # types best (see shared/notes/tract.md). Only the batch axis is symbolic: tract
    # cannot type the CLIP text graph with a symbolic sequence length.
    torch.onnx.export(module, inputs, str(path), input_names=names, output_names=[output],
                      dynamic_axes=dynamic, opset_version=17, do_constant_folding=True,
                      dynamo=False)
    strip_value_info(path)


def strip_value_info(path: Path):
    """Drop the exporter's intermediate value_info: it pins shapes that clash with
    the graph's symbols in tract ("Impossible to unify Sym(batch) with Val(1)).
    owlet also tells tract to ignore them, so where the onnx package is missing (the
    GPU machine) the graph is left as exported."""
    try:
        import onnx
    except ImportError:
        print(f"note: no onnx package: {path.name} keeps its value_info (owlet ignores it)")
        return
    # Past 2 GB (OPT-2.7B's decoder) the exporter keeps the weights in external
    # files: load the graph without them, so that saving it leaves them in place
    # (a loaded 10 GB model would not fit one protobuf message again).
    m = onnx.load(str(path), load_external_data=False)
    del m.graph.value_info[:]
    onnx.save(m, str(path))


def image_processor(checkpoint: str | None = None):
    # The PIL backend is transformers' classic CLIPImageProcessor and what OpenAI's
    # own preprocess does (PIL bicubic); owlet's resize is a port of PIL's. A
    # checkpoint's own preprocessor_config.json (sizes, mean, std) wins.
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    if checkpoint and (Path(checkpoint) / "preprocessor_config.json").is_file():
        return CLIPImageProcessorPil.from_pretrained(checkpoint)
    return CLIPImageProcessorPil()


def write_manifest(out: Path, model, tok, source: str, proc, logit_scale: float):
    vc, tc = model.config.vision_config, model.config.text_config
    size = proc.size.shortest_edge
    crop = proc.crop_size.height
    assert proc.crop_size.width == crop, "owlet crops square"
    manifest = f"""# owlet model bundle, written by models/export.py
kind = "clip"
name = "{out.name}"
source = "{source}"

[vision]
file = "vision.onnx"
precision = "fp32"
input = "pixel_values"
output = "image_embeds"
embed_dim = {model.config.projection_dim}

[vision.preprocess]
resize = "shortest_edge"
size = {size}
resample = "bicubic"
crop = "center"
crop_size = {crop}
rescale = {proc.rescale_factor!r}
mean = {list(map(float, proc.image_mean))}
std = {list(map(float, proc.image_std))}

[text]
file = "text.onnx"
precision = "fp32"
tokenizer = "tokenizer.json"
pad_token = "{tok.pad_token}"
context_length = {tc.max_position_embeddings}
embed_dim = {model.config.projection_dim}
# OpenAI's clean-up before BPE (ftfy, HTML entities, whitespace, lower case), which
# CLIP was trained on; "transformers" follows transformers' CLIPTokenizer instead.
cleanup = "openai"

[clip]
logit_scale = {logit_scale!r}
"""
    (out / "owlet.toml").write_text(manifest)


REFERENCE_IMAGES = [
    # Real photographs shipped by scikit-image and matplotlib (public domain / CC0).
    ("skimage", "chelsea.png", "chelsea.png"),
    ("skimage", "coffee.png", "coffee.jpg"),
    ("skimage", "rocket.jpg", "rocket.jpg"),
    ("matplotlib", "grace_hopper.jpg", "grace_hopper.jpg"),
]


def collect_reference_images(dest: Path) -> list[Path]:
    from PIL import Image
    import skimage
    import matplotlib
    roots = {"skimage": Path(skimage.__file__).parent / "data",
             "matplotlib": Path(matplotlib.get_data_path()) / "sample_data"}
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for pkg, name, out_name in REFERENCE_IMAGES:
        src = roots[pkg] / name
        dst = dest / out_name
        if src.suffix == dst.suffix:
            shutil.copyfile(src, dst)
        else:  # PNG re-encoded as JPEG to keep the repository small
            Image.open(src).convert("RGB").save(dst, quality=90)
        paths.append(dst)
    return paths


@torch.no_grad()
def write_reference(out: Path, model, tok, proc, openai_check: dict | None):
    from PIL import Image

    ref = out / "reference"
    images = collect_reference_images(ref / "images")
    pil = [Image.open(p).convert("RGB") for p in images]
    pixel_values = proc(images=pil, return_tensors="pt")["pixel_values"]
    for p, pv in zip(images, pixel_values):
        np.save(ref / f"{p.stem}.pixel_values.npy", pv.numpy().astype(np.float32))

    image_embeds = model.get_image_features(pixel_values=pixel_values).pooler_output

    ctx = model.config.text_config.max_position_embeddings
    enc = tok(TEXTS, padding="max_length", max_length=ctx, truncation=True, return_tensors="pt")
    text_embeds = model.get_text_features(**enc).pooler_output
    full = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                 pixel_values=pixel_values)

    # Zero-shot: one class embedding per label = mean of the normalised template
    # embeddings, renormalised (the CLIP paper's prompt ensembling).
    prompts = [t.format(l) for l in LABELS for t in TEMPLATES]
    penc = tok(prompts, padding="max_length", max_length=ctx, truncation=True, return_tensors="pt")
    pe = model.get_text_features(**penc).pooler_output
    pe = pe / pe.norm(dim=-1, keepdim=True)
    cls = pe.reshape(len(LABELS), len(TEMPLATES), -1).mean(1)
    cls = cls / cls.norm(dim=-1, keepdim=True)
    ie = image_embeds / image_embeds.norm(dim=-1, keepdim=True)
    zs_probs = (model.logit_scale.exp() * ie @ cls.T).softmax(-1)

    tokenization = []
    for s in TOKENIZER_CASES:
        e = tok(s, padding="max_length", max_length=ctx, truncation=True)
        tokenization.append({"text": s, "input_ids": e["input_ids"],
                             "attention_mask": e["attention_mask"],
                             "tokens": tok.convert_ids_to_tokens(tok(s, truncation=True, max_length=ctx)["input_ids"])})

    reference = {
        "made_by": "models/export.py with transformers "
                   + __import__("transformers").__version__ + ", torch " + torch.__version__,
        "images": [p.name for p in images],
        "texts": TEXTS,
        "image_embeds": image_embeds.tolist(),
        "text_embeds": text_embeds.tolist(),
        "logits_per_image": full.logits_per_image.tolist(),
        "probs_per_image": full.logits_per_image.softmax(-1).tolist(),
        "zero_shot": {"labels": LABELS, "templates": TEMPLATES, "probs": zs_probs.tolist()},
        "tokenization": tokenization,
        "openai_tokenizer_check": openai_check,
    }
    (ref / "reference.json").write_text(json.dumps(reference, indent=1, ensure_ascii=False))


def export_clip(args):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, source = build_model(args)
    source = args.describe or source
    proc = image_processor(args.source)

    openai_check = None
    if args.random:
        tok, openai_tok = clip_tokenizer_from_openai_vocab(out / ".vocab")
        openai_check = check_against_openai(tok, openai_tok)
        shutil.rmtree(out / ".vocab")
        print(f"tokenizer vs OpenAI simple_tokenizer: {openai_check['agree']}/"
              f"{openai_check['total']} identical; differ on {openai_check['differ']}")
    else:
        from transformers import AutoTokenizer, AutoImageProcessor
        tok = AutoTokenizer.from_pretrained(args.source)
    tok.backend_tokenizer.save(str(out / "tokenizer.json"))

    vc = model.config.vision_config
    ctx = model.config.text_config.max_position_embeddings
    pv = torch.randn(2, 3, vc.image_size, vc.image_size)
    export_onnx(VisionGraph(model), (pv,), ["pixel_values"], "image_embeds",
                out / "vision.onnx", {"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}})
    enc = tok(["a photo", "a photo of a cat"], padding="max_length", max_length=ctx,
              return_tensors="pt")
    export_onnx(TextGraph(model), (enc["input_ids"], enc["attention_mask"]),
                ["input_ids", "attention_mask"], "text_embeds", out / "text.onnx",
                {"input_ids": {0: "batch"}, "attention_mask": {0: "batch"},
                 "text_embeds": {0: "batch"}})

    write_manifest(out, model, tok, source, proc, float(model.logit_scale.exp()))
    if args.reference:
        write_reference(out, model, tok, proc, openai_check)
    print(f"wrote {out}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="kind", required=True)
    c = sub.add_parser("clip", help="a CLIP bundle")
    c.add_argument("out", help="bundle folder to write")
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--from", dest="source", help="checkpoint folder or model id")
    src.add_argument("--random", choices=sorted(RANDOM_CONFIGS), help="random weights of a config")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--describe", help="the manifest's `source` (default: the checkpoint or config)")
    c.add_argument("--reference", action="store_true",
                   help="also write transformers' reference outputs to OUT/reference/")
    b = sub.add_parser("blip2", help="a BLIP-2 (OPT) bundle")
    b.add_argument("out", help="bundle folder to write")
    bsrc = b.add_mutually_exclusive_group(required=True)
    bsrc.add_argument("--from", dest="source", help="checkpoint folder or model id")
    bsrc.add_argument("--random", choices=["tiny", "opt-125m", "opt-1.3b", "opt-2.7b"], help="random weights of a config")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--describe", help="the manifest's `source` (default: the checkpoint or config)")
    b.add_argument("--reference", action="store_true",
                   help="also write transformers' reference outputs to OUT/reference/")
    b.add_argument("--images", default=str(HERE / "demo-frames"),
                   help="images for the reference outputs (default: models/demo-frames)")
    args = p.parse_args(argv)
    if args.kind == "clip":
        export_clip(args)
    elif args.kind == "blip2":
        sys.path.insert(0, str(HERE))
        from export_blip2 import export_blip2
        export_blip2(args)


if __name__ == "__main__":
    sys.exit(main())
