"""Generators of small image trees (good and deliberately broken files) for tests and examples.

Nothing here is committed as image data: files are written on demand into a temporary directory.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def shared_data() -> Path | None:
    """../shared/data relative to the repository root, or None when absent (a fresh clone)."""
    p = SHARED_DATA.resolve()
    return p if p.is_dir() else None


def _pattern(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth colour image (gradients + blobs), JPEG-friendly and not constant."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack(
        [
            127 + 120 * np.sin(x / (7 + 13 * rng.random()) + rng.random() * 6),
            127 + 120 * np.cos(y / (5 + 11 * rng.random()) + rng.random() * 6),
            127 + 120 * np.sin((x + y) / (9 + 9 * rng.random())),
        ],
        axis=-1,
    )
    return np.clip(img, 0, 255).astype(np.uint8)


def encode(img: np.ndarray | Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    im = img if isinstance(img, Image.Image) else Image.fromarray(img)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def write_good_tree(
    root: Path, classes=("cat", "dog", "eel"), per_class: int = 4, size=(40, 56), seed: int = 0
) -> list[Path]:
    """root/<class>/<i>.jpg valid RGB JPEGs; returns the file paths."""
    paths = []
    for ci, c in enumerate(classes):
        d = Path(root) / c
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            p = d / f"{c}_{i}.jpg"
            p.write_bytes(encode(_pattern(*size, seed=seed + 100 * ci + i), quality=90))
            paths.append(p)
    return paths


def bad_files(large_side: int = 10_000) -> dict[str, tuple[bytes, str, bool]]:
    """name -> (bytes, file name, decodable?). The 'decodable' ones must load as RGB."""
    good = encode(_pattern(48, 64, seed=7), quality=90)
    cmyk = encode(Image.fromarray(_pattern(48, 64, seed=8)).convert("CMYK"), "JPEG", quality=90)
    grey = encode(Image.fromarray(_pattern(48, 64, seed=9)).convert("L"), "JPEG", quality=90)
    rgba = Image.fromarray(_pattern(48, 64, seed=10)).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))))
    png_alpha = encode(rgba, "PNG")
    png_as_jpg = encode(_pattern(48, 64, seed=11), "PNG")
    jpg_as_png = encode(_pattern(48, 64, seed=12), "JPEG", quality=90)
    # A very large but cheap-to-encode JPEG (large_side x 64, flat content).
    large = encode(np.full((64, large_side, 3), 90, np.uint8), "JPEG", quality=50)
    return {
        "truncated": (good[: len(good) // 2], "truncated.jpg", False),
        "truncated_tail": (good[: int(len(good) * 0.8)], "truncated_tail.jpg", False),
        "zero_bytes": (b"", "empty.jpg", False),
        "not_an_image": (b"this is a text file, not a JPEG\n" * 20, "text.jpg", False),
        "cmyk": (cmyk, "cmyk.jpg", True),
        "grayscale": (grey, "grey.jpg", True),
        "png_alpha": (png_alpha, "alpha.png", True),
        "png_named_jpg": (png_as_jpg, "really_png.jpg", True),
        "jpg_named_png": (jpg_as_png, "really_jpg.png", True),
        "very_large": (large, "large.jpg", True),
    }


def write_bad_tree(root: Path, per_class: int = 3, large_side: int = 10_000) -> dict:
    """A tree of good images plus every kind of bad file in class 'dog'; returns bad_files()."""
    write_good_tree(root, classes=("cat", "dog"), per_class=per_class)
    bad = bad_files(large_side)
    for data, name, _ in bad.values():
        (Path(root) / "dog" / name).write_bytes(data)
    return bad
