"""MobileViT v1/v2 specifics: parameter counts, the study's aliases, the torch-exact bilinear
resize, patch unfold/fold, separable attention, output sizes at non-multiple inputs, dtype,
drop path and feature extraction. Numeric equivalence with timm is in test_timm_equivalence.py."""

from __future__ import annotations

import numpy as np
import pytest
import jax
import jax.numpy as jnp
from flax import nnx

from jitted import fwd
import edgejax
from edgejax.registry import count_params, get_entry, model_info
from edgejax.models import mobilevit as mv

# timm 1.0.31, 1000 classes.
TIMM_PARAMS = {
    "mobilevit_xxs": 1_272_024,
    "mobilevit_xs": 2_317_848,
    "mobilevit_s": 5_578_632,
    "mobilevitv2_050": 1_370_593,
    "mobilevitv2_075": 2_866_009,
    "mobilevitv2_100": 4_901_841,
    "mobilevitv2_125": 7_478_089,
    "mobilevitv2_150": 10_594_753,
    "mobilevitv2_175": 14_251_833,
    "mobilevitv2_200": 18_449_329,
}


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_quoted_parameter_counts():
    assert model_info("mobilevitv2_050")["num_params"] == 1_370_593
    assert model_info("mobilevitv2_075")["num_params"] == 2_866_009
    assert model_info("mobilevitv2_100")["num_params"] == 4_901_841


def test_pretrained_cfg_values():
    v2 = model_info("mobilevitv2_075")
    assert v2["input_size"] == (3, 256, 256) and v2["crop_pct"] == 0.888
    assert v2["mean"] == (0.0, 0.0, 0.0) and v2["std"] == (1.0, 1.0, 1.0)
    assert v2["interpolation"] == "bicubic"
    assert v2["hf_hub_id"] == "timm/mobilevitv2_075.cvnets_in1k" and v2["top1"] == 75.612
    v1 = model_info("mobilevit_s")
    assert v1["crop_pct"] == 0.9 and v1["mean"] == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    "alias,target",
    [
        ("mobilevitv2_xxs", "mobilevitv2_050"),
        ("mobilevitv2_xs", "mobilevitv2_075"),
        ("mobilevitv2_s", "mobilevitv2_100"),
    ],
)
def test_study_aliases_resolve(alias, target):
    assert get_entry(alias).name == target
    assert model_info(alias)["name"] == target
    assert alias in edgejax.list_models("mobilevitv2_*", include_aliases=True)
    model = nnx.eval_shape(lambda: edgejax.create_model(alias))
    assert count_params(model) == TIMM_PARAMS[target]


# ---- bilinear resize -------------------------------------------------------------------------


def test_resize_align_corners_true_hand_checked():
    x = jnp.array([[0.0, 1.0], [2.0, 3.0]]).reshape(1, 2, 2, 1)
    y = mv.bilinear_resize(x, (3, 3), align_corners=True)[0, :, :, 0]
    np.testing.assert_allclose(y, [[0.0, 0.5, 1.0], [1.0, 1.5, 2.0], [2.0, 2.5, 3.0]], atol=1e-7)
    # 3 -> 4 with corners aligned: sources 0, 2/3, 4/3, 2.
    x = jnp.array([0.0, 3.0, 9.0]).reshape(1, 3, 1, 1)
    y = mv.bilinear_resize(x, (4, 1), align_corners=True)[0, :, 0, 0]
    np.testing.assert_allclose(y, [0.0, 2.0, 5.0, 9.0], atol=1e-6)


def test_resize_align_corners_false_hand_checked():
    # 2 -> 4: sources max(-0.25, 0)=0, 0.25, 0.75, 1.25 (the upper neighbour clamps to index 1).
    x = jnp.array([0.0, 4.0]).reshape(1, 1, 2, 1)
    y = mv.bilinear_resize(x, (1, 4), align_corners=False)[0, 0, :, 0]
    np.testing.assert_allclose(y, [0.0, 1.0, 3.0, 4.0], atol=1e-7)
    # Shrinking 4 -> 2 without antialias: sources 0.5, 2.5.
    x = jnp.array([0.0, 1.0, 2.0, 3.0]).reshape(1, 4, 1, 1)
    y = mv.bilinear_resize(x, (2, 1), align_corners=False)[0, :, 0, 0]
    np.testing.assert_allclose(y, [0.5, 2.5], atol=1e-7)


def _torch_bilinear_reference(img, out_h, out_w, align_corners):
    """Per-pixel loop with the formula of torch's upsample_bilinear2d (CPU kernel), float64."""
    h, w = img.shape

    def src(d, n_in, n_out):
        if align_corners:
            return d * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
        return max((d + 0.5) * n_in / n_out - 0.5, 0.0)

    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        sy = src(i, h, out_h)
        y0 = int(sy)
        y1 = y0 + (1 if y0 < h - 1 else 0)
        ly = sy - y0
        for j in range(out_w):
            sx = src(j, w, out_w)
            x0 = int(sx)
            x1 = x0 + (1 if x0 < w - 1 else 0)
            lx = sx - x0
            out[i, j] = (1 - ly) * ((1 - lx) * img[y0, x0] + lx * img[y0, x1]) + ly * (
                (1 - lx) * img[y1, x0] + lx * img[y1, x1]
            )
    return out


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize(
    "src,dst", [((7, 7), (8, 8)), ((8, 8), (7, 7)), ((13, 5), (14, 6)), ((1, 1), (2, 2))]
)
def test_resize_matches_torch_formula(src, dst, align_corners):
    img = np.random.default_rng(0).normal(size=src)
    ref = _torch_bilinear_reference(img, *dst, align_corners)
    got = mv.bilinear_resize(jnp.asarray(img, jnp.float32)[None, :, :, None], dst, align_corners)
    np.testing.assert_allclose(np.asarray(got)[0, :, :, 0], ref, atol=2e-6)


def test_resize_is_not_jax_image_resize():
    """The trap: jax.image.resize (half-pixel, no corner alignment) is a different function."""
    x = jax.random.normal(jax.random.key(0), (1, 7, 7, 4))
    ours = mv.bilinear_resize(x, (8, 8), align_corners=True)
    other = jax.image.resize(x, (1, 8, 8, 4), "bilinear")
    assert float(jnp.max(jnp.abs(ours - other))) > 0.05
    # Corners are kept exactly with align_corners=True.
    np.testing.assert_allclose(ours[:, ::7, ::7], x[:, ::6, ::6], atol=1e-6)


def test_interpolation_matrix_rows_sum_to_one():
    for ac in (True, False):
        for n_in, n_out in ((7, 8), (8, 7), (3, 10), (25, 26)):
            m = mv.interpolation_matrix(n_in, n_out, ac)
            assert m.shape == (n_out, n_in)
            np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-6)
            assert ((m != 0).sum(1) <= 2).all()


# ---- patches and attention -------------------------------------------------------------------


def test_unfold_layout_and_fold_inverse():
    b, h, w, c, p = 2, 4, 6, 3, 2
    x = jnp.arange(b * h * w * c, dtype=jnp.float32).reshape(b, h, w, c)
    t = mv.unfold_patches(x, p)
    nh, nw = h // p, w // p
    assert t.shape == (b, p * p, nh * nw, c)
    # P indexes the pixel inside a patch (row-major), N the patch (row-major), as timm's [B,C,P,N].
    for pi in range(p * p):
        for ni in range(nh * nw):
            r, s = divmod(pi, p)
            i, j = divmod(ni, nw)
            np.testing.assert_array_equal(t[:, pi, ni], x[:, i * p + r, j * p + s])
    np.testing.assert_array_equal(mv.fold_patches(t, p, nh, nw), x)


def test_linear_attention_softmax_over_patches_per_pixel():
    dim = 8
    attn = mv.LinearSelfAttention(dim, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(3), (2, 4, 5, dim))  # [B, P, N, C]
    wq = np.asarray(attn.qkv_proj.kernel[...])[0, 0]  # [C, 1 + 2C]
    bq = np.asarray(attn.qkv_proj.bias[...])
    wo, bo = np.asarray(attn.out_proj.kernel[...])[0, 0], np.asarray(attn.out_proj.bias[...])
    xn = np.asarray(x, np.float64)
    qkv = xn @ wq + bq
    q, k, v = qkv[..., 0], qkv[..., 1 : 1 + dim], qkv[..., 1 + dim :]
    ref = np.zeros_like(xn)
    for bi in range(2):
        for pi in range(4):
            s = np.exp(q[bi, pi] - q[bi, pi].max())
            s /= s.sum()  # softmax over the N patches
            ctx = (k[bi, pi] * s[:, None]).sum(0)  # [C]
            ref[bi, pi] = (np.maximum(v[bi, pi], 0) * ctx) @ wo + bo
    np.testing.assert_allclose(attn(x), ref, rtol=1e-4, atol=1e-5)


# ---- whole models ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def v2_small():
    return edgejax.create_model("mobilevitv2_050", rngs=0)


def test_v2_keeps_the_resized_map_and_v1_resizes_back(v2_small):
    x = jnp.zeros((1, 224, 224, 3))
    # v2: stage 4 sees 7x7, resizes to 8x8 and keeps it (timm pool_size 8x8 at 224 too).
    assert nnx.eval_shape(lambda: v2_small.forward_features(x)).shape == (1, 8, 8, 256)
    v1 = edgejax.create_model("mobilevit_xxs", rngs=0)
    assert nnx.eval_shape(lambda: v1.forward_features(x)).shape == (1, 7, 7, 320)
    # 100 px: stem 50, stage 1 25, stage 2 13 (v2 block -> 14), stage 3 7 (-> 8), stage 4 4.
    y = nnx.eval_shape(lambda: v2_small.forward_features(jnp.zeros((1, 100, 100, 3))))
    assert y.shape == (1, 4, 4, 256)


def test_forward_runs_at_odd_size_without_nans(v2_small):
    x = jax.random.uniform(jax.random.key(0), (2, 72, 72, 3))
    y = fwd(v2_small, x)
    assert y.shape == (2, 1000) and bool(jnp.all(jnp.isfinite(y)))


def test_timm_init():
    m = edgejax.create_model("mobilevitv2_075", rngs=0)
    # Depthwise kernels: timm's fan_out = 3*3*C/groups = 9, so std sqrt(2/9) (not Flax's /C).
    k = np.asarray(m.stages[2][1].conv_kxk.conv.kernel[...])
    assert abs(k.std() - np.sqrt(2 / 9)) < 0.05
    # Residual inverted-residual blocks start as identity (zero_init_last); others do not.
    assert np.all(np.asarray(m.stages[1][1].conv3_1x1.bn.scale[...]) == 0)
    assert np.all(np.asarray(m.stages[1][0].conv3_1x1.bn.scale[...]) == 1)
    v1 = edgejax.create_model("mobilevit_xxs", rngs=0)
    q = np.asarray(v1.stages[2][1].transformer[0].attn.qkv.kernel[...])
    assert abs(q.std() - 0.01) < 0.002
    assert mv.ConvNormAct.fuse_pairs == (("conv", "bn"),)
