#!/usr/bin/env python3
"""Images with transparency and unusual pixel formats, and what transformers makes
of them (issue 25): for each, PIL's RGB as transformers' `convert_to_rgb` returns it
(transparency composited on white) and CLIPImageProcessorPil's pixel_values.
Reference outputs come from transformers and PIL, never from owlet.

    pip install transformers==5.24.0 pillow==13.0.0 numpy   (no torch needed)
    python models/reference_pixels.py    # writes models/clip-test/reference/pixels/

Every image's RGB is compared exactly. pixel_values are kept for four (600 KB
each): three are 224x224, CLIP's input size, so the resize is the identity and they
compare exactly; one is another size and goes through the bicubic resize (compared
within one level, as the photographs are). The rest are small (64x64).
"""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
OUT = HERE / "clip-test" / "reference" / "pixels"
SIZE = 224
SMALL = 64
# The images whose pixel_values are kept.
WITH_PIXEL_VALUES = {"rgba.png", "rgba_160x120.png", "cmyk.jpg", "grey16.png"}


def gradient(w: int, h: int, seed: int) -> np.ndarray:
    """Smooth colour ramps plus noise: every value of every channel occurs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1),
                     (x + y) * 255 // max(w + h - 2, 1)], axis=-1)
    noise = rng.integers(-40, 41, size=base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def alpha_plane(w: int, h: int, seed: int) -> np.ndarray:
    """Fully transparent, fully opaque and every level between, in bands and noise."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, size=(h, w)).astype(np.uint8)
    a[: h // 8] = 0
    a[h // 8: h // 4] = 255
    a[h // 4: h // 4 + 4] = np.arange(w) % 256
    return a


def png16(path: Path, samples: np.ndarray, colour_type: int) -> None:
    """Write a 16-bit PNG by hand (PIL cannot write 16-bit colour)."""
    h, w = samples.shape[:2]
    raw = b"".join(b"\x00" + samples[r].astype(">u2").tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def make_images() -> dict[str, str]:
    """The fixtures, each with a line on what it is."""
    OUT.mkdir(parents=True, exist_ok=True)
    made = {}
    big, big_a = gradient(SIZE, SIZE, 1), alpha_plane(SIZE, SIZE, 2)
    rgb, a = big[:SMALL, :SMALL], alpha_plane(SMALL, SMALL, 2)

    Image.fromarray(np.dstack([big, big_a]), "RGBA").save(OUT / "rgba.png")
    made["rgba.png"] = "8-bit RGBA PNG, alpha from 0 to 255"
    small = gradient(160, 120, 3)
    Image.fromarray(np.dstack([small, alpha_plane(160, 120, 4)]), "RGBA").save(OUT / "rgba_160x120.png")
    made["rgba_160x120.png"] = "8-bit RGBA PNG of another size (through the bicubic resize)"
    Image.fromarray(np.dstack([rgb[..., 0], a]), "LA").save(OUT / "la.png")
    made["la.png"] = "8-bit grey + alpha PNG"

    pal = Image.fromarray(rgb, "RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    trns = bytes([0, 255, 128, 64] * 16)
    pal.save(OUT / "palette_transparency.png", transparency=trns)
    made["palette_transparency.png"] = "palette PNG with a tRNS alpha per entry"
    pal.save(OUT / "palette_one_transparent.png", transparency=5)
    made["palette_one_transparent.png"] = "palette PNG with one transparent index"
    Image.fromarray(rgb, "RGB").save(OUT / "rgb_colour_key.png", transparency=tuple(int(v) for v in rgb[0, 0]))
    made["rgb_colour_key.png"] = "RGB PNG with a transparent colour key (tRNS)"

    wide = (rgb.astype(np.uint16) * 257 + np.random.default_rng(5).integers(0, 257, rgb.shape)).astype(np.uint16)
    png16(OUT / "rgb16.png", wide, 2)
    made["rgb16.png"] = "16-bit RGB PNG"
    alpha16 = (a.astype(np.uint16) * 257 + np.random.default_rng(6).integers(0, 257, a.shape)).astype(np.uint16)
    png16(OUT / "rgba16.png", np.dstack([wide, alpha16]), 6)
    made["rgba16.png"] = "16-bit RGBA PNG"
    png16(OUT / "la16.png", np.dstack([wide[..., 1], alpha16]), 4)
    made["la16.png"] = "16-bit grey + alpha PNG"
    grey16 = (np.arange(SIZE * SIZE).reshape(SIZE, SIZE) * 7 % 1024).astype(np.uint16)
    png16(OUT / "grey16.png", grey16, 0)
    made["grey16.png"] = "16-bit grey PNG (PIL's I;16), values 0..1023"

    Image.fromarray(rgb[..., 1], "L").save(OUT / "grey.png")
    made["grey.png"] = "8-bit grey PNG"
    Image.fromarray(rgb[..., 2], "L").save(OUT / "grey.jpg", quality=92)
    made["grey.jpg"] = "greyscale JPEG"
    cmyk = Image.fromarray(np.dstack([big, 255 - big.max(axis=-1)]), "CMYK")
    cmyk.save(OUT / "cmyk.jpg", quality=92)
    made["cmyk.jpg"] = "CMYK JPEG as PIL writes it (Adobe-inverted)"
    Image.fromarray(np.dstack([rgb, a]), "RGBA").save(OUT / "rgba.webp", lossless=True)
    made["rgba.webp"] = "lossless WebP with alpha"
    return made


def main() -> None:
    import transformers
    from transformers.image_transforms import convert_to_rgb
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    made = make_images()
    proc = CLIPImageProcessorPil()
    cases = []
    for name, what in made.items():
        stem = name.replace(".", "_")
        with Image.open(OUT / name) as im:
            mode = im.mode
            rgb = convert_to_rgb(im, return_numpy=True)
            pixel_values = proc(images=im, return_tensors="np")["pixel_values"][0]
        np.save(OUT / f"{stem}.rgb.npy", rgb)
        case = {"image": name, "what": what, "pil_mode": mode, "rgb": f"{stem}.rgb.npy"}
        if name in WITH_PIXEL_VALUES:
            np.save(OUT / f"{stem}.pixel_values.npy", pixel_values.astype(np.float32))
            case["pixel_values"] = f"{stem}.pixel_values.npy"
        cases.append(case)
        print(f"{name:28} PIL mode {mode:5} -> {rgb.shape}")
    (OUT / "pixels.json").write_text(json.dumps({
        "made_by": (f"models/reference_pixels.py with transformers {transformers.__version__}'s "
                    f"convert_to_rgb and CLIPImageProcessorPil, Pillow {Image.__version__}"),
        "cases": cases,
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
