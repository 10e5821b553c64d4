"""OpenAI's CLIP vocabulary as transformers' CLIPTokenizer, and OpenAI's own
tokenizer beside it (shared by export.py and reference_text.py; needs no torch)."""
from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path


def load_openai_simple_tokenizer():
    """OpenAI's own BPE (clip/simple_tokenizer.py from the openai-clip package).

    Imported by file path: the package's __init__ pulls torchvision, which we do not
    need for the tokenizer.
    """
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("export.py: the openai-clip package is needed for the CLIP "
                         "vocabulary (pip install --no-deps openai-clip)")
    pkg = Path(list(spec.submodule_search_locations)[0])
    mod_spec = importlib.util.spec_from_file_location("clip_simple_tokenizer",
                                                      pkg / "simple_tokenizer.py")
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod, pkg / "bpe_simple_vocab_16e6.txt.gz"


def clip_tokenizer_from_openai_vocab(workdir: Path):
    """Build transformers' CLIPTokenizer from OpenAI's bpe_simple_vocab_16e6.txt.gz.

    Mirrors SimpleTokenizer.__init__: byte alphabet, the same with '</w>', then one
    entry per merge, then the two special tokens (ids 49406 and 49407).
    """
    from transformers import CLIPTokenizer

    mod, bpe_path = load_openai_simple_tokenizer()
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    vocab = list(mod.bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (workdir / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    tok = CLIPTokenizer(vocab=str(workdir / "vocab.json"), merges=str(workdir / "merges.txt"))
    return tok, mod.SimpleTokenizer(bpe_path=str(bpe_path))
