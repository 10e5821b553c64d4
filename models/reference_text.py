#!/usr/bin/env python3
"""Reference token ids for owlet's text clean-up test (issue 25), made by the
reference tokenizers themselves, never by owlet:

- OpenAI's own `clip.simple_tokenizer.SimpleTokenizer` (ftfy.fix_text, html.unescape
  twice, whitespace collapsed, lower-cased, then BPE), wrapped as `clip.tokenize(...,
  truncate=True)` does: start token, ids, end token, cut to 77 keeping the end token.
- transformers' CLIPTokenizer built from the same vocabulary (no clean-up besides
  its normalizer), truncated to 77.

The strings are written by a seeded generator: curly quotes and apostrophes, dashes,
HTML entities (named, numeric, unterminated, double-escaped), mojibake of several
codecs and depths, accents (composed and decomposed), CJK, emoji sequences,
ligatures, full-width forms, control characters and terminal escapes, long texts and
whitespace runs, and random mixtures of all of these.

    pip install -r models/requirements.txt   (ftfy, regex, transformers, tokenizers)
    pip install --no-deps openai-clip==1.0.1
    python models/reference_text.py          # writes models/clip-test/reference/text_cleanup.json
"""
from __future__ import annotations

import json
import random
import sys
import tempfile
from pathlib import Path

import ftfy

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from clip_vocab import clip_tokenizer_from_openai_vocab  # noqa: E402

OUT = HERE / "clip-test" / "reference" / "text_cleanup.json"
CONTEXT = 77
SOT, EOT = 49406, 49407

PHRASES = [
    "a photo of a cat", "washing on the line", "garage door open", "car in the drive",
    "a person at the front door", "a parcel on the step", "the bird feeder is empty",
    "a fox in the garden", "smoke from the machine", "a red car next to a blue van",
]
CURLY = ["don’t", "it’s", "‘single’", "“double”", "‚low‘", "„German“", "rock ’n’ roll",
         "the dog’s bowl", "O’Brien’s café", "«guillemets»", "‹single guillemets›",
         "′prime″", "`backtick´"]
DASHES = ["well—maybe", "pages 3–7", "−40 degrees", "a ‐ hyphen", "non‑breaking‑hyphen",
          "figure ‒ dash", "horizontal ― bar", "soft\u00adhyphen", "ellipsis…", "bullet • point"]
ENTITIES = ["&amp;", "&lt;door&gt;", "&eacute;t&eacute;", "&#8217;", "&#x2019;", "&#X41;",
            "&nbsp;", "&amp;amp;", "&amp;lt;", "&copy 2026", "&notit;", "&notin;", "&#128;",
            "&#0;", "&#x110000;", "&#55296;", "&#150;", "&quot;quoted&quot;", "&apos;",
            "&hellip;", "&EACUTE;", "&Eacute;", "&zwnj;", "&#9;", "&#65279;", "&bogus;",
            "& alone", "&#;", "&#x;", "&ampersand", "&lt", "R&D", "&frac12;", "&#x1F600;"]
ACCENTS = ["café", "naïve", "résumé", "Ångström", "façade", "jalapeño", "Zürich",
           "cafe\u0301", "nai\u0308ve", "São Paulo", "Łódź", "İstanbul", "STRASSE ß ẞ",
           "ΟΔΟΣ ΣΤΟ ΣΠΙΤΙ", "Ǆemal", "ﬁsh ﬂag ﬀ ﬃ", "Ⅻ ⅻ", "K Ω Å"]
CJK = ["東京の猫", "ネコ", "고양이", "猫がいる", "ｶﾀｶﾅ", "ＡＢＣ　ｆｕｌｌ　ｗｉｄｔｈ", "１２３",
       "中文 标点，。！", "「引用」", "ﾊﾝｶｸ"]
EMOJI = ["🐈", "😀👍🏽", "👨‍👩‍👧‍👦", "🇬🇧🇯🇵", "❤️", "🏳️‍🌈", "1️⃣", "🐦‍⬛", "✔ done",
         "☃", "\U0001F9D1\u200D\U0001F52C"]
CONTROL = ["bell\x07", "tab\there", "line\nbreak", "cr\r\nlf", "\x1b[31mred\x1b[0m",
           "form\x0cfeed", "null\x00byte", "del\x7f", "nel\x85next", "ls\u2028ps\u2029",
           "zero\u200bwidth", "bom\ufeffmark", "rtl\u200fmark", "c1\x9dctrl", "unit\x1fsep",
           "\ue000private", "vs16\ufe0f"]
SPACES = ["  double  spaces  ", "\t\ttabs\t", "nbsp\u00a0here", "ideo\u3000space",
          "thin\u2009space", "em\u2003space", "narrow\u202fnbsp", " \n \n ", "",
          "   ", "\u00a0", "ogham\u1680space", "mongolian\u180evs"]
# Texts that were UTF-8 once and went through the wrong codec, some twice over.
MOJIBAKE_SOURCES = ["café", "don’t", "naïve résumé", "“quoted”", "£5 – €6", "Zürich",
                    "✔ No problems", "à perturber", "東京", "😀", "Ö", "l’humanité",
                    "São Paulo", "wouldn’t…", "ß", "é" * 5]
MOJIBAKE_CODECS = ["latin-1", "windows-1252", "mac_roman", "cp437", "windows-1251",
                   "windows-1250", "iso-8859-2", "cp850"]


def mojibake(rng: random.Random) -> str:
    text = rng.choice(MOJIBAKE_SOURCES)
    for _ in range(rng.choice([1, 1, 1, 2])):
        codec = rng.choice(MOJIBAKE_CODECS)
        text = text.encode("utf-8").decode(codec, errors="replace")
    return text


def fragment(rng: random.Random) -> str:
    pick = rng.randrange(9)
    if pick == 0:
        return rng.choice(PHRASES)
    if pick == 1:
        return rng.choice(CURLY)
    if pick == 2:
        return rng.choice(DASHES)
    if pick == 3:
        return rng.choice(ENTITIES)
    if pick == 4:
        return rng.choice(ACCENTS)
    if pick == 5:
        return rng.choice(CJK)
    if pick == 6:
        return rng.choice(EMOJI)
    if pick == 7:
        return rng.choice(CONTROL + SPACES)
    return mojibake(rng)


def strings() -> list[str]:
    rng = random.Random(25)
    out: list[str] = []
    # Every listed piece alone, and inside a phrase.
    for group in (CURLY, DASHES, ENTITIES, ACCENTS, CJK, EMOJI, CONTROL, SPACES):
        for piece in group:
            out.append(piece)
            out.append(f"{rng.choice(PHRASES)} {piece} {rng.choice(PHRASES)}")
    for source in MOJIBAKE_SOURCES:
        for codec in MOJIBAKE_CODECS[:4]:
            out.append(source.encode("utf-8").decode(codec, errors="replace"))
    # Random mixtures, short to long (past the 77-token context).
    for _ in range(200):
        n = rng.choice([2, 3, 4, 6, 10, 30])
        sep = rng.choice([" ", " ", "", "  ", "\t", "\n"])
        out.append(sep.join(fragment(rng) for _ in range(n)))
    # HTML-looking text: ftfy leaves entities alone when it sees a '<'.
    out += ["<b>bold</b> &amp; &eacute;", "a < b &amp; c", "&lt;b&gt; is not a tag",
            "<p>caf&eacute;</p>", "don&rsquo;t <i>stop</i>"]
    out.append(" ".join(["the quick brown fox jumps over the lazy dog"] * 12))
    out.append("word " * 200)
    out.append("\u00e9" * 300)
    seen, unique = set(), []
    for s in out:
        if s not in seen:
            seen.add(s)
            unique.append(s)
    return unique


def openai_ids(simple, text: str) -> list[int]:
    """clip.tokenize(text, truncate=True) without torch."""
    ids = [SOT] + simple.encode(text) + [EOT]
    if len(ids) > CONTEXT:
        ids = ids[:CONTEXT]
        ids[-1] = EOT
    return ids


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        tok, simple = clip_tokenizer_from_openai_vocab(Path(workdir))
    cases = []
    for text in strings():
        hf = tok(text, truncation=True, max_length=CONTEXT)["input_ids"]
        cases.append({
            "text": text,
            "fix_text": ftfy.fix_text(text),
            "openai_ids": openai_ids(simple, text),
            "transformers_ids": hf,
        })
    import transformers
    import tokenizers
    OUT.write_text(json.dumps({
        "made_by": (f"models/reference_text.py with ftfy {ftfy.__version__}, openai-clip 1.0.1, "
                    f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}"),
        "context_length": CONTEXT,
        "cases": cases,
    }, ensure_ascii=True, indent=1) + "\n")
    differ = sum(c["openai_ids"] != c["transformers_ids"] for c in cases)
    print(f"{len(cases)} strings; OpenAI and transformers ids differ on {differ}; wrote {OUT}")


if __name__ == "__main__":
    main()
