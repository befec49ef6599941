"""RepVGG: registry, parameter counts, re-parameterisation, bad input."""

import numpy as np
import pytest
import jax
from flax import nnx

import edgejax


# One BatchNorm randomiser for the conv families' tests (same draws as before).
from test_mobilenetv3 import randomize_bn_stats as _randomise_bn  # noqa: E402


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# Every RepVGG variant timm registers (tests/test_models.py checks they are registered).
NAMES = [
    "repvgg_a0",
    "repvgg_a1",
    "repvgg_a2",
    "repvgg_b0",
    "repvgg_b1",
    "repvgg_b1g4",
    "repvgg_b2",
    "repvgg_b2g4",
    "repvgg_b3",
    "repvgg_b3g4",
    "repvgg_d2se",
]


@pytest.mark.parametrize(
    "name,train_params,deploy_params",
    [
        ("repvgg_a2", 28_210_600, 25_499_944),
        ("repvgg_a0", 9_108_968, None),
        ("repvgg_b1g4", 39_966_056, None),
    ],
)
def test_param_counts(name, train_params, deploy_params):
    assert edgejax.model_info(name)["num_params"] == train_params
    if deploy_params:
        model = nnx.eval_shape(lambda: edgejax.create_model(name))
        assert edgejax.count_params(model) == train_params


@pytest.mark.parametrize("name,size", [("repvgg_a2", 224), ("repvgg_b1g4", 64)])
def test_reparameterize_matches(name, size):
    model = edgejax.create_model(name, rngs=0)
    _randomise_bn(model)
    x = jax.random.normal(jax.random.key(0), (2, size, size, 3))
    ref = jax.jit(lambda m, x: m(x))(model, x)
    fused = edgejax.reparameterize(model)
    out = jax.jit(lambda m, x: m(x))(fused, x)
    err = rel_err(out, ref)
    assert err <= 1e-5, err
    # the original is untouched, the fused one has no multi-branch block left
    assert model.stages[0][0].conv_kxk is not None
    assert all(b.reparam_conv is not None and b.conv_kxk is None for s in fused.stages for b in s)
    if name == "repvgg_a2":
        assert edgejax.count_params(fused) == 25_499_944


@pytest.mark.parametrize(
    "in_chs,out_chs,stride,groups,se",
    [(64, 64, 1, 1, 0.0625), (64, 64, 1, 4, 0.0), (32, 64, 2, 1, 0.0625), (3, 48, 2, 1, 0.0)],
)
def test_block_reparameterize_matches(in_chs, out_chs, stride, groups, se):
    """Block level, every branch combination (identity or not, grouped, with SE as in d2se).
    Whole deep random-BN nets amplify float rounding (d2se: 47 blocks), so blocks are exact here."""
    from edgejax.models.repvgg import RepVggBlock

    block = RepVggBlock(
        in_chs, out_chs, stride=stride, groups=groups, se_ratio=se, rngs=nnx.Rngs(0)
    )
    _randomise_bn(block)
    block.eval()
    x = jax.random.normal(jax.random.key(0), (2, 16, 16, in_chs))
    ref = block(x)
    block.reparameterize()
    assert rel_err(block(x), ref) <= 1e-6


def test_deploy_keys_match_timm_names():
    fused = edgejax.reparameterize(edgejax.create_model("repvgg_a0", rngs=0))
    keys = edgejax.convert.to_timm(fused)
    assert "stem.reparam_conv.weight" in keys and "stages.3.0.reparam_conv.bias" in keys
    assert not any("conv_kxk" in k or "identity" in k for k in keys)
