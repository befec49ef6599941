"""EfficientNetV2 family tests (numeric equivalence with timm lives in test_timm_equivalence.py)."""

from __future__ import annotations

import numpy as np
import pytest
import jax
from flax import nnx

from jitted import fwd
import edgejax
from edgejax.layers import BatchNorm2d
from edgejax.models._efficientnet_blocks import (
    BlockDef,
    ConvBnAct,
    EdgeResidual,
    GlobalContext,
    InvertedResidual,
    er,
    scale_stage_depth,
)
from edgejax.registry import model_info
from test_mobilenetv3 import (
    abstract_model,
    assert_every_param_has_grad,
    fold_bn_everywhere,
    randomize_bn_stats,
)

# timm 1.0.31, 1000-class head.
PARAMS = {
    "efficientnetv2_rw_t": 13_649_388,
    "gc_efficientnetv2_rw_t": 13_677_713,
    "efficientnetv2_rw_s": 23_941_296,
    "efficientnetv2_rw_m": 53_236_442,
    "efficientnetv2_s": 21_458_488,
    "efficientnetv2_m": 54_139_356,
    "efficientnetv2_l": 118_515_272,
    "efficientnetv2_xl": 208_119_808,
    "tf_efficientnetv2_s": 21_458_488,
    "tf_efficientnetv2_m": 54_139_356,
    "tf_efficientnetv2_l": 118_515_272,
    "tf_efficientnetv2_xl": 208_119_808,
    "tf_efficientnetv2_b0": 7_139_704,
    "tf_efficientnetv2_b1": 8_141_052,
    "tf_efficientnetv2_b2": 10_096_086,
    "tf_efficientnetv2_b3": 14_358_406,
}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_param_count(name):
    assert model_info(name)["num_params"] == PARAMS[name]


def test_efficientnetv2_s_structure():
    m = abstract_model("efficientnetv2_s")
    assert [len(s) for s in m.blocks] == [2, 4, 4, 6, 9, 15]
    assert all(isinstance(b, ConvBnAct) and b.has_skip for b in m.blocks[0])
    assert all(isinstance(b, EdgeResidual) for s in m.blocks[1:3] for b in s)
    assert not m.blocks[1][0].has_skip and m.blocks[1][1].has_skip
    assert all(isinstance(b, InvertedResidual) for s in m.blocks[3:] for b in s)
    # SE reduced width = round(block_in / 4), i.e. from the block input, not the expansion.
    se = [[b.se.conv_reduce.out_chs for b in s] for s in m.blocks[3:]]
    assert se[0] == [16] + [32] * 5 and se[1] == [32] + [40] * 8 and se[2] == [40] + [64] * 14
    assert m.blocks[3][0].se.act == "silu" and m.blocks[3][0].se.gate == "sigmoid"
    assert m.conv_head.bias is None and m.bn2.num_features == 1280
    assert m.conv_stem.padding == ((1, 1), (1, 1)) and m.bn1.eps == 1e-5
    tf = abstract_model("tf_efficientnetv2_s")
    assert tf.conv_stem.padding == "SAME" and tf.bn2.eps == 1e-3


def test_depth_scaling_matches_timm():
    # timm: efficientnetv2_rw_t (depth 0.9) has stages 2, 4, 4, 6, 9, 14 (ceil per stage).
    assert [len(s) for s in abstract_model("efficientnetv2_rw_t").blocks] == [2, 4, 4, 6, 9, 14]
    assert [len(s) for s in abstract_model("tf_efficientnetv2_b3").blocks] == [2, 3, 3, 5, 7, 12]
    # Redistribution runs from the last definition backwards.
    defs = (er(1, k=3, s=2, e=4, c=8), er(2, k=3, s=1, e=4, c=8))
    assert len(scale_stage_depth(defs, 1.5)) == 5
    with pytest.raises(ValueError, match="stride"):
        BlockDef("ir", 1, 3, 3, 8)


def test_gc_variant_uses_global_context():
    m = abstract_model("gc_efficientnetv2_rw_t")
    gc = m.blocks[3][0].se
    assert isinstance(gc, GlobalContext)
    assert gc.mlp_scale.fc1.out_chs == 12  # make_divisible(48 * 0.25, 1)


@pytest.fixture(scope="module")
def b0():
    m = edgejax.create_model("tf_efficientnetv2_b0", rngs=0)
    randomize_bn_stats(m, seed=5)
    return m


def _x(size=64, batch=2, seed=0):
    return jax.random.normal(jax.random.key(seed), (batch, size, size, 3))


def test_fuse_pairs_fold_exactly(b0):
    x = _x()
    ref = fwd(b0, x)
    fused, n = fold_bn_everywhere(b0)
    assert n == sum(isinstance(m, BatchNorm2d) for _, m in nnx.iter_modules(b0))
    np.testing.assert_allclose(np.asarray(fwd(fused, x)), np.asarray(ref), rtol=1e-4, atol=1e-4)


# tf_efficientnetv2_b0's gradients are also checked from timm weights in the default suite
# (test_timm_equivalence.py); global context only here.
@pytest.mark.parametrize(
    "name", [pytest.param("tf_efficientnetv2_b0", marks=pytest.mark.slow), "gc_efficientnetv2_rw_t"]
)
def test_every_parameter_gets_a_gradient(name):
    # GlobalContext's conv_attn has one output channel feeding a softmax over positions, which is
    # shift invariant: its bias has a zero gradient by construction (in timm too).
    assert_every_param_has_grad(edgejax.create_model(name, rngs=0), exempt=("se.conv_attn.bias",))
