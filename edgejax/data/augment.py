"""On-accelerator batch augmentation in pure JAX: jit-able, static shapes, per-sample randomness
from `jax.random.fold_in(key, i)`.

Semantics follow timm (`timm/data/auto_augment.py`, `mixup.py`, `random_erasing.py`):

- `rand_augment`: timm's RandAugment ('rand-m9-mstd0.5-inc1' by default): per sample, `num_ops`
  ops drawn uniformly with replacement from the 15-op set, each applied with probability `prob`,
  magnitude ~ N(magnitude, magnitude_std) clipped to [0, 10], a random sign for signed ops. Ops
  reproduce PIL's arithmetic (ImageOps / ImageEnhance / Image.transform with bilinear sampling at
  pixel centres, fill colour outside). timm picks bilinear or bicubic at random for geometric ops;
  here `interpolation` ("bilinear" or "nearest") is fixed.
- `mixup_cutmix`: timm's `Mixup` in 'batch' mode (one lambda per batch, pairs i <-> B-1-i),
  switch probability between CutMix and Mixup, lambda corrected to the clipped box area.
- `random_erasing`: timm's `RandomErasing` on normalised images ('pixel', 'rand', 'const').
- `normalize`: uint8 -> float, (x / 255 - mean) / std.

Images are NHWC. RandAugment works on uint8 (before normalisation), RandomErasing and Mixup/CutMix
after, as in timm's training pipeline.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import numpy as np
import jax.numpy as jnp

from edgejax.layers.constants import IMAGENET_MEAN, IMAGENET_STD

IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD = IMAGENET_MEAN, IMAGENET_STD
# timm create_transform passes img_mean = round(255 * mean) as the fill colour of geometric ops.
DEFAULT_FILL = tuple(min(255, round(255 * m)) for m in IMAGENET_DEFAULT_MEAN)  # (124, 116, 104)

RAND_TRANSFORMS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)
RAND_INCREASING_TRANSFORMS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)
_GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
_LEVEL_DENOM = 10.0
_TRANSLATE_PCT = 0.45


# ----------------------------------------------------------------------------- helpers
def _per_sample_keys(key: jax.Array, batch: int) -> jax.Array:
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(batch))


def _trunc_clip_u8(x: jax.Array) -> jax.Array:
    """PIL's float -> uint8: clip to [0, 255], then truncate."""
    return jnp.floor(jnp.clip(x, 0.0, 255.0)).astype(jnp.uint8)


def _blend(degenerate: jax.Array, image: jax.Array, factor: jax.Array) -> jax.Array:
    """PIL Image.blend(degenerate, image, factor) in float32: d + factor * (i - d), truncated."""
    d = degenerate.astype(jnp.float32)
    return _trunc_clip_u8(d + factor * (image.astype(jnp.float32) - d))


def _grey(image: jax.Array) -> jax.Array:
    """PIL convert('L'): ITU-R 601-2 luma in 16-bit fixed point, rounded. [..., H, W, 3] -> int32."""
    x = image.astype(jnp.int32)
    return (x[..., 0] * 19595 + x[..., 1] * 38470 + x[..., 2] * 7471 + 0x8000) >> 16


# ----------------------------------------------------------------------------- level -> argument
def op_argument(name: str, magnitude: jax.Array, sign: jax.Array) -> jax.Array:
    """timm's LEVEL_TO_ARG for one op: magnitude in [0, 10] (already clipped), sign in {-1, +1}."""
    m = magnitude / _LEVEL_DENOM
    if name == "Rotate":
        return sign * m * 30.0
    if name in ("ShearX", "ShearY"):
        return sign * m * 0.3
    if name in ("TranslateXRel", "TranslateYRel"):
        return sign * m * _TRANSLATE_PCT
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return m * 1.8 + 0.1
    if name.endswith("Increasing") and name[: -len("Increasing")] in (
        "Color",
        "Contrast",
        "Brightness",
        "Sharpness",
    ):
        return jnp.maximum(0.1, 1.0 + sign * m * 0.9)
    if name == "Posterize":
        return jnp.floor(m * 4.0)
    if name == "PosterizeIncreasing":
        return 4.0 - jnp.floor(m * 4.0)
    if name == "Solarize":
        return jnp.minimum(256.0, jnp.floor(m * 256.0))
    if name == "SolarizeIncreasing":
        return 256.0 - jnp.minimum(256.0, jnp.floor(m * 256.0))
    if name == "SolarizeAdd":
        return jnp.minimum(128.0, jnp.floor(m * 110.0))
    if name in ("AutoContrast", "Equalize", "Invert"):
        return jnp.zeros_like(m)
    raise ValueError(
        f"unknown RandAugment op {name!r}; known: {RAND_TRANSFORMS + RAND_INCREASING_TRANSFORMS}"
    )


# ----------------------------------------------------------------------------- LUT ops (per image)
# numpy, not jnp: a module first imported inside a traced function must not hold a tracer
_I = np.arange(256, dtype=np.int32)


def _lut_identity(image, arg):
    return jnp.broadcast_to(_I, (3, 256))


def _lut_invert(image, arg):
    return jnp.broadcast_to(255 - _I, (3, 256))


def _lut_autocontrast(image, arg):
    x = image.reshape(-1, 3).astype(jnp.int32)
    lo, hi = x.min(0)[:, None], x.max(0)[:, None]
    span = jnp.maximum(hi - lo, 1)
    # PIL: int(i * 255 / (hi - lo) - lo * 255 / (hi - lo)), clipped; exact integer form here.
    lut = jnp.clip(jnp.floor_divide((_I[None] - lo) * 255, span), 0, 255)
    return jnp.where(hi > lo, lut, _I[None])


def _lut_equalize(image, arg):
    x = image.reshape(-1, 3).astype(jnp.int32)
    hist = jax.vmap(lambda c: jnp.bincount(c, length=256))(x.T)  # [3, 256]
    nonzero = hist > 0
    last = 255 - jnp.argmax(nonzero[:, ::-1], axis=1)  # index of the last non-empty bin
    h_last = jnp.take_along_axis(hist, last[:, None], 1)[:, 0]
    step = (hist.sum(1) - h_last) // 255
    safe = jnp.maximum(step, 1)[:, None]
    cum = jnp.cumsum(hist, axis=1) - hist  # exclusive cumulative count
    lut = jnp.clip((safe // 2 + cum) // safe, 0, 255)
    keep = (nonzero.sum(1) > 1) & (step > 0)
    return jnp.where(keep[:, None], lut, _I[None])


def _lut_posterize(image, arg):
    bits = arg.astype(jnp.int32)
    mask = jnp.bitwise_and(jnp.invert(jnp.left_shift(1, 8 - bits) - 1), 0xFF)
    lut = jnp.bitwise_and(_I, mask)
    return jnp.broadcast_to(jnp.where(bits >= 8, _I, lut), (3, 256))


def _lut_solarize(image, arg):
    return jnp.broadcast_to(jnp.where(_I < arg, _I, 255 - _I), (3, 256))


def _lut_solarize_add(image, arg):
    return jnp.broadcast_to(
        jnp.where(_I < 128, jnp.minimum(255, _I + arg.astype(jnp.int32)), _I), (3, 256)
    )


def _lut_brightness(image, arg):
    return jnp.broadcast_to(_blend(jnp.zeros(256), _I, arg).astype(jnp.int32), (3, 256))


def _lut_contrast(image, arg):
    # PIL: degenerate = grey image filled with int(mean(L) + 0.5)
    mean = jnp.floor(jnp.mean(_grey(image).astype(jnp.float32)) + 0.5)
    return jnp.broadcast_to(_blend(jnp.full(256, mean), _I, arg).astype(jnp.int32), (3, 256))


_LUT_OPS = {
    "AutoContrast": _lut_autocontrast,
    "Equalize": _lut_equalize,
    "Invert": _lut_invert,
    "Posterize": _lut_posterize,
    "PosterizeIncreasing": _lut_posterize,
    "Solarize": _lut_solarize,
    "SolarizeIncreasing": _lut_solarize,
    "SolarizeAdd": _lut_solarize_add,
    "Brightness": _lut_brightness,
    "BrightnessIncreasing": _lut_brightness,
    "Contrast": _lut_contrast,
    "ContrastIncreasing": _lut_contrast,
}


def _apply_lut(image: jax.Array, lut: jax.Array) -> jax.Array:
    """image uint8 [H, W, 3], lut int [3, 256] -> uint8 [H, W, 3]."""
    x = image.astype(jnp.int32)
    out = jnp.stack([lut[c][x[..., c]] for c in range(3)], axis=-1)
    return out.astype(jnp.uint8)


# ----------------------------------------------------------------------------- pixel ops (per image)
def _color(image, factor):
    return _blend(jnp.broadcast_to(_grey(image)[..., None], image.shape), image, factor)


def _smooth(image):
    """PIL ImageFilter.SMOOTH (3x3 [1 1 1; 1 5 1; 1 1 1] / 13); the 1-pixel border is unchanged."""
    x = image.astype(jnp.float32)
    h, w = image.shape[:2]
    p = jnp.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
    rows = p[:, :-2] + p[:, 1:-1] + p[:, 2:]  # separable 3x3 box sum (exact on integers)
    acc = rows[:-2] + rows[1:-1] + rows[2:] + 4.0 * x
    sm = _round_u8(acc / 13.0)
    border = jnp.zeros((h, w), bool).at[1:-1, 1:-1].set(True)
    return jnp.where(border[..., None], sm, image)


def _round_u8(x):
    return jnp.floor(jnp.clip(x + 0.5, 0.0, 255.0)).astype(jnp.uint8)


def _sharpness(image, factor):
    return _blend(_smooth(image), image, factor)


# ----------------------------------------------------------------------------- geometric ops
def _affine_matrix(name: str, arg: jax.Array, height: int, width: int) -> jax.Array:
    """PIL inverse-affine coefficients (a, b, c, d, e, f): output (x, y) samples input
    (a x + b y + c, d x + e y + f), as timm's ops pass them to Image.transform / Image.rotate."""
    one, zero = jnp.ones_like(arg), jnp.zeros_like(arg)
    if name == "ShearX":
        return jnp.stack([one, arg, zero, zero, one, zero])
    if name == "ShearY":
        return jnp.stack([one, zero, zero, arg, one, zero])
    if name == "TranslateXRel":
        return jnp.stack([one, zero, arg * width, zero, one, zero])
    if name == "TranslateYRel":
        return jnp.stack([one, zero, zero, zero, one, arg * height])
    if name == "Rotate":  # PIL Image.rotate(angle) about the centre (w / 2, h / 2), expand=False
        t = -jnp.deg2rad(arg)
        a, b, d, e = jnp.cos(t), jnp.sin(t), -jnp.sin(t), jnp.cos(t)
        cx, cy = width / 2.0, height / 2.0
        c = a * -cx + b * -cy + cx
        f = d * -cx + e * -cy + cy
        return jnp.stack([a, b, c, d, e, f])
    return jnp.stack([one, zero, zero, zero, one, zero])


def _warp_affine(image: jax.Array, matrix: jax.Array, fill: jax.Array, interpolation: str):
    """PIL Image.transform(AFFINE): sample at output pixel centres; outside the image -> fill."""
    h, w = image.shape[:2]
    a, b, c, d, e, f = matrix
    xs = jnp.arange(w, dtype=jnp.float32)
    ys = jnp.arange(h, dtype=jnp.float32)[:, None]
    # Source coordinate minus 0.5 (PIL samples at pixel centres). The constant is split into
    # integer and fractional parts so that float32 keeps the fraction exact enough to truncate
    # like PIL's float64 arithmetic does (matters for translations: dx is the same everywhere).
    kx = c + 0.5 * (a + b) - 0.5
    ky = f + 0.5 * (d + e) - 0.5
    kx_int, ky_int = jnp.floor(kx), jnp.floor(ky)
    xf = (a * xs + b * ys + (kx - kx_int)) + kx_int
    yf = (d * xs + e * ys + (ky - ky_int)) + ky_int
    xin, yin = xf + 0.5, yf + 0.5
    valid = (xin >= 0) & (xin < w) & (yin >= 0) & (yin < h)
    flat = image.reshape(h * w, 3).astype(jnp.float32)
    if interpolation == "nearest":
        xi = jnp.clip(jnp.floor(xin), 0, w - 1).astype(jnp.int32)
        yi = jnp.clip(jnp.floor(yin), 0, h - 1).astype(jnp.int32)
        out = flat[yi * w + xi]
    elif interpolation == "bilinear":
        x0, y0 = jnp.floor(xf), jnp.floor(yf)
        dx, dy = (xf - x0)[..., None], (yf - y0)[..., None]
        x0i = jnp.clip(x0, 0, w - 1).astype(jnp.int32)
        x1i = jnp.clip(x0 + 1, 0, w - 1).astype(jnp.int32)
        y0i = jnp.clip(y0, 0, h - 1).astype(jnp.int32)
        y1i = jnp.clip(y0 + 1, 0, h - 1).astype(jnp.int32)
        p00, p01 = flat[y0i * w + x0i], flat[y0i * w + x1i]
        p10, p11 = flat[y1i * w + x0i], flat[y1i * w + x1i]
        v1 = p00 + (p01 - p00) * dx
        v2 = p10 + (p11 - p10) * dx
        out = _trunc_clip_u8(v1 + (v2 - v1) * dy).astype(jnp.float32)
    else:
        raise ValueError(f"interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
    out = jnp.where(valid[..., None], out, fill.astype(jnp.float32))
    return out.astype(jnp.uint8)


# ----------------------------------------------------------------------------- op dispatch
def _apply_op_single(image, op_index, arg_by_op, ops: tuple, fill, interpolation):
    """Apply ops[op_index] to one uint8 image [H, W, 3]; `arg_by_op` [len(ops)] holds each op's
    argument. Geometric ops share one warp, LUT ops one table lookup (selected per sample)."""
    h, w = image.shape[:2]
    mats = jnp.stack(
        [
            _affine_matrix(n if n in _GEOMETRIC else "Identity", arg_by_op[i], h, w)
            for i, n in enumerate(ops)
        ]
    )
    luts = jnp.stack(
        [
            (_LUT_OPS[n] if n in _LUT_OPS else _lut_identity)(image, arg_by_op[i])
            for i, n in enumerate(ops)
        ]
    )
    arg = arg_by_op[op_index]
    name_is = lambda names: jnp.isin(
        op_index,
        jnp.array(  # noqa: E731
            [i for i, n in enumerate(ops) if n in names] or [-1]
        ),
    )
    candidates = [_apply_lut(image, luts[op_index])]
    if any(n in _GEOMETRIC for n in ops):
        warped = _warp_affine(image, mats[op_index], fill, interpolation)
        candidates.append((name_is(_GEOMETRIC), warped))
    if any(n.startswith("Color") for n in ops):
        candidates.append((name_is(("Color", "ColorIncreasing")), _color(image, arg)))
    if any(n.startswith("Sharpness") for n in ops):
        candidates.append((name_is(("Sharpness", "SharpnessIncreasing")), _sharpness(image, arg)))
    out = candidates[0]
    for cond, img in candidates[1:]:
        out = jnp.where(cond, img, out)
    return out


def _op_fn(name: str, fill, interpolation):
    """One op as ``f(image, arg) -> image``: the branch `rand_augment` runs under ``lax.switch``
    when it maps over samples (same arithmetic as `_apply_op_single` for that op)."""

    def f(image, arg):
        if name in _GEOMETRIC:
            h, w = image.shape[:2]
            return _warp_affine(image, _affine_matrix(name, arg, h, w), fill, interpolation)
        if name.startswith("Color"):
            return _color(image, arg)
        if name.startswith("Sharpness"):
            return _sharpness(image, arg)
        return _apply_lut(
            image, (_LUT_OPS[name] if name in _LUT_OPS else _lut_identity)(image, arg)
        )

    return f


def _resolve_impl(impl: str) -> str:
    if impl not in ("auto", "vmap", "map"):
        raise ValueError(f"impl must be 'auto', 'vmap' or 'map', got {impl!r}")
    if impl == "auto":
        return "map" if jax.default_backend() == "cpu" else "vmap"
    return impl


def apply_op(
    images: jax.Array,
    name: str,
    magnitude: float,
    sign: float = 1.0,
    *,
    fill: Sequence[int] = DEFAULT_FILL,
    interpolation: str = "bilinear",
) -> jax.Array:
    """Apply one RandAugment op to every image of a uint8 batch [B, H, W, 3] at a fixed magnitude
    (0..10) and sign; the same code path `rand_augment` uses. For tests and visualisation."""
    ops = (name,)
    mag = jnp.clip(jnp.asarray(magnitude, jnp.float32), 0.0, _LEVEL_DENOM)
    arg = op_argument(name, mag, jnp.asarray(sign, jnp.float32))
    fill = jnp.asarray(fill, jnp.float32)
    return jax.vmap(lambda im: _apply_op_single(im, 0, arg[None], ops, fill, interpolation))(images)


def rand_augment(
    key: jax.Array,
    images: jax.Array,
    num_ops: int = 2,
    magnitude: float = 9,
    magnitude_std: float = 0.5,
    prob: float = 0.5,
    increasing: bool = True,
    *,
    magnitude_max: float = _LEVEL_DENOM,
    fill: Sequence[int] = DEFAULT_FILL,
    interpolation: str = "bilinear",
    ops: Sequence[str] | None = None,
    impl: str = "auto",
    active_ops=None,
) -> jax.Array:
    """timm RandAugment on a uint8 batch [B, H, W, 3] -> uint8 [B, H, W, 3].

    Defaults are timm's 'rand-m9-mstd0.5-inc1'. `magnitude_std=inf` samples the magnitude
    uniformly in [0, magnitude] (timm's mstd > 100). `ops` overrides the op set (timm names).
    `magnitude`, `magnitude_std`, `prob` may be arrays (traced), and `active_ops` (an array
    <= `num_ops`) applies only the first layers: one compiled program serves any values. Each
    layer draws from its own key (`fold_in(key_i, layer)`), so a layer's draw does not depend on
    how many layers there are.

    `impl`: "vmap" vectorises over the batch, so every sample computes every op family and selects
    (fast on GPUs/TPUs); "map" loops over samples with ``lax.switch`` so each sample computes only
    its own op (several times faster on a CPU); "auto" picks "map" on the CPU backend. Both give
    the same images for the same key.
    """
    impl = _resolve_impl(impl)
    ops = (
        tuple(ops)
        if ops is not None
        else (RAND_INCREASING_TRANSFORMS if increasing else RAND_TRANSFORMS)
    )
    for n in ops:
        op_argument(n, jnp.float32(0), jnp.float32(1))  # validates names eagerly
    fill = jnp.asarray(fill, jnp.float32)
    batch = images.shape[0]

    def one(key_i, image):
        for layer in range(num_ops):
            # One draw per sample and layer: op, apply, magnitude, sign.
            u = jax.random.uniform(
                jax.random.fold_in(key_i, layer), (4,), minval=1e-7, maxval=1.0 - 1e-7
            )
            u_op, u_apply, u_mag, u_sign = u
            op_index = jnp.minimum(jnp.floor(u_op * len(ops)).astype(jnp.int32), len(ops) - 1)
            if isinstance(prob, (int, float)):
                apply = u_apply < prob if prob < 1.0 else jnp.bool_(True)
            else:
                apply = u_apply < prob
            if active_ops is not None:
                apply = apply & (layer < active_ops)
            if not isinstance(magnitude_std, (int, float)):
                normal = magnitude + magnitude_std * jax.scipy.special.ndtri(u_mag)
                mag = jnp.where(magnitude_std > 100, u_mag * magnitude, normal)
            elif magnitude_std == float("inf") or magnitude_std > 100:
                mag = u_mag * magnitude
            elif magnitude_std > 0:
                mag = magnitude + magnitude_std * jax.scipy.special.ndtri(u_mag)
            else:
                mag = jnp.float32(magnitude)
            mag = jnp.clip(mag, 0.0, magnitude_max)
            sign = jnp.where(u_sign > 0.5, -1.0, 1.0)
            args = jnp.stack([op_argument(n, mag, sign) for n in ops])
            if impl == "map":
                out = jax.lax.switch(op_index, branches, image, args[op_index])
            else:
                out = _apply_op_single(image, op_index, args, ops, fill, interpolation)
            image = jnp.where(apply, out, image)
        return image

    if impl == "map":
        branches = [_op_fn(n, fill, interpolation) for n in ops]
        return jax.lax.map(lambda a: one(*a), (_per_sample_keys(key, batch), images))
    return jax.vmap(one)(_per_sample_keys(key, batch), images)


# ----------------------------------------------------------------------------- normalisation
def normalize(
    images_uint8: jax.Array,
    mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
    std: Sequence[float] = IMAGENET_DEFAULT_STD,
    dtype=jnp.float32,
) -> jax.Array:
    """uint8 [..., C] -> dtype: (x / 255 - mean) / std, with mean/std given in [0, 1] like timm."""
    mean = jnp.asarray(mean, jnp.float32) * 255.0
    inv_std = 1.0 / (jnp.asarray(std, jnp.float32) * 255.0)
    return ((images_uint8.astype(jnp.float32) - mean) * inv_std).astype(dtype)


# ----------------------------------------------------------------------------- labels, mixup, cutmix
def one_hot_smooth(
    labels: jax.Array, num_classes: int, smoothing: float = 0.0, dtype=jnp.float32
) -> jax.Array:
    """int [B] -> [B, num_classes]: 1 - smoothing + smoothing / C on the label, smoothing / C off."""
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    return jnp.where(jax.nn.one_hot(labels, num_classes, dtype=bool), on, off).astype(dtype)


def cutmix_box(key: jax.Array, height: int, width: int, lam: jax.Array, correct_lam: bool = True):
    """timm rand_bbox + lambda correction -> ((y_lo, y_hi, x_lo, x_hi), lam).

    Box side = int(side * sqrt(1 - lam)), centre uniform over the image, clipped to the image;
    with `correct_lam`, lam = 1 - box area / image area (the clipped box's real share).
    """
    ratio = jnp.sqrt(1.0 - lam)
    cut_h = jnp.floor(height * ratio).astype(jnp.int32)
    cut_w = jnp.floor(width * ratio).astype(jnp.int32)
    ky, kx = jax.random.split(key)
    cy = jax.random.randint(ky, (), 0, height)
    cx = jax.random.randint(kx, (), 0, width)
    yl = jnp.clip(cy - cut_h // 2, 0, height)
    yh = jnp.clip(cy + (cut_h + 1) // 2, 0, height)
    xl = jnp.clip(cx - cut_w // 2, 0, width)
    xh = jnp.clip(cx + (cut_w + 1) // 2, 0, width)
    if correct_lam:
        lam = 1.0 - ((yh - yl) * (xh - xl)).astype(jnp.float32) / float(height * width)
    return (yl, yh, xl, xh), lam


def mixup_cutmix(
    key: jax.Array,
    images: jax.Array,
    labels_onehot: jax.Array,
    mixup_alpha: float = 0.8,
    cutmix_alpha: float = 1.0,
    switch_prob: float = 0.5,
    prob: float = 1.0,
    label_smoothing: float = 0.0,
    num_classes: int | None = None,
    correct_lam: bool = True,
    return_lam: bool = False,
):
    """timm Mixup/CutMix ('batch' mode): images [B, H, W, C] (any dtype; returned float32) mixed
    with the flipped batch (i <-> B-1-i); targets [B, num_classes] mixed with the same lambda.

    `labels_onehot` may be int labels [B] (then `num_classes` is needed) or dense targets
    [B, C]; `label_smoothing` is applied before mixing, as timm's mixup_target does.
    With both alphas > 0, CutMix is used with probability `switch_prob`; mixing happens with
    probability `prob`. Returns (images, targets) or (images, targets, lam).
    """
    if labels_onehot.ndim == 1:
        if num_classes is None:
            raise ValueError("num_classes is needed with integer labels")
        targets = one_hot_smooth(labels_onehot, num_classes, label_smoothing)
    else:
        c = labels_onehot.shape[-1]
        targets = labels_onehot.astype(jnp.float32) * (1.0 - label_smoothing) + label_smoothing / c
    x = images.astype(jnp.float32)
    static = isinstance(mixup_alpha, (int, float)) and isinstance(cutmix_alpha, (int, float))
    if static and mixup_alpha <= 0 and cutmix_alpha <= 0:
        return (x, targets, jnp.float32(1.0)) if return_lam else (x, targets)
    k_prob, k_switch, k_mix, k_cut, k_box = jax.random.split(key, 5)
    do_mix = jax.random.uniform(k_prob) < prob
    if static:
        if mixup_alpha > 0 and cutmix_alpha > 0:
            use_cutmix = jax.random.uniform(k_switch) < switch_prob
        else:
            use_cutmix = jnp.bool_(cutmix_alpha > 0)
        lam_mixup = jax.random.beta(k_mix, mixup_alpha, mixup_alpha) if mixup_alpha > 0 else 1.0
        lam_cutmix = jax.random.beta(k_cut, cutmix_alpha, cutmix_alpha) if cutmix_alpha > 0 else 1.0
    else:  # traced alphas (a trial group): the same draws, chosen by value instead of by Python
        on_mix, on_cut = mixup_alpha > 0, cutmix_alpha > 0
        do_mix = do_mix & (on_mix | on_cut)
        use_cutmix = jnp.where(on_mix & on_cut, jax.random.uniform(k_switch) < switch_prob, on_cut)
        safe = lambda a: jnp.where(a > 0, a, 1.0)  # noqa: E731  (Beta(0, 0) is undefined)
        lam_mixup = jnp.where(
            on_mix, jax.random.beta(k_mix, safe(mixup_alpha), safe(mixup_alpha)), 1.0
        )
        lam_cutmix = jnp.where(
            on_cut, jax.random.beta(k_cut, safe(cutmix_alpha), safe(cutmix_alpha)), 1.0
        )
    lam = jnp.where(do_mix, jnp.where(use_cutmix, lam_cutmix, lam_mixup), 1.0).astype(jnp.float32)

    flipped = x[::-1]
    h, w = x.shape[1:3]
    (yl, yh, xl, xh), lam_box = cutmix_box(k_box, h, w, lam, correct_lam)
    ys = jnp.arange(h)[:, None]
    xs = jnp.arange(w)[None, :]
    in_box = (ys >= yl) & (ys < yh) & (xs >= xl) & (xs < xh)
    cut = jnp.where(in_box[None, :, :, None], flipped, x)
    mixed = x * lam + flipped * (1.0 - lam)
    cutting = do_mix & use_cutmix
    out = jnp.where(cutting, cut, mixed)
    lam = jnp.where(cutting, lam_box, lam)
    targets = targets * lam + targets[::-1] * (1.0 - lam)
    return (out, targets, lam) if return_lam else (out, targets)


# ----------------------------------------------------------------------------- random erasing
def random_erasing(
    key: jax.Array,
    images: jax.Array,
    prob: float = 0.25,
    min_area: float = 0.02,
    max_area: float = 1 / 3,
    min_aspect: float = 0.3,
    max_aspect: float | None = None,
    mode: str = "pixel",
    min_count: int = 1,
    max_count: int | None = None,
) -> jax.Array:
    """timm RandomErasing on normalised float images [B, H, W, C] (per sample, up to 10 tries
    per box to fit a box of area U(min_area, max_area) / count and log-uniform aspect ratio).

    mode: 'pixel' (per-pixel N(0, 1)), 'rand' (per-box-channel N(0, 1)) or 'const' (zeros).
    """
    if mode not in ("pixel", "rand", "const"):
        raise ValueError(f"mode must be 'pixel', 'rand' or 'const', got {mode!r}")
    max_aspect = max_aspect or 1.0 / min_aspect
    log_ar = (math.log(min_aspect), math.log(max_aspect))
    max_count = max_count or min_count
    b, h, w, c = images.shape
    area = float(h * w)
    ys = jnp.arange(h)[:, None]
    xs = jnp.arange(w)[None, :]

    def one(key_i, image):
        k_uniform, k_fill = jax.random.split(key_i)
        # one uniform draw per sample: [apply, count] + per box [10 areas, 10 ratios, top, left]
        u = jax.random.uniform(k_uniform, (2 + 22 * max_count,))
        apply = u[0] < prob
        count = min_count + jnp.floor(u[1] * (max_count - min_count + 1)).astype(jnp.int32)
        count = jnp.minimum(count, max_count)
        if mode == "pixel":
            noise = jax.random.normal(k_fill, (max_count,) + image.shape, jnp.float32)
        elif mode == "rand":
            noise = jax.random.normal(k_fill, (max_count, 1, 1, c), jnp.float32)
        else:
            noise = jnp.zeros((max_count, 1, 1, c), jnp.float32)
        for n in range(max_count):
            ub = u[2 + 22 * n : 2 + 22 * (n + 1)]
            target = (min_area + (max_area - min_area) * ub[:10]) * area / count
            ar = jnp.exp(log_ar[0] + (log_ar[1] - log_ar[0]) * ub[10:20])
            bh = jnp.round(jnp.sqrt(target * ar)).astype(jnp.int32)
            bw = jnp.round(jnp.sqrt(target / ar)).astype(jnp.int32)
            ok = (bw < w) & (bh < h)
            first = jnp.argmax(ok)
            bh, bw, found = bh[first], bw[first], ok[first]
            top = jnp.floor(ub[20] * (h - bh + 1)).astype(jnp.int32)
            left = jnp.floor(ub[21] * (w - bw + 1)).astype(jnp.int32)
            box = (ys >= top) & (ys < top + bh) & (xs >= left) & (xs < left + bw)
            box = box & found & apply & (n < count)
            image = jnp.where(box[..., None], noise[n].astype(image.dtype), image)
        return image

    return jax.vmap(one)(_per_sample_keys(key, b), images)


# ----------------------------------------------------------------------------- everything at once
def batch_augment(
    key: jax.Array,
    batch: dict,
    *,
    num_classes: int,
    mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
    std: Sequence[float] = IMAGENET_DEFAULT_STD,
    dtype=jnp.float32,
    randaugment: bool = False,
    ra_num_ops: int = 2,
    ra_magnitude: float = 9,
    ra_magnitude_std: float = 0.5,
    ra_prob: float = 0.5,
    ra_increasing: bool = True,
    ra_impl: str = "auto",
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    mix_prob: float = 1.0,
    switch_prob: float = 0.5,
    label_smoothing: float = 0.0,
    re_prob: float = 0.0,
    re_mode: str = "pixel",
    re_count: int = 1,
) -> tuple[jax.Array, jax.Array]:
    """timm's training order on a uint8 batch {"image", "label"}: RandAugment -> normalize ->
    RandomErasing -> Mixup/CutMix + label smoothing. Returns (images [B, H, W, 3] dtype,
    targets float32 [B, num_classes]). Use `jax.random.fold_in(rng, step)` for `key`."""
    k_ra, k_re, k_mix = jax.random.split(key, 3)
    images = batch["image"]
    if randaugment:
        images = rand_augment(
            k_ra,
            images,
            ra_num_ops,
            ra_magnitude,
            ra_magnitude_std,
            ra_prob,
            ra_increasing,
            impl=ra_impl,
        )
    x = normalize(images, mean, std, jnp.float32)
    if re_prob > 0:
        x = random_erasing(k_re, x, re_prob, mode=re_mode, max_count=re_count)
    x, targets = mixup_cutmix(
        k_mix,
        x,
        batch["label"],
        mixup_alpha,
        cutmix_alpha,
        switch_prob,
        mix_prob,
        label_smoothing,
        num_classes,
    )
    return x.astype(dtype), targets
