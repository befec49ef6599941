"""On-accelerator augmentation: each RandAugment op against a PIL reference written here from timm's
op definitions, Mixup/CutMix label mass and box area, RandomErasing, normalisation.

Bounds for the per-op comparison at magnitude 9 (timm 'rand-m9'), both signs, real images:
- every op: no pixel differs by more than 1 grey level;
- colour / LUT ops: mean absolute difference <= 0.02 (same integer arithmetic as PIL; the rare
  off-by-one comes from float32 vs PIL's float64 in AutoContrast's scale and Contrast's blend);
- geometric ops (bilinear Rotate/Shear/Translate): mean absolute difference <= 0.25. Sampling
  positions and the interpolation formula are PIL's, but PIL interpolates in float64 and truncates;
  float32 lands just below an integer where float64 lands on it for some pixels (measured ~0.07
  for translations, whose fractional offset is the same for every pixel, < 0.001 otherwise).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from edgejax.data import augment as A
from edgejax.data import testing as X

SHARED = X.shared_data()
FILL = A.DEFAULT_FILL


def _real_images():
    """6 ImageNet samples (centre 112x80 crops, non-square on purpose) + 4 CIFAR-10 images."""
    if SHARED is None:
        pytest.skip("../shared/data (real images) is absent")
    files = sorted((SHARED / "imagenet-samples").glob("*/*.JPEG"))[::167][:6]
    out = []
    for f in files:
        im = Image.open(f).convert("RGB")
        w, h = im.size
        s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        out.append(np.asarray(im.resize((112, 80), Image.BILINEAR)))
    big = np.stack(out)
    cifar = sorted((SHARED / "cifar10" / "test").glob("*/*.jpg"))[::2500][:4]
    small = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in cifar])
    return big, small


# ---------------------------------------------------------------- PIL reference (from timm's spec)
def _pil_reference(name, im, magnitude, sign):
    """One op as timm's auto_augment applies it, with the level -> argument rules of timm's
    LEVEL_TO_ARG ('Increasing' variants), bilinear resampling and the create_transform fill."""
    level = magnitude / 10.0
    geo = dict(resample=Image.BILINEAR, fillcolor=FILL)
    if name == "AutoContrast":
        return ImageOps.autocontrast(im)
    if name == "Equalize":
        return ImageOps.equalize(im)
    if name == "Invert":
        return ImageOps.invert(im)
    if name == "Rotate":
        return im.rotate(sign * level * 30.0, **geo)
    if name == "PosterizeIncreasing":
        bits = 4 - int(level * 4)
        return im if bits >= 8 else ImageOps.posterize(im, bits)
    if name == "SolarizeIncreasing":
        return ImageOps.solarize(im, 256 - min(256, int(level * 256)))
    if name == "SolarizeAdd":
        add = min(128, int(level * 110))
        table = [min(255, i + add) if i < 128 else i for i in range(256)]
        return im.point(table * 3)
    factor = max(0.1, 1.0 + sign * level * 0.9)
    enhancers = {
        "ColorIncreasing": ImageEnhance.Color,
        "ContrastIncreasing": ImageEnhance.Contrast,
        "BrightnessIncreasing": ImageEnhance.Brightness,
        "SharpnessIncreasing": ImageEnhance.Sharpness,
    }
    if name in enhancers:
        return enhancers[name](im).enhance(factor)
    w, h = im.size
    coeffs = {
        "ShearX": (1, sign * level * 0.3, 0, 0, 1, 0),
        "ShearY": (1, 0, 0, sign * level * 0.3, 1, 0),
        "TranslateXRel": (1, 0, sign * level * 0.45 * w, 0, 1, 0),
        "TranslateYRel": (1, 0, 0, 0, 1, sign * level * 0.45 * h),
    }[name]
    return im.transform(im.size, Image.AFFINE, coeffs, **geo)


@pytest.fixture(scope="module")
def real_images():
    return _real_images()


@pytest.mark.parametrize("name", A.RAND_INCREASING_TRANSFORMS)
def test_rand_augment_op_matches_pil(name, real_images):
    geometric = name in ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
    bound = 0.25 if geometric else 0.02
    for images in real_images:
        for sign in (1.0, -1.0):
            ref = np.stack(
                [np.asarray(_pil_reference(name, Image.fromarray(x), 9, sign)) for x in images]
            ).astype(np.int32)
            got = np.asarray(A.apply_op(jnp.asarray(images), name, 9, sign)).astype(np.int32)
            diff = np.abs(ref - got)
            assert diff.max() <= 1, (name, sign, diff.max())
            assert diff.mean() <= bound, (name, sign, diff.mean())
            if name not in ("Equalize", "AutoContrast") or sign > 0:
                assert np.abs(ref - images).mean() > 0.5 or name == "AutoContrast"


def test_non_increasing_levels_follow_timm():
    m, s = jnp.float32(9.0), jnp.float32(1.0)
    assert float(A.op_argument("Posterize", m, s)) == int(0.9 * 4)  # keeps 3 bits (decreasing)
    assert float(A.op_argument("PosterizeIncreasing", m, s)) == 4 - 3
    assert float(A.op_argument("Solarize", m, s)) == int(0.9 * 256)
    assert float(A.op_argument("SolarizeIncreasing", m, s)) == 256 - 230
    np.testing.assert_allclose(float(A.op_argument("Color", m, s)), 0.9 * 1.8 + 0.1, rtol=1e-6)
    np.testing.assert_allclose(float(A.op_argument("ContrastIncreasing", m, -s)), 0.19, rtol=1e-5)
    np.testing.assert_allclose(float(A.op_argument("Rotate", m, -s)), -27.0, rtol=1e-6)
    assert float(A.op_argument("ColorIncreasing", jnp.float32(10), -s)) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown RandAugment op"):
        A.op_argument("Cutout", m, s)


def test_rand_augment_is_jittable_random_per_sample_and_deterministic():
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (16, 24, 24, 3), dtype=np.uint8))
    f = jax.jit(
        lambda k, x: A.rand_augment(k, x, num_ops=2, magnitude=9, magnitude_std=0.5, prob=1.0)
    )
    a = f(jax.random.key(0), images)
    b = f(jax.random.key(0), images)
    c = f(jax.random.key(1), images)
    assert a.shape == images.shape and a.dtype == jnp.uint8
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    changed = np.abs(np.asarray(a, np.int32) - np.asarray(images, np.int32)).mean(axis=(1, 2, 3))
    assert (changed > 0).mean() > 0.8  # prob=1: nearly every sample altered
    # identical inputs still get different ops (per-sample keys)
    same = jnp.broadcast_to(images[:1], images.shape)
    out = np.asarray(f(jax.random.key(2), same))
    assert len({out[i].tobytes() for i in range(16)}) > 8


def test_rand_augment_map_equals_vmap(real_images):
    """The CPU path (lax.map + lax.switch: one op computed per sample) gives the same images as
    the vectorised path (every op family computed, then selected) that the PIL tests check."""
    images = jnp.asarray(real_images[0][:12])
    outs = {
        impl: np.asarray(
            jax.jit(
                lambda k, x, impl=impl: A.rand_augment(
                    k, x, num_ops=2, magnitude=9, magnitude_std=0.5, prob=1.0, impl=impl
                )
            )(jax.random.key(5), images)
        )
        for impl in ("map", "vmap")
    }
    diff = np.abs(outs["map"].astype(np.int32) - outs["vmap"].astype(np.int32))
    assert diff.max() <= 1 and diff.mean() < 1e-3, (diff.max(), diff.mean())
    with pytest.raises(ValueError, match="impl must be"):
        A.rand_augment(jax.random.key(0), images, impl="loop")


def test_rand_augment_probability_and_op_choice():
    images = jnp.asarray(np.random.default_rng(1).integers(0, 256, (200, 8, 8, 3), np.uint8))
    f = jax.jit(lambda k, x: A.rand_augment(k, x, num_ops=1, prob=0.5, ops=("Invert",)))
    inv = np.asarray(f(jax.random.key(3), images))
    inverted = np.all(inv == 255 - np.asarray(images), axis=(1, 2, 3))
    untouched = np.all(inv == np.asarray(images), axis=(1, 2, 3))
    assert np.all(inverted | untouched) and 0.35 < inverted.mean() < 0.65
    # two layers of Invert at prob 1 undo each other: the op is drawn once per layer
    g = jax.jit(lambda k, x: A.rand_augment(k, x, num_ops=2, prob=1.0, ops=("Invert",)))
    np.testing.assert_array_equal(np.asarray(g(jax.random.key(0), images)), np.asarray(images))


# ---------------------------------------------------------------- mixup / cutmix / smoothing
def test_one_hot_smooth():
    t = np.asarray(A.one_hot_smooth(jnp.array([2, 0]), 4, 0.1))
    np.testing.assert_allclose(t[0], [0.025, 0.025, 0.925, 0.025], rtol=1e-6)
    np.testing.assert_allclose(t.sum(1), 1.0, rtol=1e-6)


def test_cutmix_box_area_matches_corrected_lambda():
    for i in range(200):
        lam = float(np.random.default_rng(i).uniform(0.0, 1.0))
        (yl, yh, xl, xh), lam_c = A.cutmix_box(jax.random.key(i), 24, 40, jnp.float32(lam))
        area = (int(yh) - int(yl)) * (int(xh) - int(xl))
        assert 0 <= int(yl) <= int(yh) <= 24 and 0 <= int(xl) <= int(xh) <= 40
        assert float(lam_c) == pytest.approx(1 - area / (24 * 40), abs=1e-6)
        assert float(lam_c) >= lam - 1e-6  # clipping only shrinks the box
    (_, _, _, _), lam_raw = A.cutmix_box(
        jax.random.key(0), 24, 40, jnp.float32(0.3), correct_lam=False
    )
    assert float(lam_raw) == pytest.approx(0.3)


@pytest.mark.parametrize("mode", ["mixup", "cutmix", "switch"])
def test_mixup_cutmix_label_mass_and_pixels(mode):
    b, h, w, nc = 8, 16, 20, 5
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (b, h, w, 3)).astype(np.float32)
    labels = jnp.asarray(rng.integers(0, nc, b))
    alphas = {"mixup": (0.8, 0.0), "cutmix": (0.0, 1.0), "switch": (0.8, 1.0)}[mode]
    f = jax.jit(
        lambda k, x, y: A.mixup_cutmix(
            k, x, y, *alphas, switch_prob=0.5, label_smoothing=0.1, num_classes=nc, return_lam=True
        )
    )
    kinds = set()
    for seed in range(12):
        out, targets, lam = (np.asarray(v) for v in f(jax.random.key(seed), images, labels))
        np.testing.assert_allclose(targets.sum(1), 1.0, rtol=1e-5)
        y = np.asarray(A.one_hot_smooth(labels, nc, 0.1))
        np.testing.assert_allclose(targets, lam * y + (1 - lam) * y[::-1], rtol=1e-5, atol=1e-6)
        from_a = np.all(out == images, axis=-1)
        from_b = np.all(out == images[::-1], axis=-1)
        if np.all(from_a | from_b):  # cutmix (or lam == 1): pixels copied from one of the pair
            kinds.add("cut")
            frac_a = from_a[: b // 2].mean()  # rows where both differ; first half is enough
            assert frac_a == pytest.approx(lam, abs=0.02)
        else:
            kinds.add("mix")
            np.testing.assert_allclose(out, lam * images + (1 - lam) * images[::-1], rtol=1e-5)
    assert kinds == {"mixup": {"mix"}, "cutmix": {"cut"}, "switch": {"mix", "cut"}}[mode]


def test_mixup_prob_zero_keeps_images_and_smooths_labels():
    x = jnp.ones((4, 8, 8, 3))
    f = jax.jit(
        lambda k, x, y: A.mixup_cutmix(
            k, x, y, 0.8, 1.0, prob=0.0, label_smoothing=0.2, num_classes=4
        )
    )
    out, t = f(jax.random.key(0), x, jnp.array([0, 1, 2, 3]))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(x))
    np.testing.assert_allclose(
        np.asarray(t), np.asarray(A.one_hot_smooth(jnp.arange(4), 4, 0.2)), rtol=1e-6
    )


# ---------------------------------------------------------------- random erasing, normalize
def test_random_erasing_areas_and_modes():
    x = jnp.full((64, 32, 32, 3), 5.0)
    erase = jax.jit(A.random_erasing, static_argnames=("prob", "mode"))
    out = np.asarray(erase(jax.random.key(0), x, prob=1.0, mode="const"))
    erased = (out == 0).all(-1).mean(axis=(1, 2))
    assert np.all(erased > 0) and erased.min() >= 0.015 and erased.max() <= 0.34
    assert np.all((out == 0) | (out == 5.0))
    half = np.asarray(erase(jax.random.key(2), x, prob=0.5, mode="const"))
    touched = (half == 0).any(axis=(1, 2, 3))
    assert 0.3 < touched.mean() < 0.7
    assert np.all(half[~touched] == 5.0)  # samples not drawn are left exactly as they were
    px = np.asarray(erase(jax.random.key(1), x, prob=1.0, mode="pixel"))
    noise = px[px != 5.0]
    assert abs(noise.mean()) < 0.1 and 0.8 < noise.std() < 1.2


def test_normalize_matches_formula():
    x = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    got = np.asarray(A.normalize(jnp.asarray(x), dtype=jnp.bfloat16), np.float32)
    want = (x / 255.0 - np.array(A.IMAGENET_DEFAULT_MEAN)) / np.array(A.IMAGENET_DEFAULT_STD)
    np.testing.assert_allclose(got, want, atol=0.02)
    assert A.normalize(jnp.asarray(x)).dtype == jnp.float32


def test_batch_augment_end_to_end_jit():
    rng = np.random.default_rng(0)
    batch = {
        "image": jnp.asarray(rng.integers(0, 256, (8, 16, 16, 3), np.uint8)),
        "label": jnp.arange(8) % 3,
    }
    f = jax.jit(
        lambda k, b: A.batch_augment(
            k,
            b,
            num_classes=3,
            randaugment=True,
            mixup_alpha=0.8,
            cutmix_alpha=1.0,
            label_smoothing=0.1,
            re_prob=0.25,
            dtype=jnp.bfloat16,
        )
    )
    images, targets = f(jax.random.fold_in(jax.random.key(0), 7), batch)
    assert images.shape == (8, 16, 16, 3) and images.dtype == jnp.bfloat16
    assert targets.shape == (8, 3)
    np.testing.assert_allclose(np.asarray(targets).sum(1), 1.0, rtol=1e-5)
    assert math.isfinite(float(jnp.abs(images.astype(jnp.float32)).max()))
