"""Camera-like scenes with captions, labels and questions, made from a seed.

Each scene is one or two objects (a car, a person, a dog, a bird, a bicycle, a
package) in one of six colours, drawn on a muted background (wall, floor, clutter),
then put through what a cheap camera does to a picture: a lighting change, blur,
sensor noise and JPEG compression. The caption names the objects from left to right:
"a red car next to a blue person". Everything about a scene follows from
(split, index), so any scene can be re-made without storing it.

    python3 models/demo/scenes.py OUT --split heldout --count 200   # JPEGs + scenes.jsonl
    python3 models/demo/scenes.py models/scenes/demo --split demo --indices 1,4,6,8,11,13,14,117

Only numpy and Pillow: the same code makes the training data (train_*.py) and the
held-out frames committed under models/scenes/.
"""
from __future__ import annotations

import argparse
import colorsys
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

KINDS = ["car", "person", "dog", "bird", "bicycle", "package"]
COLOURS = ["red", "green", "blue", "yellow", "white", "black"]
# Hue (0..1), saturation, value of each colour; each object jitters around these.
HSV = {"red": (0.0, 0.85, 0.85), "green": (0.33, 0.8, 0.7), "blue": (0.62, 0.85, 0.85),
       "yellow": (0.15, 0.85, 0.95), "white": (0.0, 0.0, 0.97), "black": (0.0, 0.0, 0.08)}
NUMBERS = {1: "one", 2: "two"}
SPLIT_SEEDS = {"train": 1, "heldout": 2, "demo": 3}
WIDTH, HEIGHT = 320, 240          # what the frames are rendered and stored at (4:3)
# CLIP crops the centre square of a 4:3 frame: objects stay inside it so that both
# models see all of them (BLIP-2 squashes the whole frame instead).
SAFE_X = ((WIDTH - HEIGHT) // 2, (WIDTH + HEIGHT) // 2)


@dataclass
class Thing:
    kind: str
    colour: str


@dataclass
class Scene:
    split: str
    index: int
    things: list[Thing]                       # left to right
    questions: list[tuple[str, str]] = field(default_factory=list)

    @property
    def caption(self) -> str:
        return " next to ".join(f"a {t.colour} {t.kind}" for t in self.things)

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:05d}.jpg"

    def to_json(self) -> dict:
        return {"file": self.name, "caption": self.caption,
                "objects": [{"kind": t.kind, "colour": t.colour} for t in self.things],
                "questions": [{"question": q, "answer": a} for q, a in self.questions]}


def rng_for(split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([SPLIT_SEEDS[split], index])


def compose(split: str, index: int) -> tuple[Scene, np.random.Generator]:
    """What is in the scene, and the generator that goes on to draw it."""
    r = rng_for(split, index)
    n = 1 if r.random() < 0.4 else 2
    kinds = r.choice(len(KINDS), size=n, replace=False)
    colours = r.choice(len(COLOURS), size=n, replace=False)   # distinct: "the red object" is one
    things = [Thing(KINDS[k], COLOURS[c]) for k, c in zip(kinds, colours)]
    scene = Scene(split, index, things)
    scene.questions = questions(scene, r)
    return scene, r


def questions(scene: Scene, r: np.random.Generator) -> list[tuple[str, str]]:
    """Four short-answer questions about the scene, balanced yes/no."""
    present = [t.kind for t in scene.things]
    t = scene.things[r.integers(len(scene.things))]
    absent = [k for k in KINDS if k not in present]
    asked = present[r.integers(len(present))] if r.random() < 0.5 else absent[r.integers(len(absent))]
    u = scene.things[r.integers(len(scene.things))]
    return [
        (f"what colour is the {t.kind}?", t.colour),
        (f"is there a {asked}?", "yes" if asked in present else "no"),
        ("how many objects are there?", NUMBERS[len(scene.things)]),
        (f"what is the {u.colour} object?", u.kind),
    ]


# ---------------------------------------------------------------------------------
# Drawing. Shapes are drawn in a unit box (0..1 both ways) mapped onto the object's
# place in the frame, so that each kind keeps its silhouette at every size.

def jitter_rgb(colour: str, r: np.random.Generator) -> tuple[int, int, int]:
    h, s, v = HSV[colour]
    h = (h + r.normal(0, 0.015)) % 1.0
    s = float(np.clip(s + r.normal(0, 0.06), 0, 1)) if s > 0 else float(r.uniform(0, 0.06))
    v = float(np.clip(v + r.normal(0, 0.06), 0.02, 1))
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v))


def darker(c, f=0.45):
    return tuple(int(x * f) for x in c)


def draw_thing(d: ImageDraw.ImageDraw, kind: str, box, fill, r: np.random.Generator):
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    # Half of the things face the other way: mirror the unit box.
    m = (lambda u: 1 - u) if r.random() < 0.5 else (lambda u: u)
    P = lambda u, v: (x0 + m(u) * w, y0 + v * h)
    R = lambda u0, v0, u1, v1: [(x0 + min(m(u0), m(u1)) * w, y0 + v0 * h),
                                (x0 + max(m(u0), m(u1)) * w, y0 + v1 * h)]
    edge = darker(fill) if sum(fill) > 120 else (90, 90, 90)
    lw = max(1, int(round(w / 40)))
    if kind == "car":
        d.rounded_rectangle(R(0.0, 0.42, 1.0, 0.80), radius=w * 0.06, fill=fill, outline=edge, width=lw)
        d.polygon([P(0.22, 0.44), P(0.32, 0.14), P(0.70, 0.14), P(0.82, 0.44)], fill=fill, outline=edge)
        d.polygon([P(0.30, 0.42), P(0.37, 0.20), P(0.66, 0.20), P(0.74, 0.42)], fill=(170, 200, 220))
        for u in (0.22, 0.78):
            d.ellipse(R(u - 0.11, 0.62, u + 0.11, 0.98), fill=(25, 25, 25))
            d.ellipse(R(u - 0.05, 0.72, u + 0.05, 0.88), fill=(150, 150, 150))
    elif kind == "person":
        skin = tuple(int(c) for c in np.clip(np.array([224, 172, 135]) * r.uniform(0.55, 1.1), 0, 255))
        d.ellipse(R(0.36, 0.0, 0.64, 0.17), fill=skin)
        d.rounded_rectangle(R(0.25, 0.18, 0.75, 0.58), radius=w * 0.1, fill=fill, outline=edge, width=lw)
        d.rectangle(R(0.12, 0.20, 0.25, 0.52), fill=fill, outline=edge)
        d.rectangle(R(0.75, 0.20, 0.88, 0.52), fill=fill, outline=edge)
        d.rectangle(R(0.30, 0.58, 0.48, 1.0), fill=(50, 50, 70))
        d.rectangle(R(0.52, 0.58, 0.70, 1.0), fill=(50, 50, 70))
    elif kind == "dog":
        d.ellipse(R(0.12, 0.30, 0.80, 0.68), fill=fill, outline=edge, width=lw)
        d.ellipse(R(0.68, 0.10, 0.98, 0.42), fill=fill, outline=edge, width=lw)
        d.polygon([P(0.70, 0.16), P(0.74, 0.0), P(0.82, 0.14)], fill=darker(fill, 0.7))
        d.ellipse(R(0.90, 0.24, 1.0, 0.32), fill=(20, 20, 20))
        for u in (0.18, 0.32, 0.58, 0.70):
            d.rectangle(R(u, 0.60, u + 0.08, 1.0), fill=fill, outline=edge)
        d.line([P(0.14, 0.40), P(0.0, 0.16)], fill=fill, width=max(2, int(w * 0.05)))
    elif kind == "bird":
        d.ellipse(R(0.10, 0.30, 0.78, 0.78), fill=fill, outline=edge, width=lw)
        d.ellipse(R(0.55, 0.12, 0.88, 0.45), fill=fill, outline=edge, width=lw)
        d.polygon([P(0.86, 0.24), P(1.0, 0.31), P(0.86, 0.36)], fill=(240, 160, 20))
        d.ellipse(R(0.70, 0.22, 0.76, 0.28), fill=(10, 10, 10))
        d.polygon([P(0.25, 0.45), P(0.55, 0.50), P(0.30, 0.72)], fill=darker(fill, 0.75))
        d.polygon([P(0.12, 0.55), P(0.0, 0.48), P(0.0, 0.70)], fill=fill, outline=edge)
        d.line([P(0.40, 0.78), P(0.38, 1.0)], fill=(200, 130, 20), width=lw)
        d.line([P(0.52, 0.78), P(0.54, 1.0)], fill=(200, 130, 20), width=lw)
    elif kind == "bicycle":
        t = max(2, int(w * 0.05))
        for u in (0.22, 0.78):
            d.ellipse(R(u - 0.22, 0.48, u + 0.22, 1.0), outline=(25, 25, 25), width=t)
        for a, b in [((0.22, 0.74), (0.45, 0.74)), ((0.45, 0.74), (0.35, 0.42)), ((0.35, 0.42), (0.70, 0.42)),
                     ((0.70, 0.42), (0.45, 0.74)), ((0.70, 0.42), (0.78, 0.74)), ((0.22, 0.74), (0.35, 0.42)),
                     ((0.70, 0.42), (0.66, 0.24)), ((0.35, 0.42), (0.33, 0.30))]:
            d.line([P(*a), P(*b)], fill=fill, width=t)
        d.line([P(0.58, 0.24), P(0.74, 0.24)], fill=(30, 30, 30), width=t)
        d.line([P(0.26, 0.30), P(0.40, 0.30)], fill=(30, 30, 30), width=t)
    elif kind == "package":
        d.rectangle(R(0.05, 0.22, 0.95, 1.0), fill=fill, outline=edge, width=lw)
        d.polygon([P(0.05, 0.22), P(0.25, 0.06), P(1.0, 0.06), P(0.95, 0.22)], fill=darker(fill, 0.8), outline=edge)
        tape = (200, 180, 120) if sum(fill) < 600 else (150, 120, 70)
        d.rectangle(R(0.44, 0.22, 0.56, 1.0), fill=tape)
        d.polygon([P(0.44, 0.22), P(0.56, 0.22), P(0.70, 0.06), P(0.58, 0.06)], fill=tape)
    else:
        raise ValueError(kind)


# Width : height of each kind's unit box.
ASPECT = {"car": 1.9, "person": 0.5, "dog": 1.3, "bird": 1.1, "bicycle": 1.5, "package": 1.0}


def background(r: np.random.Generator) -> Image.Image:
    """A muted wall and floor with some clutter: never a saturated colour."""
    def muted():
        h = r.random()
        s = r.uniform(0.0, 0.3)
        v = r.uniform(0.25, 0.75)
        return np.array(colorsys.hsv_to_rgb(h, s, v)) * 255
    top, bottom = muted(), muted()
    horizon = r.uniform(0.45, 0.8)
    y = np.linspace(0, 1, HEIGHT)[:, None, None]
    wall = top + (y / horizon) * r.uniform(-30, 30)
    floor = bottom + ((y - horizon) / (1 - horizon)) * r.uniform(-30, 30)
    img = np.where(y < horizon, wall, floor) * np.ones((1, WIDTH, 1))
    # Large soft texture (stains, shade) in grey.
    tex = r.normal(0, 1, (HEIGHT // 16 + 2, WIDTH // 16 + 2))
    tex = np.array(Image.fromarray(tex.astype(np.float32)).resize((WIDTH, HEIGHT), Image.BILINEAR))
    img += tex[:, :, None] * r.uniform(2, 12)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(out)
    for _ in range(r.integers(0, 5)):  # clutter: door frames, shelves, posts
        c = tuple(int(v) for v in muted())
        x, yy = r.uniform(0, WIDTH), r.uniform(0, HEIGHT)
        if r.random() < 0.5:
            d.rectangle([x, 0, x + r.uniform(4, 30), HEIGHT], fill=c)
        else:
            d.rectangle([0, yy, WIDTH, yy + r.uniform(3, 12)], fill=c)
    return out


def place(scene: Scene, r: np.random.Generator):
    """Boxes for the things, left to right inside the centre square, not overlapping."""
    n = len(scene.things)
    lo, hi = SAFE_X[0] + 4, SAFE_X[1] - 4
    slot = (hi - lo) / n
    boxes = []
    for i, t in enumerate(scene.things):
        a = ASPECT[t.kind]
        max_w = slot - 6
        w = min(max_w, r.uniform(0.55, 0.95) * min(max_w, 0.6 * HEIGHT * a))
        h = w / a
        if h > 0.75 * HEIGHT:
            h = 0.75 * HEIGHT
            w = h * a
        x0 = lo + i * slot + r.uniform(0, max(0.0, slot - w))
        y1 = r.uniform(0.55 * HEIGHT + h * 0.3, HEIGHT - 4)
        y0 = max(2.0, y1 - h)
        boxes.append((x0, y0, x0 + w, y0 + h))
    return boxes


def camera(img: Image.Image, r: np.random.Generator) -> bytes:
    """Lighting, blur, sensor noise and JPEG: what a cheap camera does."""
    a = np.asarray(img).astype(np.float32)
    a = a * r.uniform(0.6, 1.25) + r.uniform(-20, 20)                       # exposure
    a = a * (1 + r.normal(0, 0.04, 3))[None, None, :]                      # white balance
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    if r.random() < 0.6:
        img = img.filter(ImageFilter.GaussianBlur(r.uniform(0.3, 1.6)))
    a = np.asarray(img).astype(np.float32) + r.normal(0, r.uniform(1, 9), (HEIGHT, WIDTH, 3))
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(r.integers(35, 92)))
    return buf.getvalue()


def render(split: str, index: int) -> tuple[Scene, bytes]:
    """The scene and its frame as JPEG bytes."""
    scene, r = compose(split, index)
    img = background(r)
    d = ImageDraw.Draw(img)
    for t, box in zip(scene.things, place(scene, r)):
        draw_thing(d, t.kind, box, jitter_rgb(t.colour, r), r)
    return scene, camera(img, r)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--split", choices=sorted(SPLIT_SEEDS), default="heldout")
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--indices", help="comma-separated scene indices instead of 0..count")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    indices = [int(i) for i in args.indices.split(",")] if args.indices else range(args.count)
    with open(out / "scenes.jsonl", "w") as f:
        for i in indices:
            scene, jpeg = render(args.split, i)
            (out / scene.name).write_bytes(jpeg)
            f.write(json.dumps(scene.to_json()) + "\n")
    print(f"wrote {len(indices)} {args.split} scenes to {out}")


if __name__ == "__main__":
    main()
