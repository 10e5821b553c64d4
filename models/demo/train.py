"""Train owlet's demo CLIP and BLIP-2 on generated scenes (models/demo/scenes.py).

    python3 models/demo/train.py OUT [--device cuda] [--train 60000]

writes OUT/clip/ and OUT/blip2/: Hugging Face checkpoints (CLIPModel,
Blip2ForConditionalGeneration with OPT) with their tokenizers and image-processor
configs, which models/export.py turns into owlet bundles (`--from OUT/clip`).
A GPU takes a few minutes; a CPU works (hours on 2 cores). Seeded: the data and the
initial weights follow from the seeds; a GPU's kernels still make runs differ in
the last bits.

The recipe:
- Tokenizers: byte-level BPE trained on the scenes' words plus common English, so
  any text (a user's own labels) still tokenizes. CLIP's lower-cases and wraps the
  text in <|startoftext|> ... <|endoftext|>; BLIP-2's (OPT) has OPT's special ids.
- CLIP: contrastive training on (frame, text) pairs, where the text is the caption,
  "a photo of a {kind}" or "a photo of a {colour} {kind}". Several frames of a batch
  can fit one text ("a photo of a car"), so the targets are soft: every pair whose
  text is true of the frame counts, instead of only the diagonal.
- BLIP-2: the vision encoder starts from CLIP's (Blip2VisionModel has no
  pre-LayerNorm, so the tower cannot be copied exactly and is trained on with the
  rest), then Q-Former, projection and a small OPT learn captions ("" -> "a red
  car"), answers ("Question: what colour is the car? Answer:" -> " red") and
  two-turn chats in owlet's chat format.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scenes  # noqa: E402

IMAGE_SIZE, PATCH = 96, 12
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]
CLIP_CONTEXT = 32
KIND_TEMPLATES = ["a photo of a {}", "a photo of the {}", "a picture of a {}"]

CLIP_CONFIG = dict(
    text=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
              max_position_embeddings=CLIP_CONTEXT),
    vision=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                image_size=IMAGE_SIZE, patch_size=PATCH),
    projection_dim=64,
)
BLIP2_QFORMER = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                     encoder_hidden_size=128, cross_attention_frequency=1)
BLIP2_OPT = dict(hidden_size=128, ffn_dim=512, num_hidden_layers=3, num_attention_heads=4,
                 word_embed_proj_dim=128, max_position_embeddings=64)
NUM_QUERIES = 8


# --------------------------------------------------------------------------------
# Data

def _render(args):
    split, i = args
    from PIL import Image
    import io
    scene, jpeg = scenes.render(split, i)
    img = Image.open(io.BytesIO(jpeg)).convert("RGB")
    # CLIP: shortest edge to 96, centre crop (transformers' CLIPImageProcessor);
    # BLIP-2: the whole frame squashed to 96 x 96 (BlipImageProcessor).
    w, h = img.size
    s = IMAGE_SIZE / min(w, h)
    r = img.resize((round(w * s), round(h * s)), Image.BICUBIC)
    l, t = (r.width - IMAGE_SIZE) // 2, (r.height - IMAGE_SIZE) // 2
    clip = np.asarray(r.crop((l, t, l + IMAGE_SIZE, t + IMAGE_SIZE)))
    blip = np.asarray(img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC))
    return scene.to_json(), clip, blip


def make_data(split: str, count: int, cache: Path):
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        meta = json.loads(str(z["meta"]))
        if len(meta) == count:
            return meta, z["clip"], z["blip"]
    t = time.time()
    with Pool(os.cpu_count()) as pool:
        rows = pool.map(_render, [(split, i) for i in range(count)], chunksize=256)
    meta = [r[0] for r in rows]
    clip = np.stack([r[1] for r in rows])
    blip = np.stack([r[2] for r in rows])
    np.savez(cache, meta=json.dumps(meta), clip=clip, blip=blip)
    print(f"rendered {count} {split} scenes in {time.time() - t:.0f} s", flush=True)
    return meta, clip, blip


def to_pixels(batch_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [B,H,W,3] -> normalised float [B,3,H,W], as the image processors do."""
    x = batch_u8.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(MEAN, device=x.device)[None, :, None, None]
    std = torch.tensor(STD, device=x.device)[None, :, None, None]
    return (x - mean) / std


# --------------------------------------------------------------------------------
# Tokenizers

def corpus() -> list[str]:
    lines = []
    for k in scenes.KINDS:
        for c in scenes.COLOURS:
            lines.append(f"a {c} {k} next to a {c} {k}")
            lines.append(f"a photo of a {c} {k}. a picture of the {k}.")
            lines.append(f"Question: what colour is the {k}? Answer: {c}.")
            lines.append(f"Question: is there a {k}? Answer: yes. Question: what is the {c} object? Answer: {k}.")
    lines.append("Question: how many objects are there? Answer: one. two. three. no.")
    # Common words, so that a user's own labels and questions make sensible pieces.
    lines.append("the a an of in on at to and or is are was there this that what which who where when why "
                 "how many much door front back garden street shelf feeder machine cat cup coffee truck "
                 "tree house window room kitchen yard animal vehicle empty nobody something open closed "
                 "left right near far big small large little colour color grey orange purple brown pink")
    return lines * 3


def train_bpe(special: list[str], lowercase: bool, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    if lowercase:
        tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    return tok


def clip_tokenizer():
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    tok = train_bpe(["<|startoftext|>", "<|endoftext|>"], lowercase=True, vocab_size=512)
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", 0), ("<|endoftext|>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|startoftext|>",
                                   eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   model_max_length=CLIP_CONTEXT)


def opt_tokenizer():
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    tok = train_bpe(["<s>", "<pad>", "</s>", "<unk>"], lowercase=False, vocab_size=512)
    # OPT starts every text with </s> (id 2), which is also its bos.
    tok.post_processor = processors.TemplateProcessing(single="</s> $A", special_tokens=[("</s>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="</s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>")
    fast.add_tokens(["<image>"], special_tokens=True)   # Blip2Processor's placeholder
    return fast


# --------------------------------------------------------------------------------
# CLIP

def clip_texts(meta, r: np.random.Generator):
    """One text per frame and what it claims: ("caption", str) or a set of (kind, colour|None)."""
    texts, claims = [], []
    for m in meta:
        u = r.random()
        o = m["objects"][r.integers(len(m["objects"]))]
        if u < 0.5:
            texts.append(m["caption"])
            claims.append(("caption", m["caption"]))
        elif u < 0.75:
            texts.append(KIND_TEMPLATES[r.integers(len(KIND_TEMPLATES))].format(o["kind"]))
            claims.append(("has", (o["kind"], None)))
        else:
            texts.append(f"a photo of a {o['colour']} {o['kind']}")
            claims.append(("has", (o["kind"], o["colour"])))
    return texts, claims


def true_of(m, claim) -> bool:
    what, c = claim
    if what == "caption":
        return m["caption"] == c
    kind, colour = c
    return any(o["kind"] == kind and (colour is None or o["colour"] == colour) for o in m["objects"])


def train_clip(out: Path, meta, pixels_u8, device, steps: int, batch: int):
    from transformers import CLIPConfig, CLIPModel, CLIPImageProcessor
    torch.manual_seed(0)
    tok = clip_tokenizer()
    config = CLIPConfig(
        text_config=dict(CLIP_CONFIG["text"], vocab_size=len(tok), bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=CLIP_CONFIG["vision"], projection_dim=CLIP_CONFIG["projection_dim"])
    model = CLIPModel(config).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.05)
    data = torch.from_numpy(pixels_u8).to(device)
    r = np.random.default_rng(10)
    t0 = time.time()
    for step in range(steps):
        idx = r.choice(len(meta), size=batch, replace=False)
        bm = [meta[i] for i in idx]
        texts, claims = clip_texts(bm, r)
        enc = tok(texts, padding="max_length", max_length=CLIP_CONTEXT, truncation=True, return_tensors="pt").to(device)
        target = torch.tensor([[true_of(m, c) for c in claims] for m in bm], dtype=torch.float32, device=device)
        ie = model.get_image_features(pixel_values=to_pixels(data[torch.from_numpy(idx).to(device)]))
        te = model.get_text_features(**enc)
        ie = getattr(ie, "pooler_output", ie)
        te = getattr(te, "pooler_output", te)
        ie, te = F.normalize(ie, dim=-1), F.normalize(te, dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * ie @ te.T
        loss = (-(target / target.sum(1, keepdim=True)) * logits.log_softmax(1)).sum(1).mean() \
            + (-(target / target.sum(0, keepdim=True)) * logits.log_softmax(0)).sum(0).mean()
        opt.zero_grad(set_to_none=True)
        (loss / 2).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 200 == 0 or step == steps - 1:
            print(f"clip step {step}/{steps} loss {loss.item() / 2:.4f} "
                  f"scale {model.logit_scale.exp().item():.1f} {time.time() - t0:.0f} s", flush=True)
    model = model.eval().cpu()
    dest = out / "clip"
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                       image_mean=MEAN, image_std=STD).save_pretrained(dest)
    return model


# --------------------------------------------------------------------------------
# BLIP-2

def vision_from_clip(blip, clip):
    """Copy CLIP's vision tower into Blip2VisionModel (all but CLIP's pre-LayerNorm)."""
    cv, bv = clip.vision_model, blip.vision_model
    with torch.no_grad():
        bv.embeddings.patch_embedding.weight.copy_(cv.embeddings.patch_embedding.weight)
        bv.embeddings.patch_embedding.bias.zero_()
        bv.embeddings.class_embedding.copy_(cv.embeddings.class_embedding.view_as(bv.embeddings.class_embedding))
        bv.embeddings.position_embedding.copy_(cv.embeddings.position_embedding.weight.view_as(bv.embeddings.position_embedding))
        for cl, bl in zip(cv.encoder.layers, bv.encoder.layers):
            a, b = cl.self_attn, bl.self_attn
            b.qkv.weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
            b.qkv.bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
            b.projection.load_state_dict(a.out_proj.state_dict())
            bl.layer_norm1.load_state_dict(cl.layer_norm1.state_dict())
            bl.layer_norm2.load_state_dict(cl.layer_norm2.state_dict())
            bl.mlp.load_state_dict(cl.mlp.state_dict())
        bv.post_layernorm.load_state_dict(cv.post_layernorm.state_dict())


def blip2_example(m, r: np.random.Generator) -> tuple[str, str]:
    """(prompt, target) in owlet's formats: caption, question, or a two-turn chat."""
    u = r.random()
    qs = m["questions"]
    if u < 0.4:
        return "", m["caption"]
    q = qs[r.integers(len(qs))]
    if u < 0.85:
        return f"Question: {q['question']} Answer:", " " + q["answer"]
    p = qs[r.integers(len(qs))]
    return f"Question: {p['question']} Answer: {p['answer']}. Question: {q['question']} Answer:", " " + q["answer"]


def query_embeds(model, pixel_values):
    image = model.vision_model(pixel_values=pixel_values).last_hidden_state
    q = model.query_tokens.expand(image.shape[0], -1, -1)
    mask = torch.ones(image.shape[:-1], dtype=torch.long, device=image.device)
    out = model.qformer(query_embeds=q, encoder_hidden_states=image, encoder_attention_mask=mask).last_hidden_state
    return model.language_projection(out)


def train_blip2(out: Path, meta, pixels_u8, clip, device, steps: int, batch: int):
    from transformers import Blip2Config, Blip2ForConditionalGeneration
    torch.manual_seed(1)
    tok = opt_tokenizer()
    image_id = tok.convert_tokens_to_ids("<image>")
    vision = dict(CLIP_CONFIG["vision"], hidden_act="quick_gelu")
    config = Blip2Config(
        vision_config=vision, qformer_config=BLIP2_QFORMER,
        text_config=dict(BLIP2_OPT, vocab_size=len(tok), model_type="opt", bos_token_id=2, eos_token_id=2,
                         pad_token_id=1, do_layer_norm_before=True),
        num_query_tokens=NUM_QUERIES, image_token_index=image_id)
    model = Blip2ForConditionalGeneration(config)
    vision_from_clip(model, clip)
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.05)
    data = torch.from_numpy(pixels_u8).to(device)
    embed = model.get_input_embeddings()
    r = np.random.default_rng(20)
    t0 = time.time()
    memo: dict[tuple[str, bool], list[int]] = {}   # a few hundred distinct strings

    def ids_of(text: str, special: bool) -> list[int]:
        if (text, special) not in memo:
            memo[text, special] = tok(text, add_special_tokens=special)["input_ids"]
        return memo[text, special]
    for step in range(steps):
        idx = r.choice(len(meta), size=batch, replace=False)
        pairs = [blip2_example(meta[i], r) for i in idx]
        rows, labels = [], []
        for prompt, target in pairs:
            p = ids_of(prompt, True)
            t = ids_of(target, False) + [tok.eos_token_id]
            rows.append(p + t)
            labels.append([-100] * len(p) + t)
        L = max(map(len, rows))
        ids = torch.full((batch, L), tok.pad_token_id)
        lab = torch.full((batch, NUM_QUERIES + L), -100)
        mask = torch.zeros((batch, NUM_QUERIES + L), dtype=torch.long)
        for i, (row, lb) in enumerate(zip(rows, labels)):
            ids[i, :len(row)] = torch.tensor(row)
            lab[i, NUM_QUERIES:NUM_QUERIES + len(lb)] = torch.tensor(lb)
            mask[i, :NUM_QUERIES + len(row)] = 1
        ids, lab, mask = ids.to(device), lab.to(device), mask.to(device)
        qe = query_embeds(model, to_pixels(data[torch.from_numpy(idx).to(device)]))
        x = torch.cat([qe, embed(ids)], 1)
        logits = model.language_model(inputs_embeds=x, attention_mask=mask).logits
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), lab[:, 1:].reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 200 == 0 or step == steps - 1:
            print(f"blip2 step {step}/{steps} loss {loss.item():.4f} {time.time() - t0:.0f} s", flush=True)
    model = model.eval().cpu()
    dest = out / "blip2"
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    return model


@torch.no_grad()
def quick_eval(clip, blip, meta, clip_px, blip_px, device):
    """A first look on held-out scenes (models/demo/evaluate.py is the real report)."""
    clip, blip = clip.to(device), blip.to(device)
    ctok, otok = clip_tokenizer(), opt_tokenizer()
    enc = ctok([f"a photo of a {k}" for k in scenes.KINDS], padding="max_length", max_length=CLIP_CONTEXT,
               return_tensors="pt").to(device)
    te = F.normalize(getattr(x := clip.get_text_features(**enc), "pooler_output", x), dim=-1)
    ie = F.normalize(getattr(x := clip.get_image_features(pixel_values=to_pixels(torch.from_numpy(clip_px).to(device))),
                             "pooler_output", x), dim=-1)
    top = (ie @ te.T).argmax(1).tolist()
    single = [i for i, m in enumerate(meta) if len(m["objects"]) == 1]
    zs = np.mean([scenes.KINDS[top[i]] == meta[i]["objects"][0]["kind"] for i in single])
    qe = query_embeds(blip, to_pixels(torch.from_numpy(blip_px).to(device)))
    embed = blip.get_input_embeddings()

    def greedy(prompts):
        ids = [otok(p)["input_ids"] for p in prompts]
        outs = []
        for i, p in enumerate(ids):
            cur = list(p)
            for _ in range(12):
                x = torch.cat([qe[i:i + 1], embed(torch.tensor([cur], device=device))], 1)
                t = int(blip.language_model(inputs_embeds=x).logits[0, -1].argmax())
                if t == otok.eos_token_id:
                    break
                cur.append(t)
            outs.append(otok.decode(cur[len(p):], skip_special_tokens=True).strip())
        return outs
    caps = greedy([""] * len(meta))
    cap_acc = np.mean([c == m["caption"] for c, m in zip(caps, meta)])
    qa = [(i, q) for i, m in enumerate(meta) for q in m["questions"]]
    qe = torch.cat([qe[i:i + 1] for i, _ in qa])   # greedy() takes row i's image for prompt i
    answers = greedy([f"Question: {q['question']} Answer:" for _, q in qa])
    vqa = np.mean([a == q["answer"] for a, (_, q) in zip(answers, qa)])
    print(f"held-out ({len(meta)}): zero-shot top-1 {zs:.3f} (single objects), captions exact {cap_acc:.3f}, "
          f"VQA exact {vqa:.3f}", flush=True)
    for c, m in list(zip(caps, meta))[:8]:
        print(f"  {m['caption']!r:45} -> {c!r}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--train", type=int, default=60000, help="training scenes")
    p.add_argument("--clip-steps", type=int, default=4000)
    p.add_argument("--blip2-steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--clip-from", help="a trained CLIP checkpoint: train BLIP-2 only")
    p.add_argument("--eval", type=int, default=300, help="held-out scenes for the first look")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta, clip_px, blip_px = make_data("train", args.train, out / "train-data.npz")
    if args.clip_from:
        from transformers import CLIPModel
        clip = CLIPModel.from_pretrained(args.clip_from)
    else:
        clip = train_clip(out, meta, clip_px, args.device, args.clip_steps, args.batch)
    blip = train_blip2(out, meta, blip_px, clip, args.device, args.blip2_steps, args.batch)
    hmeta, hclip, hblip = make_data("heldout", args.eval, out / "heldout-data.npz")
    quick_eval(clip, blip, hmeta, hclip, hblip, args.device)
    print(f"wrote {out}/clip and {out}/blip2")


if __name__ == "__main__":
    main()
