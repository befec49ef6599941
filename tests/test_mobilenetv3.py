"""MobileNetV3 family tests (numeric equivalence with timm lives in test_timm_equivalence.py)."""

from __future__ import annotations

import numpy as np
import pytest
import jax
import jax.numpy as jnp
from flax import nnx

from jitted import fwd
import edgejax
from edgejax.layers import BatchNorm2d, Conv2d
from edgejax.models._efficientnet_blocks import DepthwiseSeparable, InvertedResidual
from edgejax.registry import get_entry, model_info
from edgejax.layers import Identity

# timm 1.0.31, 1000-class head.
PARAMS = {
    "mobilenetv3_large_075": 3_993_528,
    "mobilenetv3_large_100": 5_483_032,
    "mobilenetv3_large_150d": 14_622_320,
    "mobilenetv3_rw": 5_479_918,
    "mobilenetv3_small_050": 1_593_224,
    "mobilenetv3_small_075": 2_041_872,
    "mobilenetv3_small_100": 2_542_856,
    "tf_mobilenetv3_large_075": 3_993_528,
    "tf_mobilenetv3_large_100": 5_483_032,
    "tf_mobilenetv3_large_minimal_100": 3_924_288,
    "tf_mobilenetv3_small_075": 2_041_872,
    "tf_mobilenetv3_small_100": 2_542_856,
    "tf_mobilenetv3_small_minimal_100": 2_044_736,
}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_param_count(name):
    assert model_info(name)["num_params"] == PARAMS[name]


def test_large_100_structure():
    m = abstract_model("mobilenetv3_large_100")
    # Name trap: DS bn1 follows conv_dw (16 ch), IR bn1 follows conv_pw (expanded, 64 ch).
    ds_block, ir_block = m.blocks[0][0], m.blocks[1][0]
    assert isinstance(ds_block, DepthwiseSeparable) and ds_block.bn1.num_features == 16
    assert isinstance(ir_block, InvertedResidual) and ir_block.bn1.num_features == 64
    assert ds_block.has_skip and not ir_block.has_skip
    # SE reduced = make_divisible(mid / 4, 8): 72 -> 24, 120 -> 32, 480 -> 120, 672 -> 168.
    assert [b.se.conv_reduce.out_chs for b in m.blocks[2]] == [24, 32, 32]
    assert [b.se.conv_reduce.out_chs for b in m.blocks[4]] == [120, 168]
    assert m.blocks[2][0].se.act == "relu" and m.blocks[2][0].se.gate == "hard_sigmoid"
    assert m.blocks[4][0].act == "hard_swish" and m.blocks[2][0].act == "relu"
    # Efficient head: conv_head 960 -> 1280 with bias and no BatchNorm.
    assert m.num_features == 960 and m.head_hidden_size == 1280
    assert m.conv_head.bias is not None and not hasattr(m, "bn2")
    assert m.conv_stem.padding == ((1, 1), (1, 1)) and m.bn1.eps == 1e-5


def test_tf_and_rw_variants():
    tf = abstract_model("tf_mobilenetv3_large_100")
    assert tf.conv_stem.padding == "SAME" and tf.bn1.eps == 1e-3
    assert tf.blocks[3][0].conv_dw.padding == "SAME"
    rw = abstract_model("mobilenetv3_rw")
    assert rw.conv_head.bias is None and rw.bn1.eps == 1e-3
    assert not rw.blocks[0][0].has_skip  # ds ... noskip
    # rw SE: round(72 / 4) = 18 and the block's own activation.
    assert rw.blocks[2][0].se.conv_reduce.out_chs == 18 and rw.blocks[2][0].se.act == "relu"
    assert rw.blocks[4][0].se.act == "hard_swish"
    small = abstract_model("mobilenetv3_small_050")
    assert small.conv_stem.out_chs == 16  # fix_stem below width 0.75


@pytest.fixture(scope="module")
def small_model():
    m = edgejax.create_model("mobilenetv3_small_075", rngs=0)
    randomize_bn_stats(m, seed=3)
    return m


def _x(size=64, batch=2, seed=0):
    return jax.random.normal(jax.random.key(seed), (batch, size, size, 3))


def test_fuse_pairs_fold_exactly(small_model):
    """Every declared (conv, bn) pair is conv directly followed by BN: folding all of them
    leaves the eval outputs unchanged."""
    x = _x()
    ref = fwd(small_model, x)
    fused, n = fold_bn_everywhere(small_model)
    assert n == sum(isinstance(m, BatchNorm2d) for _, m in nnx.iter_modules(small_model))
    np.testing.assert_allclose(np.asarray(fwd(fused, x)), np.asarray(ref), rtol=1e-4, atol=1e-4)


# From random init; mobilenetv3_small_050's gradients are checked from timm weights in the
# default suite (test_timm_equivalence.py), these two with -m slow.
@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenetv3_small_100", "mobilenetv3_rw"])
def test_every_parameter_gets_a_gradient(name):
    assert_every_param_has_grad(edgejax.create_model(name, rngs=0))


# ----------------------------------------------------------------------------------------------
# Helpers shared with test_efficientnet.py (same blocks)
# ----------------------------------------------------------------------------------------------


def abstract_model(name: str):
    """The model's structure without running initialisers (cheap for the big variants)."""
    entry = get_entry(name)
    return nnx.eval_shape(
        lambda: entry.builder(entry.cfg, num_classes=1000, rngs=nnx.Rngs(0), dtype=None)
    )


def randomize_bn_stats(model, seed: int = 0) -> None:
    """Non-trivial BatchNorm affine parameters and running statistics, so folding is exercised."""
    rng = np.random.default_rng(seed)
    for _, m in nnx.iter_modules(model):
        if isinstance(m, BatchNorm2d):
            c = m.num_features
            m.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, c), jnp.float32)
            m.bias[...] = jnp.asarray(rng.normal(0, 0.1, c), jnp.float32)
            m.mean[...] = jnp.asarray(rng.normal(0, 0.2, c), jnp.float32)
            m.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, c), jnp.float32)


def fold_bn_everywhere(model):
    """A copy of ``model`` (eval mode) with every declared ``fuse_pairs`` BN folded into its conv;
    returns (copy, number of folded pairs)."""
    fused = nnx.clone(model)
    fused.eval()
    n = 0
    for _, mod in list(nnx.iter_modules(fused)):
        for conv_name, bn_name in getattr(type(mod), "fuse_pairs", ()):
            conv, bn = getattr(mod, conv_name), getattr(mod, bn_name)
            assert isinstance(conv, Conv2d) and isinstance(bn, BatchNorm2d), (conv_name, bn_name)
            s = bn.scale[...] * jax.lax.rsqrt(bn.var[...] + bn.eps)
            b = conv.bias[...] if conv.bias is not None else 0.0
            conv.kernel[...] = conv.kernel[...] * s
            # A bias-free Conv2d holds bias=None as a static attribute: nnx.data makes it a leaf.
            conv.bias = nnx.data(nnx.Param(bn.bias[...] + (b - bn.mean[...]) * s))
            setattr(mod, bn_name, Identity())
            n += 1
    return fused, n


def assert_every_param_has_grad(model, size: int = 64, exempt: tuple[str, ...] = ()) -> None:
    """Train mode: d(sum(logits * w))/d(param) is non-zero for every parameter whose path does
    not end with one of ``exempt``."""
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x = jax.random.normal(jax.random.key(1), (2, size, size, 3))
    w = jax.random.normal(jax.random.key(2), (2, model.num_classes))

    @jax.jit
    def loss_fn(params, rest):  # rest passed in: BN mutates its statistics inside the trace
        return jnp.sum(nnx.merge(graphdef, params, rest)(x) * w)

    grads = jax.grad(loss_fn)(params, rest)
    zero = [
        ".".join(map(str, k))
        for k, v in nnx.to_flat_state(grads)
        if not np.any(np.asarray(v[...]) != 0)
    ]
    zero = [k for k in zero if not k.endswith(exempt)]
    assert not zero, f"parameters with zero gradient: {zero[:20]}"
