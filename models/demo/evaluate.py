"""Score the demo checkpoints with transformers on the held-out scenes.

    python3 models/demo/evaluate.py [--scenes models/scenes/heldout]

Reads models/demo/checkpoints/{clip,blip2} (what models/export.py turned into
models/clip-demo and models/blip2-demo) and writes SCENES/transformers.json: each
frame's zero-shot top label, greedy caption and answers, and the accuracies. The
owlet side of the same evaluation is runtime/tests/it/demo.rs, which runs the
exported bundles in owlet, checks the same accuracies and compares its outputs
with these frame by frame.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import scenes  # noqa: E402

LABEL_TEMPLATE = "a photo of a {}"   # owlet's default zero-shot template
CHAT_NEW_TOKENS = 6                  # runtime/tests/it/demo.rs asks chat turns with this limit


@torch.no_grad()
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", default=str(HERE.parent / "scenes" / "heldout"))
    p.add_argument("--checkpoints", default=str(HERE / "checkpoints"))
    args = p.parse_args(argv)
    from PIL import Image
    from transformers import AutoTokenizer, Blip2ForConditionalGeneration, CLIPModel
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    folder, ck = Path(args.scenes), Path(args.checkpoints)
    rows = [json.loads(l) for l in (folder / "scenes.jsonl").read_text().splitlines()]
    clip = CLIPModel.from_pretrained(ck / "clip", attn_implementation="eager").eval()
    ctok = AutoTokenizer.from_pretrained(ck / "clip")
    cproc = CLIPImageProcessorPil.from_pretrained(ck / "clip")
    blip = Blip2ForConditionalGeneration.from_pretrained(ck / "blip2", attn_implementation="eager").eval()
    otok = AutoTokenizer.from_pretrained(ck / "blip2")
    size = blip.config.vision_config.image_size
    bproc = BlipImageProcessorPil(size={"height": size, "width": size})
    Q, image_id = blip.config.num_query_tokens, blip.config.image_token_index

    enc = ctok([LABEL_TEMPLATE.format(k) for k in scenes.KINDS], padding="max_length",
               max_length=clip.config.text_config.max_position_embeddings, return_tensors="pt")
    te = clip.get_text_features(**enc).pooler_output
    te = te / te.norm(dim=-1, keepdim=True)

    def generate(pixel_values, prompt: str, max_new_tokens: int = 30) -> str:
        ids = otok(prompt)["input_ids"]
        input_ids = torch.tensor([[image_id] * Q + ids])
        out = blip.generate(pixel_values=pixel_values, input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                            do_sample=False, num_beams=1, max_new_tokens=max_new_tokens)
        return otok.decode(out[0, input_ids.shape[1]:], skip_special_tokens=True).strip()

    def chat(pixel_values, questions: list[str]) -> list[str]:
        """owlet's chat recipe (runtime/src/models/blip2 Chat::prompt_for): earlier
        turns folded into the prompt; 6 new tokens a turn, as the owlet test asks."""
        turns: list[str] = []
        for q in questions:
            prompt = " ".join(turns + [f"Question: {q} Answer:"])
            a = generate(pixel_values, prompt, CHAT_NEW_TOKENS)
            turns.append(f"Question: {q} Answer: {a}.")
            yield a

    frames = {}
    for i, row in enumerate(rows):
        img = Image.open(folder / row["file"]).convert("RGB")
        ie = clip.get_image_features(**cproc(images=img, return_tensors="pt")).pooler_output
        ie = ie / ie.norm(dim=-1, keepdim=True)
        top = scenes.KINDS[int((ie @ te.T).argmax())]
        pv = bproc(images=img, return_tensors="pt")["pixel_values"]
        frames[row["file"]] = {
            "top_label": top,
            "caption": generate(pv, ""),
            "answers": [generate(pv, f"Question: {q['question']} Answer:") for q in row["questions"]],
        }
        if len(row["objects"]) == 2:  # two-turn chats on the two-thing frames: the first two questions
            frames[row["file"]]["chat"] = list(chat(pv, [q["question"] for q in row["questions"][:2]]))
        if i % 50 == 0:
            print(f"{i}/{len(rows)}", flush=True)

    single = [r for r in rows if len(r["objects"]) == 1]
    summary = {
        "frames": len(rows),
        "zero_shot_top1_single": float(np.mean([frames[r["file"]]["top_label"] == r["objects"][0]["kind"] for r in single])),
        "zero_shot_single_frames": len(single),
        "zero_shot_top1_present": float(np.mean([frames[r["file"]]["top_label"] in [o["kind"] for o in r["objects"]]
                                                 for r in rows])),
        "captions_exact": float(np.mean([frames[r["file"]]["caption"] == r["caption"] for r in rows])),
        "vqa_exact": float(np.mean([a == q["answer"] for r in rows
                                    for a, q in zip(frames[r["file"]]["answers"], r["questions"])])),
        "questions": sum(len(r["questions"]) for r in rows),
        "chat_exact": float(np.mean([a == q["answer"] for r in rows if "chat" in frames[r["file"]]
                                     for a, q in zip(frames[r["file"]]["chat"], r["questions"])])),
        "chat_turns": sum(len(frames[r["file"]].get("chat", [])) for r in rows),
    }
    out = {"made_by": f"models/demo/evaluate.py with transformers {__import__('transformers').__version__}, "
                      f"torch {torch.__version__}",
           "label_template": LABEL_TEMPLATE, "labels": scenes.KINDS, "summary": summary, "frames": frames}
    (folder / "transformers.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
