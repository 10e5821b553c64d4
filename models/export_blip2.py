"""BLIP-2 bundles: `python models/export.py blip2 OUT (--from ID | --random tiny|opt-125m|opt-1.3b|opt-2.7b)`.

Graphs:
- vision.onnx: pixel_values [B,3,S,S] -> query_embeds [B,Q,H]: the frozen ViT, the
  Q-Former and the language projection, i.e. what Blip2ForConditionalGeneration
  scatters into the image-token positions of the prompt.
- decoder.onnx: the OPT decoder for one call of the generation loop:
  inputs_embeds [B,S,H], attention_mask [B,P+S], past_key_i / past_value_i
  [B,heads,P,head_dim] -> logits [B,V] (last position only) and present_key_i /
  present_value_i [B,heads,P+S,head_dim]. One graph for the prefill (P = 0) and
  every step; no If, no Loop, every shape computed from tensors (no Python ints
  baked in at trace time), so tract plans it once.
- embed_tokens.npy: the token embedding table [V,H] (owlet looks prompt tokens up).

The decoder graph is written out from the HF modules' own weights in `OptStep`,
because HF's cache objects hide the past length in Python ints while tracing. Its
logits are checked against HF's own forward here, and the generate() ids in the
reference come from HF's generate, never from this wrapper.
"""
from __future__ import annotations

import gc
import json
import resource
from pathlib import Path

import numpy as np
import torch

from export import strip_value_info

BLIP2_RANDOM = {
    "tiny": dict(
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    image_size=224, patch_size=32),
        qformer=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                     encoder_hidden_size=32),
        text=dict(hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
                  word_embed_proj_dim=32, max_position_embeddings=128),
        num_query_tokens=8,
    ),
    # Salesforce/blip2-opt-2.7b's ViT-g and Q-Former are large; this keeps the OPT
    # decoder at facebook/opt-125m's dimensions for decoder benchmarks.
    "opt-125m": dict(
        # initializer_range: Blip2VisionConfig's default (1e-10) leaves activations
        # around 1e-9, which underflow to zero in fp16 (the GPU path's fp16 tests).
        vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                    image_size=224, patch_size=14, initializer_range=0.02),
        qformer=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                     encoder_hidden_size=768),
        text=dict(hidden_size=768, ffn_dim=3072, num_hidden_layers=12, num_attention_heads=12,
                  word_embed_proj_dim=768, max_position_embeddings=2048, vocab_size=50272),
        num_query_tokens=32,
        query_init_std=0.02,  # HF initialises the query tokens to zeros: 32 identical queries
    ),
}
# The same, with the decoder at facebook/opt-1.3b's dimensions: 5.3 GB of fp32
# weights, past protobuf's 2 GB, so the exporter writes them as external data (what
# a real OPT-2.7B export is; owlet-quantize and the runtime read it).
BLIP2_RANDOM["opt-1.3b"] = BLIP2_RANDOM["opt-125m"] | dict(
    text=dict(hidden_size=2048, ffn_dim=8192, num_hidden_layers=24, num_attention_heads=32,
              word_embed_proj_dim=2048, max_position_embeddings=2048, vocab_size=50272),
)

# Salesforce/blip2-opt-2.7b's dimensions throughout: ViT-g/14 (39 layers, 1408 wide,
# 257 tokens: Blip2VisionConfig's defaults), the Q-Former (12 layers, 32 queries) and
# OPT-2.7B (32 layers, 2560 wide, vocabulary 50272): 15.5 GB of fp32 weights, 10.6 GB
# of them the decoder's. `split`: made part by part, so that a 24 GB machine holds one
# part at a time (vision + Q-Former with a one-layer decoder, then the decoder with a
# one-layer vision tower); each part is its own random draw, as one model's would be.
BLIP2_RANDOM["opt-2.7b"] = dict(
    vision=dict(hidden_size=1408, intermediate_size=6144, num_hidden_layers=39, num_attention_heads=16,
                image_size=224, patch_size=14, initializer_range=0.02),
    qformer=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                 encoder_hidden_size=1408),
    text=dict(hidden_size=2560, ffn_dim=10240, num_hidden_layers=32, num_attention_heads=32,
              word_embed_proj_dim=2560, max_position_embeddings=2048, vocab_size=50272),
    num_query_tokens=32,
    query_init_std=0.02,
    split=True,
)


def vision_part(cfg: dict) -> dict:
    """The config with a one-layer decoder: what the vision graph needs of it is its width."""
    return cfg | dict(text=cfg["text"] | dict(num_hidden_layers=1))


def decoder_part(cfg: dict) -> dict:
    """The config with a one-layer vision tower and Q-Former: the decoder is whole."""
    return cfg | dict(vision=cfg["vision"] | dict(num_hidden_layers=1),
                      qformer=cfg["qformer"] | dict(num_hidden_layers=1))


# Corpus for the test tokenizer (no GPT-2 vocabulary can be downloaded here): camera
# captions and VQA phrasing, so that prompts tokenize to sensible pieces.
COLOURS = ["red", "blue", "green", "yellow", "white", "black", "orange", "purple", "grey", "brown"]
OBJECTS = ["car", "person", "cat", "dog", "bird", "package", "bicycle", "truck", "door", "tree",
           "cup", "coffee", "rocket", "woman", "man", "box", "shelf", "feeder", "machine"]
PROMPTS = ["", "a photo of", "Question: what colour is the car? Answer:",
           "Question: how many cats are there? Answer:", "Question: is the door open? Answer: no. Question: why? Answer:"]


def tokenizer_corpus():
    lines = []
    for c in COLOURS:
        for o in OBJECTS:
            lines.append(f"a {c} {o} next to the {o}s at the front door.")
            lines.append(f"Question: what colour is the {o}? Answer: {c}.")
            lines.append(f"Question: is there a {o}? Answer: yes, a {c} one.")
    lines += ["There are 0 1 2 3 4 5 6 7 8 9 10 of them, maybe more!", "How many? Why? Where? When? Who?",
              "café naïve — “quoted” 'single' (parens) [brackets] {braces}; colons: semis, commas."]
    return lines


def train_tokenizer(vocab_size: int = 600):
    """A byte-level BPE like OPT's (GPT-2's), with OPT's special-token ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(tokenizer_corpus(), trainer)
    # OPT's tokenizer starts every text with </s> (id 2), which is also its bos.
    tok.post_processor = processors.TemplateProcessing(single="</s> $A", special_tokens=[("</s>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="</s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>")
    # Blip2Processor's image placeholder token.
    fast.add_tokens(["<image>"], special_tokens=True)
    return fast


def build_blip2(args, vocab_size: int, image_token_id: int, cfg: dict | None = None):
    """The model: from a checkpoint, or random weights of `cfg` (default: --random's
    config; a part of it for a split export)."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    if args.random:
        cfg = cfg or BLIP2_RANDOM[args.random]
        torch.manual_seed(args.seed)
        config = Blip2Config(
            vision_config=cfg["vision"], qformer_config=cfg["qformer"],
            text_config=dict(dict(vocab_size=vocab_size) | cfg["text"], model_type="opt", bos_token_id=2,
                             eos_token_id=2, pad_token_id=1, do_layer_norm_before=True),
            num_query_tokens=cfg["num_query_tokens"], image_token_index=image_token_id,
        )
        config._attn_implementation = "eager"
        for sub in (config.vision_config, config.qformer_config, config.text_config):
            sub._attn_implementation = "eager"
        model = Blip2ForConditionalGeneration(config)
        if cfg.get("query_init_std"):
            with torch.no_grad():
                model.query_tokens.normal_(0.0, cfg["query_init_std"], generator=torch.Generator().manual_seed(args.seed + 2))
        # HF's init (std 0.02) leaves logits nearly flat, and a flat model repeats one
        # token forever: a weak test of a generation loop. Re-draw the decoder's
        # weights at unit scale so it is chaotic (outputs vary with image, prompt and
        # position) with clear margins between logits (no coin-toss ties).
        with torch.no_grad():
            g = torch.Generator().manual_seed(args.seed + 1)
            dec = model.language_model.model.decoder
            for mod in dec.modules():
                if isinstance(mod, torch.nn.Linear):
                    mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * 1.5 / mod.in_features ** 0.5)
                    if mod.bias is not None:
                        mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.1)
            dec.embed_tokens.weight.copy_(torch.randn(dec.embed_tokens.weight.shape, generator=g))
            dec.embed_positions.weight.copy_(torch.randn(dec.embed_positions.weight.shape, generator=g))
            model.language_projection.weight.mul_(20.0)
        source = f"random weights, config '{args.random}', seed {args.seed}"
    else:
        model = Blip2ForConditionalGeneration.from_pretrained(args.source, attn_implementation="eager",
                                                              torch_dtype=torch.float32)
        source = args.source
    return model.eval(), source


class VisionToQueries(torch.nn.Module):
    """pixel_values -> projected query embeddings, as in Blip2ForConditionalGeneration.generate."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, pixel_values):
        image_embeds = self.m.vision_model(pixel_values, return_dict=True).last_hidden_state
        mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long)
        q = self.m.query_tokens.expand(image_embeds.shape[0], -1, -1)
        out = self.m.qformer(query_embeds=q, encoder_hidden_states=image_embeds,
                             encoder_attention_mask=mask, return_dict=True).last_hidden_state
        return self.m.language_projection(out)


class OptStep(torch.nn.Module):
    """One OPT decoder call with an explicit KV cache (see the module docstring).

    Mirrors transformers' OPTDecoder / OPTDecoderLayer / OPTAttention (eager): the
    same modules, the same order of operations, positions from the attention mask
    (cumsum - 1, offset 2), the causal mask as an additive float32 minimum.
    """

    def __init__(self, lm):
        super().__init__()
        self.dec = lm.model.decoder
        self.lm_head = lm.lm_head
        c = lm.config
        self.heads = c.num_attention_heads
        self.head_dim = c.hidden_size // c.num_attention_heads
        self.pre = c.do_layer_norm_before

    def forward(self, inputs_embeds, attention_mask, *past):
        d = self.dec
        mask = attention_mask.to(torch.float32)
        # Sequence indices from cumsums of ones: every shape stays a tensor expression.
        q_idx = torch.cumsum(torch.ones_like(inputs_embeds[0, :, 0]), 0) - 1.0       # [S]
        k_idx = torch.cumsum(torch.ones_like(mask[0]), 0) - 1.0                      # [T]
        past_len = k_idx[-1:] - q_idx[-1:]                                           # [1] = T - S
        q_pos = q_idx + past_len                                                     # [S]
        positions = torch.cumsum(mask, 1) * mask - 1.0                               # [B,T]
        positions = torch.index_select(positions, 1, q_pos.long()).long()            # [B,S]
        h = inputs_embeds
        if d.project_in is not None:
            h = d.project_in(h)
        h = h + d.embed_positions.weight[positions + d.embed_positions.offset]
        allowed = (k_idx[None, :] <= q_pos[:, None])[None, None] & (mask[:, None, None, :] > 0)
        bias = torch.where(allowed, torch.zeros_like(allowed, dtype=torch.float32),
                           torch.full_like(allowed, torch.finfo(torch.float32).min, dtype=torch.float32))
        presents = []
        for i, layer in enumerate(d.layers):
            a = layer.self_attn
            residual = h
            x = layer.self_attn_layer_norm(h) if self.pre else h
            q = a.q_proj(x) * a.scaling
            k = a.k_proj(x)
            v = a.v_proj(x)
            split = lambda t: t.reshape(t.shape[0], t.shape[1], self.heads, self.head_dim).transpose(1, 2)
            q, k, v = split(q), split(k), split(v)
            k = torch.cat([past[2 * i], k], dim=2)
            v = torch.cat([past[2 * i + 1], v], dim=2)
            presents += [k, v]
            w = torch.matmul(q, k.transpose(-1, -2)) + bias
            w = torch.softmax(w, dim=-1)
            o = torch.matmul(w, v).transpose(1, 2)
            o = o.reshape(o.shape[0], o.shape[1], self.heads * self.head_dim)
            h = residual + a.out_proj(o)
            if not self.pre:
                h = layer.self_attn_layer_norm(h)
            residual = h
            x = layer.final_layer_norm(h) if self.pre else h
            h = residual + layer.fc2(layer.activation_fn(layer.fc1(x)))
            if not self.pre:
                h = layer.final_layer_norm(h)
        if d.final_layer_norm is not None:
            h = d.final_layer_norm(h)
        if d.project_out is not None:
            h = d.project_out(h)
        logits = self.lm_head(h[:, -1, :])
        return (logits, *presents)


def export_graphs(out: Path, model):
    export_vision(out, model)
    return export_decoder(out, model)


def export_vision(out: Path, model):
    vc = model.config.vision_config
    pv = torch.randn(1, 3, vc.image_size, vc.image_size)
    torch.onnx.export(VisionToQueries(model), (pv,), str(out / "vision.onnx"), input_names=["pixel_values"],
                      output_names=["query_embeds"], dynamic_axes={"pixel_values": {0: "batch"},
                                                                  "query_embeds": {0: "batch"}},
                      opset_version=17, do_constant_folding=True, dynamo=False)
    strip_value_info(out / "vision.onnx")


def export_decoder(out: Path, model):
    tc = model.config.text_config
    lm = model.language_model
    step = OptStep(lm).eval()
    heads, hd = step.heads, step.head_dim
    B, P, S = 2, 3, 4
    embeds = torch.randn(B, S, tc.word_embed_proj_dim)
    mask = torch.ones(B, P + S, dtype=torch.long)
    past = [torch.randn(B, heads, P, hd) for _ in range(2 * tc.num_hidden_layers)]
    names_past, names_present, axes = [], [], {
        "inputs_embeds": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "total"},
        "logits": {0: "batch"}}
    for i in range(tc.num_hidden_layers):
        for kv in ("key", "value"):
            names_past.append(f"past_{kv}_{i}")
            names_present.append(f"present_{kv}_{i}")
            axes[f"past_{kv}_{i}"] = {0: "batch", 2: "past"}
            axes[f"present_{kv}_{i}"] = {0: "batch", 2: "total"}
    torch.onnx.export(step, (embeds, mask, *past), str(out / "decoder.onnx"),
                      input_names=["inputs_embeds", "attention_mask", *names_past],
                      output_names=["logits", *names_present], dynamic_axes=axes,
                      opset_version=17, do_constant_folding=True, dynamo=False)
    strip_value_info(out / "decoder.onnx")
    table = lm.get_input_embeddings().weight.detach().numpy().astype(np.float32)
    np.save(out / "embed_tokens.npy", table)
    return step


@torch.no_grad()
def check_step_against_hf(step, lm, tok_dim: int):
    """The wrapper must equal HF's own OPT forward (prefill and one cached step)."""
    torch.manual_seed(1)
    e = torch.randn(1, 7, tok_dim)
    hf = lm(inputs_embeds=e, attention_mask=torch.ones(1, 7, dtype=torch.long)).logits[:, -1]
    past = [torch.zeros(1, step.heads, 0, step.head_dim) for _ in range(2 * len(step.dec.layers))]
    ours = step(e, torch.ones(1, 7, dtype=torch.long), *past)[0]
    d1 = (hf - ours).abs().max().item()
    pre = step(e[:, :6], torch.ones(1, 6, dtype=torch.long), *past)
    inc = step(e[:, 6:], torch.ones(1, 7, dtype=torch.long), *pre[1:])[0]
    d2 = (hf - inc).abs().max().item()
    # Relative to the logits' size: a 24-layer decoder's logits run to the
    # hundreds, where f32 rounding alone is past 1e-4.
    tol = 1e-4 * max(1.0, hf.abs().max().item() / 10)
    assert d1 < tol and d2 < tol, f"OptStep differs from HF OPT: {d1}, {d2} (logits up to {hf.abs().max().item():.1f})"
    return max(d1, d2)


def blip_processor(image_size: int):
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil
    return BlipImageProcessorPil(size={"height": image_size, "width": image_size})


def write_manifest(out: Path, model, tok, source: str, proc, max_new_tokens: int):
    c, tc = model.config, model.config.text_config
    heads = tc.num_attention_heads
    (out / "owlet.toml").write_text(f"""# owlet model bundle, written by models/export.py
kind = "blip2"
name = "{out.name}"
source = "{source}"

[vision]
file = "vision.onnx"
precision = "fp32"
input = "pixel_values"
output = "query_embeds"
embed_dim = {tc.word_embed_proj_dim}

[vision.preprocess]
resize = "square"
size = {proc.size.height}
resample = "bicubic"
crop = "none"
crop_size = {proc.size.height}
rescale = {proc.rescale_factor!r}
mean = {list(map(float, proc.image_mean))}
std = {list(map(float, proc.image_std))}

[decoder]
file = "decoder.onnx"
precision = "fp32"
embed_tokens = "embed_tokens.npy"
tokenizer = "tokenizer.json"
layers = {tc.num_hidden_layers}
heads = {heads}
head_dim = {tc.hidden_size // heads}
max_positions = {tc.max_position_embeddings}

[generation]
num_query_tokens = {c.num_query_tokens}
# The placeholder the image queries replace in the prompt (Blip2Processor's <image>).
image_token_id = {c.image_token_index}
bos_token_id = {tc.bos_token_id}
eos_token_id = {tc.eos_token_id}
pad_token_id = {tc.pad_token_id}
max_new_tokens = {max_new_tokens}
caption_prompt = ""
question_template = "Question: {{}} Answer:"
""")


@torch.no_grad()
def write_reference(out: Path, model, tok, proc, images_dir: Path):
    from PIL import Image

    ref = out / "reference"
    ref.mkdir(parents=True, exist_ok=True)
    images = sorted(images_dir.iterdir())
    names = [p.name for p in images]
    pil = [Image.open(p).convert("RGB") for p in images]
    pixel_values = proc(images=pil, return_tensors="pt")["pixel_values"]
    query = VisionToQueries(model)(pixel_values)
    Q = model.config.num_query_tokens
    image_id = model.config.image_token_index

    cases = []
    settings = [dict(num_beams=1), dict(num_beams=3), dict(num_beams=3, length_penalty=0.5)]
    for i, name in enumerate(names):
        for prompt in PROMPTS[:3] if i else PROMPTS:
            ids = tok(prompt, add_special_tokens=True)["input_ids"]
            input_ids = torch.tensor([[image_id] * Q + ids])
            for s in settings:
                gen = model.generate(pixel_values=pixel_values[i:i + 1], input_ids=input_ids,
                                     attention_mask=torch.ones_like(input_ids), do_sample=False,
                                     max_new_tokens=12, min_new_tokens=0, repetition_penalty=1.0,
                                     early_stopping=False, **s)
                new = gen[0, input_ids.shape[1]:].tolist() if gen.shape[1] > input_ids.shape[1] else []
                cases.append({"image": name, "prompt": prompt, "prompt_ids": ids, **s,
                              "max_new_tokens": 12, "eos_token_id": 2, "generated_ids": new,
                              "text": tok.decode(new, skip_special_tokens=True)})
    # Stopping on eos: this random model never picks eos (2) in 12 steps, so re-run
    # the caption cases with eos set to the token greedy picks at step 4.
    for c in [c for c in cases if c["prompt"] == "" and c["num_beams"] == 1][:3]:
        eos = c["generated_ids"][3]
        i = names.index(c["image"])
        ids = c["prompt_ids"]
        input_ids = torch.tensor([[image_id] * Q + ids])
        for s in settings:
            gen = model.generate(pixel_values=pixel_values[i:i + 1], input_ids=input_ids,
                                 attention_mask=torch.ones_like(input_ids), do_sample=False,
                                 max_new_tokens=12, min_new_tokens=0, repetition_penalty=1.0,
                                 early_stopping=False, eos_token_id=eos, pad_token_id=1, **s)
            new = gen[0, input_ids.shape[1]:].tolist()
            cases.append({"image": c["image"], "prompt": "", "prompt_ids": ids, **s, "max_new_tokens": 12,
                          "eos_token_id": eos, "generated_ids": new, "text": ""})
    # Repetition penalty (applied to logits for greedy, to log-probs for beams).
    ids = tok("a photo of", add_special_tokens=True)["input_ids"]
    input_ids = torch.tensor([[image_id] * Q + ids])
    for s in settings[:2]:
        gen = model.generate(pixel_values=pixel_values[:1], input_ids=input_ids,
                             attention_mask=torch.ones_like(input_ids), do_sample=False,
                             max_new_tokens=12, min_new_tokens=2, repetition_penalty=1.5,
                             early_stopping=False, **s)
        new = gen[0, input_ids.shape[1]:].tolist()
        cases.append({"image": names[0], "prompt": "a photo of", "prompt_ids": ids, **s, "max_new_tokens": 12,
                      "min_new_tokens": 2, "repetition_penalty": 1.5, "eos_token_id": 2,
                      "generated_ids": new, "text": tok.decode(new, skip_special_tokens=True)})
    # First-step logits for the first image and the caption prompt, from HF's forward.
    ids = tok("", add_special_tokens=True)["input_ids"]
    input_ids = torch.tensor([[image_id] * Q + ids])
    embeds = model.get_input_embeddings()(input_ids)
    embeds[0, :Q] = query[0]
    logits = model.language_model(inputs_embeds=embeds, attention_mask=torch.ones_like(input_ids)).logits[0, -1]
    reference = {
        "made_by": "models/export.py blip2 with transformers " + __import__("transformers").__version__,
        "images": names,
        "query_embeds_first": query[0].tolist(),
        "first_step_logits": logits.tolist(),
        "generate": cases,
        "tokenization": [{"text": p, "ids": tok(p)["input_ids"]} for p in PROMPTS],
    }
    (ref / "reference.json").write_text(json.dumps(reference, indent=1))
    for i, name in enumerate(names):
        np.save(ref / f"{Path(name).stem}.pixel_values.npy", pixel_values[i].numpy().astype(np.float32))


def export_blip2(args):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.random:
        tok = train_tokenizer()
    else:
        from transformers import AutoProcessor, AutoTokenizer
        try:
            tok = AutoProcessor.from_pretrained(args.source).tokenizer
        except (OSError, ValueError):  # a checkpoint saved with its tokenizer alone (models/demo)
            tok = AutoTokenizer.from_pretrained(args.source)
    image_token_id = tok.convert_tokens_to_ids("<image>")
    split = bool(args.random and BLIP2_RANDOM[args.random].get("split"))
    decoder_cfg = None
    if split:
        if args.reference:
            raise SystemExit("export.py: --reference needs the whole model at once; not with a split config")
        cfg = BLIP2_RANDOM[args.random]
        model, _ = build_blip2(args, len(tok), image_token_id, vision_part(cfg))
        export_vision(out, model)
        print(f"vision graph written (peak so far {peak_rss_gb():.1f} GB)")
        del model
        gc.collect()
        decoder_cfg = decoder_part(cfg)
    model, source = build_blip2(args, len(tok), image_token_id, decoder_cfg)
    source = args.describe or source
    tok.backend_tokenizer.save(str(out / "tokenizer.json"))
    proc = blip_processor(model.config.vision_config.image_size)
    # Reference first: torch.onnx.export leaves the model in a state in which HF's
    # generate() gave other tokens (seen with torch 2.15 / transformers 5.24).
    if args.reference:
        write_reference(out, model, tok, proc, Path(args.images))
    if split:  # the vision graph is written already
        step = export_decoder(out, model)
    else:
        step = export_graphs(out, model)
    diff = check_step_against_hf(step, model.language_model, model.config.text_config.word_embed_proj_dim)
    print(f"decoder wrapper vs HF OPT forward: max |logit diff| {diff:.2e}")
    write_manifest(out, model, tok, source, proc, max_new_tokens=30)
    if args.reference:
        check_graphs_reproduce_reference(out)
    print(f"wrote {out} (peak memory of the export: {peak_rss_gb():.1f} GB)")


def peak_rss_gb() -> float:
    """This process's peak resident set so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def check_graphs_reproduce_reference(out: Path):
    """Greedy-decode the first reference case with onnxruntime on the exported graphs:
    the graphs, not only the torch model, must give transformers' tokens."""
    import onnxruntime as ort
    ref = json.loads((out / "reference" / "reference.json").read_text())
    case = ref["generate"][0]
    assert case["num_beams"] == 1
    vis = ort.InferenceSession(str(out / "vision.onnx"))
    dec = ort.InferenceSession(str(out / "decoder.onnx"))
    table = np.load(out / "embed_tokens.npy")
    pv = np.load(out / "reference" / f"{Path(case['image']).stem}.pixel_values.npy")[None]
    q = vis.run(None, {"pixel_values": pv})[0]
    embeds = np.concatenate([q, table[case["prompt_ids"]][None]], axis=1).astype(np.float32)
    layers = [i.name for i in dec.get_inputs()][2:]
    shape = dec.get_inputs()[2].shape
    past = {n: np.zeros((1, shape[1], 0, shape[3]), np.float32) for n in layers}
    total, got = 0, []
    for _ in range(case["max_new_tokens"]):
        total += embeds.shape[1]
        outs = dec.run(None, {"inputs_embeds": embeds, "attention_mask": np.ones((1, total), np.int64), **past})
        t = int(outs[0][0].argmax())
        got.append(t)
        if t == case["eos_token_id"]:
            break
        past = dict(zip(layers, outs[1:]))
        embeds = table[[t]][None].astype(np.float32)
    assert got == case["generated_ids"], f"exported graphs give {got}, transformers {case['generated_ids']}"
    print("exported graphs reproduce transformers' greedy tokens (onnxruntime)")
