"""Per-record CPU transforms that run in Grain workers: decode, RandomResizedCrop, flip, eval crop.

Everything here returns uint8 HWC RGB arrays; normalisation happens on the accelerator
(`edgejax.data.augment.normalize`). JPEGs are decoded with simplejpeg using DCT-domain scaling
(decode straight to the smallest size that still covers the crop), everything else with OpenCV, and
PIL is the last resort (CMYK JPEGs, GIF, odd PNG/TIFF variants).
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
import warnings
from typing import Sequence

import cv2
import numpy as np
import simplejpeg
from PIL import Image

# Decoding is single-threaded per record; Grain parallelises across records.
cv2.setNumThreads(1)


def tune_malloc(mmap_threshold: int = 16 << 20, trim_threshold: int = 64 << 20) -> bool:
    """Keep image-sized buffers on glibc's heap instead of fresh mmaps (Linux/glibc only).

    A 224x224x3 uint8 image is 147 KiB, above glibc's default 128 KiB mmap threshold: while a batch
    of them is alive, every decode/resize/flip output is a new mmap whose pages fault in on first
    touch, ~130 us per allocation (measured: 150 KB copies with 64 alive, 132 us -> 10 us). That was
    240 us of the per-record cost of the train pipeline. Called when this module is imported (also
    in Grain worker processes); set EDGEJAX_MALLOC_TUNING=0 to leave malloc alone. Returns whether
    the settings were applied.
    """
    if os.environ.get("EDGEJAX_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, mmap_threshold)) and bool(
        mallopt(m_trim_threshold, trim_threshold)
    )


tune_malloc()

_CV2_INTERP = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}

# Refuse to decode more pixels than this (a 10,000 x 10,000 image is 1e8): guards worker memory.
MAX_PIXELS = 400_000_000


class CorruptImageError(ValueError):
    """The bytes are not a decodable image (truncated, empty, not an image, too large)."""


def _check_interpolation(interpolation: str) -> int:
    if (
        interpolation == "random"
    ):  # timm's 'random' picks bilinear or bicubic; bilinear is its fallback
        interpolation = "bilinear"
    try:
        return _CV2_INTERP[interpolation]
    except KeyError:
        raise ValueError(
            f"unknown interpolation {interpolation!r}; expected one of {sorted(_CV2_INTERP)}"
        ) from None


def is_jpeg(data) -> bool:
    return len(data) >= 3 and bytes(data[:3]) == b"\xff\xd8\xff"


def jpeg_size(data) -> tuple[int, int] | None:
    """(height, width) of a JPEG from its header without decoding, else None."""
    if is_jpeg(data):
        try:
            h, w, _, _ = simplejpeg.decode_jpeg_header(data)
            return int(h), int(w)
        except ValueError:
            return None
    return None


def _to_rgb_uint8(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    if img.shape[2] == 4:
        img = img[:, :, :3]
    if img.dtype != np.uint8:
        raise CorruptImageError(f"unsupported pixel type {img.dtype}")
    return np.ascontiguousarray(img)


def _decode_pil(data) -> np.ndarray:
    import io

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DecompressionBombWarning: we check the size ourselves
        try:
            with Image.open(io.BytesIO(bytes(data))) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise CorruptImageError(f"image too large: {im.width}x{im.height}")
                im.draft("RGB", (im.width, im.height))
                return np.asarray(im.convert("RGB"))
        except CorruptImageError:
            raise
        except Exception as e:  # PIL raises many types for bad data
            raise CorruptImageError(f"cannot decode image: {e}") from e


def decode_image(data, min_height: int = 0, min_width: int = 0, fast: bool = False) -> np.ndarray:
    """Decode image bytes to uint8 RGB [H, W, 3].

    For JPEGs, `min_height`/`min_width` allow DCT-domain downscaling (by 1/2, 1/4, 1/8, ...) as long
    as the result stays at least that large. `fast` uses libjpeg-turbo's fast integer DCT and
    nearest-neighbour chroma upsampling: ~20% faster through the train pipeline (1,639 vs 1,350
    img/s on one core, ImageNet samples at short side 256) but blockier colour, which matters on
    small images; the pipelines decode exactly, the pixels PIL (and so timm's transform) sees.
    Raises `CorruptImageError` for anything undecodable.
    """
    if isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim in (2, 3):
        if data.ndim == 3 and data.shape[2] not in (1, 3, 4):
            raise CorruptImageError(f"array of shape {data.shape} is not an image")
        return _to_rgb_uint8(data)
    if data is None or len(data) == 0:
        raise CorruptImageError("empty record (zero bytes)")
    if is_jpeg(data):
        try:
            h, w, colorspace, _ = simplejpeg.decode_jpeg_header(data)
            if h * w > MAX_PIXELS:
                raise CorruptImageError(f"image too large: {w}x{h}")
            if colorspace not in ("CMYK", "YCCK"):
                return simplejpeg.decode_jpeg(
                    data,
                    colorspace="RGB",
                    min_height=min_height,
                    min_width=min_width,
                    fastdct=fast,
                    fastupsample=fast,
                    strict=True,
                )
        except CorruptImageError:
            raise
        except ValueError as e:
            # strict=True raises on truncated/corrupt data; PIL would too, so do not fall back.
            raise CorruptImageError(f"corrupt JPEG: {e}") from e
        return _decode_pil(data)  # CMYK / YCCK JPEGs
    buf = np.frombuffer(bytes(data), np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)  # drops alpha, converts grey and 16-bit
    if img is not None:
        if img.shape[0] * img.shape[1] > MAX_PIXELS:
            raise CorruptImageError(f"image too large: {img.shape[1]}x{img.shape[0]}")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return _decode_pil(data)


def _resize(
    img: np.ndarray, width: int, height: int, interpolation: str, out: np.ndarray | None = None
) -> np.ndarray:
    h, w = img.shape[:2]
    if (h, w) == (height, width):
        if out is None:
            return img
        out[...] = img
        return out
    flag = _check_interpolation(interpolation)
    if (w > 2 * width or h > 2 * height) and flag != cv2.INTER_NEAREST:
        flag = cv2.INTER_AREA  # antialias large reductions, as PIL's resize does
    if out is None:
        return cv2.resize(img, (width, height), interpolation=flag)
    return cv2.resize(img, (width, height), dst=out, interpolation=flag)


# Uniform draws one RandomResizedCrop consumes: 10 tries x (area, log-ratio), then top and left.
CROP_UNIFORMS = 22


def sample_crop(
    height: int,
    width: int,
    rng,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """timm's RandomResizedCrop sampling: returns (top, left, crop_h, crop_w).

    Ten tries of area ~ U(scale) * area and log-uniform aspect ratio; when none fits, a centre crop
    clamped to the ratio range (timm `RandomResizedCropAndInterpolation.get_params`). `rng` is a
    numpy Generator or `CROP_UNIFORMS` uniforms in [0, 1) drawn beforehand (the train pipeline
    draws them for a whole global batch at once); top/left = floor(u * (positions)), the same
    distribution as timm's randint.
    """
    u = rng.random(CROP_UNIFORMS) if isinstance(rng, np.random.Generator) else rng
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    s_lo, s_hi = scale[0], scale[1]
    for t in range(10):
        target_area = (s_lo + (s_hi - s_lo) * float(u[2 * t])) * area
        aspect = math.exp(log_lo + (log_hi - log_lo) * float(u[2 * t + 1]))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = min(height - h, int(float(u[20]) * (height - h + 1)))
            left = min(width - w, int(float(u[21]) * (width - w + 1)))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(
    data,
    rng,
    size: int | tuple[int, int],
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    interpolation: str = "bilinear",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Decode (bytes or array) and RandomResizedCrop to `size`; uint8 [size, size, 3].

    The crop is sampled on the full-resolution geometry (read from the JPEG header) so the result
    does not depend on DCT scaling, which then only shrinks the decode to what the crop needs.
    `rng`: a numpy Generator or `CROP_UNIFORMS` uniforms (see `sample_crop`). `out`: an optional
    uint8 [size, size, 3] C-contiguous array to write into (e.g. a row of a batch).
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    hw = None if isinstance(data, np.ndarray) else jpeg_size(data)
    if hw is None:
        img = decode_image(data)
        full_h, full_w = img.shape[:2]
    else:
        full_h, full_w = hw
        img = None
    top, left, ch, cw = sample_crop(full_h, full_w, rng, scale, ratio)
    if img is None:
        min_h = math.ceil(full_h * out_h / ch)
        min_w = math.ceil(full_w * out_w / cw)
        img = decode_image(data, min_height=min_h, min_width=min_w)
    dh, dw = img.shape[:2]
    if (dh, dw) != (full_h, full_w):  # DCT-scaled: map the crop into decoded pixels
        sy, sx = dh / full_h, dw / full_w
        t, l = int(top * sy), int(left * sx)
        b, r = max(t + 1, int(round((top + ch) * sy))), max(l + 1, int(round((left + cw) * sx)))
        top, left, ch, cw = t, l, min(b, dh) - t, min(r, dw) - l
    crop = img[top : top + ch, left : left + cw]
    return _resize(crop, out_w, out_h, interpolation, out=out)


def hflip(img: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Horizontal flip (cv2.flip: 15-30 us vs ~300 us for a numpy slice copy that holds the GIL).

    `out` may be `img` itself (in place)."""
    if out is None:
        return cv2.flip(img, 1)
    return cv2.flip(img, 1, dst=out)


def eval_resize_size(height: int, width: int, image_size: int, crop_pct: float) -> tuple[int, int]:
    """torchvision Resize(int) geometry for timm's eval: shorter side -> floor(size / crop_pct)."""
    scale_size = math.floor(image_size / crop_pct)
    if width <= height:
        return int(scale_size * height / width), scale_size
    return scale_size, int(scale_size * width / height)


def center_crop_resize(
    data,
    image_size: int,
    crop_pct: float = 0.875,
    interpolation: str = "bilinear",
) -> np.ndarray:
    """timm eval transform: resize the shorter side to floor(size / crop_pct), centre crop `size`."""
    hw = None if isinstance(data, np.ndarray) else jpeg_size(data)
    if hw is not None:
        full_h, full_w = hw
        new_h, new_w = eval_resize_size(full_h, full_w, image_size, crop_pct)
        img = decode_image(data, min_height=new_h, min_width=new_w)
    else:
        img = decode_image(data)
        full_h, full_w = img.shape[:2]
        new_h, new_w = eval_resize_size(full_h, full_w, image_size, crop_pct)
    img = _resize(img, new_w, new_h, interpolation)
    top = int(round((new_h - image_size) / 2.0))
    left = int(round((new_w - image_size) / 2.0))
    if top < 0 or left < 0:  # crop_pct > 1: pad like torchvision CenterCrop
        pad_t, pad_l = max(0, -top), max(0, -left)
        img = cv2.copyMakeBorder(
            img,
            pad_t,
            max(0, image_size - new_h - pad_t),
            pad_l,
            max(0, image_size - new_w - pad_l),
            cv2.BORDER_CONSTANT,
            value=0,
        )
        top, left = max(0, top), max(0, left)
    return np.ascontiguousarray(img[top : top + image_size, left : left + image_size])


JPEG_SUBSAMPLINGS = ("420", "422", "444")


def reencode_short_side(
    data, short_side: int | None, quality: int = 90, subsampling: str = "420"
) -> tuple[bytes, tuple[int, int]]:
    """Decode, shrink so the shorter side is at most `short_side` (never upscale), encode JPEG.

    Returns (jpeg bytes, (height, width) of the stored image). Used by `edgejax.data.prepare`.
    """
    hw = None if isinstance(data, np.ndarray) else jpeg_size(data)
    if hw is not None and short_side:
        h, w = hw
        s = min(1.0, short_side / min(h, w))
        img = decode_image(data, min_height=math.ceil(h * s), min_width=math.ceil(w * s))
    else:
        img = decode_image(data)
    h, w = img.shape[:2]
    if short_side and min(h, w) > short_side:
        s = short_side / min(h, w)
        nh, nw = (
            (short_side, max(1, round(w * s))) if h <= w else (max(1, round(h * s)), short_side)
        )
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    enc = simplejpeg.encode_jpeg(
        np.ascontiguousarray(img), quality=quality, colorspace="RGB", colorsubsampling=subsampling
    )
    return enc, img.shape[:2]
