"""TinyViT-specific tests (the numeric match with timm is in test_timm_equivalence.py).

Cheap by design: parameter counts use abstract models (``nnx.eval_shape``); state dicts come from
the fixture manifests (timm's own key names and shapes, no torch needed); forward passes run a
tiny TinyViT built through the config overrides at 64 px.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jitted import fwd, features
import edgejax
from edgejax.convert import from_timm, to_timm
from edgejax.models import tiny_vit as tv
from edgejax.layers import BatchNorm2d, Conv2d
from edgejax.registry import count_params, get_entry
from timm_fixture_lib import FIXTURE_DIR, build_state_dict, load_fixture

# timm 1.0.31: sum(p.numel() for p in timm.create_model(name, num_classes=nc).parameters())
TIMM_PARAMS = {
    # name: (1000 classes, 21841 classes, no classifier)
    "tiny_vit_5m_224": (5_392_764, 12_082_725, 5_071_764),
    "tiny_vit_11m_224": (10_996_972, 20_354_581, 10_547_972),
    "tiny_vit_21m_224": (21_198_568, 33_223_825, 20_621_568),
    "tiny_vit_21m_384": (21_230_488, 33_255_745, 20_653_488),
    "tiny_vit_21m_512": (21_268_120, 33_293_377, 20_691_120),
}

# A small TinyViT with the same block types: windows 3/3/5/2 pad the 16/8/4 px stage maps at a
# 64 px input and leave the last one (2 px) unpadded.
TINY = dict(
    embed_dims=(16, 32, 32, 48),
    num_heads=(1, 2, 2, 3),
    depths=(1, 1, 2, 1),
    window_sizes=(3, 3, 5, 2),
)


def _tiny(**kw):
    kw = {**TINY, **kw}
    return edgejax.create_model("tiny_vit_5m_224", **kw)


@pytest.fixture(scope="module")
def tiny():
    """One tiny model (eval mode, 10 classes) shared by the read-only tests: on a contended CPU
    the cost is XLA compiling each eager op once, so tests reuse shapes where they can."""
    return _tiny(num_classes=10, rngs=0)


def _x(size=64, batch=2, seed=0):
    return jax.random.normal(jax.random.key(seed), (batch, size, size, 3), jnp.float32)


def _abstract(name, num_classes):
    entry = get_entry(name)
    return nnx.eval_shape(
        lambda: entry.builder(entry.cfg, num_classes=num_classes, rngs=nnx.Rngs(0), dtype=None)
    )


def _manifest_sd(name="tiny_vit_5m_224", num_classes=1000):
    """A timm-layout state dict for ``name`` from its fixture manifest (timm's names and shapes),
    with the classifier resized to ``num_classes``."""
    meta, _ = load_fixture(FIXTURE_DIR / f"{name}@224.npz")
    manifest = []
    for k, shape in meta["manifest"]:
        if k == "head.fc.weight":
            shape = [num_classes, shape[1]]
        elif k == "head.fc.bias":
            shape = [num_classes]
        manifest.append((k, shape))
    return build_state_dict(manifest, meta["seed"])


@pytest.mark.parametrize("name", sorted(TIMM_PARAMS))
def test_parameter_counts_equal_timm(name):
    for num_classes, expected in zip((1000, 21841, 0), TIMM_PARAMS[name]):
        assert count_params(_abstract(name, num_classes)) == expected, (name, num_classes)


def test_model_info_carries_timm_default_cfg():
    info = edgejax.model_info("tiny_vit_21m_224")
    assert info["hf_hub_id"] == "timm/tiny_vit_21m_224.dist_in22k"
    assert info["num_classes"] == 21841  # the default tag's head
    assert info["crop_pct"] == 0.95 and info["interpolation"] == "bicubic"
    assert info["num_params"] == 21_198_568  # counted with a 1000-class head
    info = edgejax.model_info("tiny_vit_21m_512")
    assert info["input_size"] == (3, 512, 512) and info["crop_pct"] == 1.0
    assert info["crop_mode"] == "squash" and info["num_classes"] == 1000


@pytest.mark.parametrize("ws", [1, 2, 3, 7])
def test_relative_bias_index_matches_first_seen_offset_numbering(ws):
    # timm/Cream: number the distinct (|dy|, |dx|) offsets in first-seen order over token pairs.
    points = list(itertools.product(range(ws), range(ws)))
    seen, idxs = {}, []
    for p1 in points:
        for p2 in points:
            off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            idxs.append(seen.setdefault(off, len(seen)))
    expected = np.array(idxs).reshape(ws * ws, ws * ws)
    np.testing.assert_array_equal(tv.relative_bias_index(ws), expected)


def test_state_dict_keys_are_timm_keys():
    meta, _ = load_fixture(FIXTURE_DIR / "tiny_vit_5m_224@224.npz")
    model = from_timm("tiny_vit_5m_224", build_state_dict(meta["manifest"], meta["seed"]))
    got = to_timm(model)
    assert set(got) == {k for k, _ in meta["manifest"]}
    for k, shape in meta["manifest"]:
        assert list(got[k].shape) == list(shape), k


def test_from_timm_infers_the_21841_class_head():
    sd = _manifest_sd(num_classes=21841)
    model = from_timm("tiny_vit_5m_224", sd)
    assert model.num_classes == 21841
    assert model.head.fc.kernel.shape == (320, 21841)
    np.testing.assert_array_equal(np.asarray(model.head.fc.kernel[...]), sd["head.fc.weight"].T)
    assert count_params(model) == TIMM_PARAMS["tiny_vit_5m_224"][1]


def _to_microsoft_layout(sd):
    """timm keys -> Cream/TinyViT (Microsoft) keys, written independently of ``timm_remap``."""
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        parts = ["c" if p == "conv" else p for p in parts]  # ConvNorm.conv -> Conv2d_BN.c
        if parts[:2] == ["patch_embed", "conv1"]:
            parts[1:2] = ["seq", "0"]
        elif parts[:2] == ["patch_embed", "conv2"]:
            parts[1:2] = ["seq", "2"]
        elif parts[0] == "stages":
            i = int(parts[1])
            if parts[2] == "downsample":
                i -= 1  # MS merges patches at the end of the previous stage
            parts[:2] = ["layers", str(i)]
        elif parts[:2] == ["head", "norm"]:
            parts[:2] = ["norm_head"]
        elif parts[:2] == ["head", "fc"]:
            parts[:2] = ["head"]
        out[".".join(parts)] = v
        if k.endswith("attn.attention_biases"):  # MS checkpoints carry the index buffer
            n = v.shape[1]
            out[".".join(parts[:-1] + ["attention_bias_idxs"])] = np.zeros((n, n), np.int64)
    return out


def test_microsoft_checkpoint_layout_loads_via_timm_remap():
    sd = _manifest_sd(num_classes=21841)
    ms = _to_microsoft_layout(sd)
    assert "layers.0.downsample.c.conv1.weight" not in ms  # sanity of the helper
    assert "layers.0.downsample.conv1.c.weight" in ms and "norm_head.weight" in ms
    model = from_timm("tiny_vit_5m_224", ms)
    assert model.num_classes == 21841  # inferred through the remapped MS head
    back = to_timm(model)
    assert set(back) == set(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k], err_msg=k)


def test_timm_keys_pass_timm_remap_unchanged(tiny):
    model = tiny
    for k in to_timm(model):
        assert model.timm_remap(k) == k


def test_init_follows_timm(tiny):
    model = tiny
    for blk in model.stages[0].blocks:  # MBConv: last BN starts at zero
        assert not np.any(np.asarray(blk.conv3.bn.scale[...]))
        assert np.all(np.asarray(blk.conv1.bn.scale[...]) == 1)
    attn = model.stages[1].blocks[0].attn
    assert attn.attention_biases.shape == (2, 9)
    assert not np.any(np.asarray(attn.attention_biases[...]))
    # Linear layers: truncated normal, std 0.02 (timm trunc_normal_(std=.02)), zero bias. The
    # shared Linear truncates at 2 std without rescaling, so the sample std is ~0.0176.
    w = np.asarray(model.stages[2].blocks[0].mlp.fc1.kernel[...])
    assert 0.016 < w.std() < 0.021 and abs(w.mean()) < 2e-3
    assert not np.any(np.asarray(model.stages[2].blocks[0].mlp.fc1.bias[...]))
    # Convs keep torch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    k = np.asarray(model.stages[0].blocks[0].conv1.conv.kernel[...])  # 1x1, fan_in 16
    assert np.abs(k).max() <= 0.25 and k.std() > 0.1
    assert model.stages[1].downsample.conv1.bn.eps == 1e-5
    assert model.head.norm.eps == 1e-5 and model.stages[1].blocks[0].attn.norm.eps == 1e-5
    assert model.stages[1].blocks[0].mlp.norm.eps == 1e-5


def test_forward_shapes_and_features(tiny):
    x = _x()
    assert fwd(tiny, x).shape == (2, 10)
    feats = features(tiny, x)
    assert feats.shape == (2, 2, 2, 48)
    # Odd sizes round up at every stride-2 conv (50 -> 25 -> 13 -> 7 -> 4 -> 2), windows pad.
    odd = jax.eval_shape(tiny.forward_features, jax.ShapeDtypeStruct((1, 50, 50, 3), jnp.float32))
    assert odd.shape == (1, 2, 2, 48)
    # pre_logits: pooled features after the head LayerNorm (scale 1, bias 0 at init).
    pre = tiny.forward_head(feats, pre_logits=True)
    np.testing.assert_allclose(pre, tiny.head.norm(feats.mean((1, 2))), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(pre).mean(-1), 0, atol=1e-5)
    headless = _tiny(num_classes=0, rngs=0)
    assert headless.head.fc is None and headless.num_features == 48
    np.testing.assert_allclose(fwd(headless, x), pre, rtol=1e-5, atol=1e-5)


def test_bad_configs_raise_clear_errors():
    # (bad inputs: tests/test_models.py)
    with pytest.raises(TypeError, match="unexpected keyword argument 'window_size'"):
        edgejax.create_model("tiny_vit_5m_224", window_size=8)
    with pytest.raises(ValueError, match="one entry per stage"):
        _tiny(depths=(1, 1, 1))


def test_window_padding_is_cropped_and_unmasked():
    """A block on a 5x5 map with 7x7 windows: the map is zero-padded to 7x7, the padded tokens
    take part in attention (their LayerNorm output is the LN bias, not zero: timm does not mask
    them) and the result is cropped back to 5x5."""
    block = tv.TinyVitBlock(8, 2, window_size=7, rngs=nnx.Rngs(0))
    block.attn.norm.bias[...] = jnp.linspace(-1.0, 1.0, 8)
    block.attn.attention_biases[...] = jax.random.normal(jax.random.key(3), (2, 49))
    block.eval()
    window_attention = jax.jit(block._window_attention)  # one compile beats eager op compiles
    x = jax.random.normal(jax.random.key(4), (1, 5, 5, 8))
    assert jax.eval_shape(block, x).shape == x.shape
    padded = jnp.pad(x, ((0, 0), (0, 2), (0, 2), (0, 0)))
    out = window_attention(x)
    np.testing.assert_allclose(out, window_attention(padded)[:, :5, :5], rtol=1e-5, atol=1e-6)
    # Attention over the 25 real tokens alone (same weights, bias table of a 5x5 window: the
    # offsets |dy|*5+|dx| of a 5x5 window are the entries |dy|*7+|dx| of the 7x7 table).
    small = tv.Attention(8, 4, 2, 5, rngs=nnx.Rngs(0))
    small.norm, small.qkv, small.proj = block.attn.norm, block.attn.qkv, block.attn.proj
    keep = (np.arange(5)[:, None] * 7 + np.arange(5)[None, :]).reshape(-1)
    small.attention_biases[...] = block.attn.attention_biases[...][:, keep]
    only_real = jax.jit(small)(x.reshape(1, 25, 8)).reshape(1, 5, 5, 8)
    assert not np.allclose(np.asarray(only_real), np.asarray(out), atol=1e-4)
    # ...while on an exact 7x7 map the two paths agree (no padding, no difference).
    x7 = jax.random.normal(jax.random.key(5), (1, 7, 7, 8))
    np.testing.assert_allclose(
        window_attention(x7),
        jax.jit(block.attn)(x7.reshape(1, 49, 8)).reshape(1, 7, 7, 8),
        rtol=1e-5,
        atol=1e-6,
    )


def _modules(model):
    return nnx.iter_modules(model) if hasattr(nnx, "iter_modules") else model.iter_modules()


def test_every_conv_bn_pair_is_declared_for_folding(tiny):
    model = tiny
    pairs = 0
    for _, m in _modules(model):
        for conv, bn in getattr(type(m), "fuse_pairs", ()):
            assert isinstance(getattr(m, conv), Conv2d)
            assert isinstance(getattr(m, bn), BatchNorm2d)
            pairs += 1
    n_bn = sum(isinstance(m, BatchNorm2d) for _, m in _modules(model))
    assert pairs == n_bn > 0


def test_both_head_layouts_give_the_same_attention():
    # heads_along_channels (what ONNX export traces) against the default token-first layout,
    # for a window given as one map and as tokens (which it leaves token-first); and a whole
    # model, with several windows
    import jax
    import numpy as np
    from flax import nnx

    import edgejax
    from edgejax.models.tiny_vit import Attention

    attn = Attention(64, 16, 4, 7, rngs=nnx.Rngs(0))
    attn.attention_biases[...] = jax.random.normal(jax.random.PRNGKey(1), (4, 49))
    x = jax.random.normal(jax.random.PRNGKey(2), (3, 7, 7, 64))
    outs = {}
    for hc in (False, True):
        attn.heads_along_channels = hc
        outs[hc] = (np.asarray(attn(x)), np.asarray(attn(x.reshape(3, 49, 64))))
    for a, b in zip(outs[False], outs[True]):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outs[False][0].reshape(3, 49, 64), outs[False][1], atol=1e-6)
    model = edgejax.create_model("tiny_vit_5m_224", num_classes=10)
    model.eval()
    xm = jax.random.normal(jax.random.PRNGKey(3), (2, 112, 112, 3))
    ref = np.asarray(model(xm))
    for _, m in nnx.iter_graph(model):
        if isinstance(m, Attention):
            m.heads_along_channels = True
    np.testing.assert_allclose(np.asarray(model(xm)), ref, rtol=1e-4, atol=1e-5)
