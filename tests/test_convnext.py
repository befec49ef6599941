"""ConvNeXt family tests (numeric equivalence with timm is in test_timm_equivalence.py).

Cheap checks on small variants (atto / zepto, small inputs): exact timm parameter counts of every
variant, the state-dict layout of every variant (without running the big ones), input validation,
bfloat16, features with num_classes=0, drop path, init, the two weight-only norms, conversions
(round trip and Facebook's original checkpoint names).
"""

from __future__ import annotations

import numpy as np
import pytest
import jax
import jax.numpy as jnp
from flax import nnx

import edgejax
from edgejax.convert import from_timm, load_state_dict, timm_key_map, to_timm
from edgejax.models.convnext import ConvNeXt, ConvNeXtConfig, RmsNorm, SimpleNorm, drop_path_rates
from edgejax.registry import get_entry
from timm_fixture_lib import FIXTURE_DIR, build_state_dict, load_fixture

# timm 1.0.31: sum(p.numel() for p in timm.create_model(name).parameters()), 1000 classes.
TIMM_PARAMS = {
    "convnext_atto": 3_695_520,
    "convnext_atto_ols": 3_702_912,
    "convnext_atto_rms": 3_693_040,
    "convnext_femto": 5_217_784,
    "convnext_femto_ols": 5_226_520,
    "convnext_pico": 9_045_672,
    "convnext_pico_ols": 9_061_928,
    "convnext_nano": 15_593_560,
    "convnext_nano_ols": 15_649_560,
    "convnext_zepto_rms": 2_155_656,
    "convnext_zepto_rms_ols": 2_164_232,
    "convnext_tiny": 28_589_128,  # the figure quoted by the porting spec
    "convnext_tiny_hnf": 28_589_128,
    "convnext_small": 50_223_688,
    "convnext_base": 88_591_464,
    "convnext_large": 197_767_336,
    "convnext_large_mlp": 200_128_168,
    "convnext_xlarge": 350_196_968,
    "convnext_xxlarge": 846_471_016,
}


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _fixture_sd(name: str, size: int = 224) -> dict:
    meta, _ = load_fixture(FIXTURE_DIR / f"{name}@{size}.npz")
    return build_state_dict(meta["manifest"], meta["seed"])


def _x(size: int = 32, batch: int = 2, seed: int = 0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, size, size, 3)), jnp.float32)


def _run(model, x, fn=lambda m, x: m(x)):
    """``fn(model, x)`` under one ``jax.jit`` (one compile instead of one per eager op)."""
    graphdef, state = nnx.split(model)
    return jax.jit(lambda state, x: fn(nnx.merge(graphdef, state), x))(state, x)


@pytest.mark.parametrize("name", sorted(TIMM_PARAMS))
def test_param_count_equals_timm(name):
    assert edgejax.model_info(name)["num_params"] == TIMM_PARAMS[name]


@pytest.mark.parametrize("name", sorted(TIMM_PARAMS))
def test_state_dict_layout_equals_timm(name):
    """Every timm key maps to a parameter of the right shape (no model run: cheap even for the
    846M-parameter xxlarge, whose numeric check is in the SLOW set)."""
    paths = sorted(FIXTURE_DIR.glob(f"{name}@*.npz"))
    if not paths:
        pytest.skip(f"no fixture for {name}")
    meta, _ = load_fixture(paths[0])
    entry = get_entry(name)
    model = nnx.eval_shape(
        lambda: entry.builder(entry.cfg, num_classes=1000, rngs=nnx.Rngs(0), dtype=None)
    )
    kmap = timm_key_map(model)
    timm_shapes = {k: tuple(s) for k, s in meta["manifest"]}
    assert sorted(kmap) == sorted(timm_shapes)
    for key, (path, attr, to_flax, _) in kmap.items():
        mod = model
        for p in path:
            mod = mod[p] if isinstance(p, int) else getattr(mod, p)
        got = to_flax(np.zeros(timm_shapes[key], np.float32)).shape
        assert tuple(got) == tuple(getattr(mod, attr).shape), key


# A 4-stage model small enough to build and run eagerly in a fraction of a second.
TOY = ConvNeXtConfig(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), conv_mlp=True)


def test_bad_configs_raise_clear_errors():
    # (bad inputs: tests/test_models.py)
    with pytest.raises(ValueError, match="norm"):
        ConvNeXt(ConvNeXtConfig(norm="batchnorm"), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="stem_type"):
        ConvNeXt(ConvNeXtConfig(stem_type="deep"), rngs=nnx.Rngs(0))


def test_odd_sizes_floor_like_timm():
    """Unpadded 4x4 s4 / 2x2 s2 convs floor (126 -> 31 -> 15 -> 7 -> 3); the overlapping stem's
    padded k3 s2 convs round up (126 -> 63 -> 32 -> 16 -> 8 -> 4). Shapes checked against timm."""
    x = jax.ShapeDtypeStruct((1, 126, 126, 3), jnp.float32)
    for stem, side in (("patch", 3), ("overlap_tiered", 4)):
        model = ConvNeXt(
            ConvNeXtConfig(**{**TOY.__dict__, "stem_type": stem}), num_classes=0, rngs=nnx.Rngs(0)
        )
        assert jax.eval_shape(model.forward_features, x).shape == (1, side, side, 32)


def test_num_classes_zero_gives_pooled_features():
    sd = _fixture_sd("convnext_atto")
    full = from_timm("convnext_atto", sd)
    feats_model = from_timm(
        "convnext_atto", {k: v for k, v in sd.items() if not k.startswith("head.fc.")}
    )
    assert feats_model.num_classes == 0 and feats_model.head.fc is None
    x = _x()
    feats = _run(feats_model, x)
    assert feats.shape == (2, 320)
    pre, raw = _run(
        full,
        x,
        lambda m, x: (
            m.forward_head(m.forward_features(x), pre_logits=True),
            jnp.mean(m.forward_features(x), axis=(1, 2)),
        ),
    )
    np.testing.assert_allclose(feats, pre, rtol=1e-5, atol=1e-5)
    # The head norm is applied to the pooled vector, so the features are not the raw pooled map.
    assert not np.allclose(feats, raw, atol=1e-2)


def test_drop_path_rates_rise_linearly_over_all_blocks():
    entry = get_entry("convnext_tiny")
    model = nnx.eval_shape(
        lambda: entry.builder(
            entry.cfg, num_classes=1000, rngs=nnx.Rngs(0), dtype=None, drop_path_rate=0.1
        )
    )
    got = [0.0 if b.drop_path is None else b.drop_path.rate for s in model.stages for b in s.blocks]
    np.testing.assert_allclose(got, np.linspace(0, 0.1, 18), atol=1e-7)
    assert drop_path_rates(0.2, (1, 2)) == [[0.0], [0.1, 0.2]]


def test_init_follows_timm():
    model = ConvNeXt(TOY, rngs=nnx.Rngs(0))
    blk = model.stages[2].blocks[0]
    np.testing.assert_array_equal(blk.gamma[...], np.full(24, 1e-6, np.float32))
    np.testing.assert_array_equal(blk.norm.scale[...], 1.0)
    np.testing.assert_array_equal(blk.norm.bias[...], 0.0)
    np.testing.assert_array_equal(blk.mlp.fc1.bias[...], 0.0)
    np.testing.assert_array_equal(model.head.fc.bias[...], 0.0)
    k = np.asarray(model.head.fc.kernel[...])  # 32 x 1000
    assert abs(k.std() - 0.02) < 1e-3 and abs(k.mean()) < 1e-3
    # timm's trunc_normal_(std=.02) truncates at +-2 absolute: no visible cut at 2 std.
    assert np.abs(k).max() > 0.06
    for conv in (model.stem[0], blk.conv_dw, blk.mlp.fc1, model.stages[1].downsample[1]):
        assert abs(np.asarray(conv.kernel[...]).std() - 0.02) < 5e-3


def test_weight_only_norms_match_numpy():
    x = np.random.default_rng(0).normal(1.0, 2.0, (3, 5, 16)).astype(np.float32)
    w = np.random.default_rng(1).uniform(0.5, 1.5, 16).astype(np.float32)
    rms, simple = RmsNorm(16, eps=1e-6), SimpleNorm(16, eps=1e-6)
    rms.weight[...] = w
    simple.weight[...] = w
    ref_rms = x / np.sqrt(np.mean(x**2, -1, keepdims=True) + 1e-6) * w
    ref_simple = x / np.sqrt(np.var(x, -1, ddof=1, keepdims=True) + 1e-6) * w  # not centred
    np.testing.assert_allclose(rms(jnp.asarray(x)), ref_rms, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(simple(jnp.asarray(x)), ref_simple, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["convnext_atto", "convnext_zepto_rms_ols"])
def test_to_timm_round_trip(name):
    """conv_mlp weights stay 4-D [out, in, 1, 1]; the weight-only norms map to ``.weight``."""
    sd = _fixture_sd(name)
    back = to_timm(from_timm(name, sd))
    assert sorted(back) == sorted(sd)
    for k, v in sd.items():
        assert back[k].shape == v.shape, k
        np.testing.assert_array_equal(back[k], v, err_msg=k)
    assert back["stages.0.blocks.0.mlp.fc1.weight"].ndim == 4
    if name.endswith("_ols"):  # overlap_act stem: conv, GELU, conv, SimpleNorm (weight only)
        assert "stem.3.weight" in back and "stem.3.bias" not in back and "stem.1.weight" not in back


def test_hnf_layout():
    model = nnx.eval_shape(
        lambda: get_entry("convnext_tiny_hnf").builder(
            get_entry("convnext_tiny_hnf").cfg, num_classes=1000, rngs=nnx.Rngs(0), dtype=None
        )
    )
    keys = set(timm_key_map(model))
    assert {"norm_pre.weight", "norm_pre.bias", "head.fc.weight"} <= keys
    assert not any(k.startswith("head.norm") for k in keys)


def test_loads_facebook_checkpoint_names():
    """Original github.com/facebookresearch/ConvNeXt names load through ``timm_remap``."""
    cfg = ConvNeXtConfig(depths=(1, 2, 1, 1), dims=(8, 16, 24, 32))  # Linear MLP, as FB's
    ref = ConvNeXt(cfg, rngs=nnx.Rngs(3))
    timm_sd = to_timm(ref)

    def to_fb(k):
        k = k.replace("stem.", "downsample_layers.0.").replace(".conv_dw.", ".dwconv.")
        k = k.replace(".mlp.fc", ".pwconv").replace(".blocks.", ".")
        k = k.replace("head.fc.", "head.").replace("head.norm.", "norm.")
        if ".downsample." in k:  # stages.i.downsample.j -> downsample_layers.i.j
            i, rest = k[len("stages.") :].split(".downsample.")
            k = f"downsample_layers.{i}.{rest}"
        return k

    fb_sd = {to_fb(k): v for k, v in timm_sd.items()}
    assert "downsample_layers.1.1.weight" in fb_sd and "stages.2.0.pwconv1.weight" in fb_sd
    model = ConvNeXt(cfg, rngs=nnx.Rngs(4))
    load_state_dict(model, fb_sd)
    x = _x(32, 1)
    np.testing.assert_array_equal(_run(model, x), _run(ref, x))
