"""Leaf layers: the CPU depthwise-conv path (shifted multiply-adds) and LiteRT's (bands of at
most 25 taps) against XLA's grouped conv."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import edgejax
from edgejax.layers import Conv2d

CASES = [  # kernel, stride, padding (None = timm symmetric), dilation, input size
    (3, 1, None, 1, 9),
    (3, 2, None, 1, 9),
    (5, 2, None, 1, 10),
    (7, 1, None, 1, 8),
    (3, 1, "same", 1, 9),
    (5, 2, "same", 1, 10),
    (3, 2, "same", 1, 8),
    (3, 1, None, 2, 11),
    ((3, 5), 1, None, 1, 9),
    (7, 2, "same", 1, 12),
    (7, 1, None, 2, 16),
    (7, 1, None, 1, 1),  # a 1x2 map: bands that read only padding are left out
]


def _run(conv, x, impl):
    with edgejax.depthwise_impl(conv, impl):
        graphdef, state = nnx.split(conv)  # the graph keeps the setting
        out = conv(x)

    def loss(state, x):
        return jnp.sum(jnp.sin(nnx.merge(graphdef, state)(x)))

    gs, gx = jax.grad(loss, argnums=(0, 1))(state, x)
    return out, gs["kernel"][...], gs["bias"][...], gx


@pytest.mark.parametrize("impl", ["shift", "bands"])
@pytest.mark.parametrize("k,s,p,d,size", CASES)
def test_depthwise_forms_equal_grouped_conv(k, s, p, d, size, impl):
    c = 6
    conv = Conv2d(c, c, k, stride=s, padding=p, dilation=d, groups=c, bias=True, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, size, size + 1, c)), jnp.float32)
    ref = _run(conv, x, "conv")
    got = _run(conv, x, impl)
    assert got[0].shape == ref[0].shape
    for a, b in zip(got, ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_depthwise_choice_lives_in_the_layer():
    def traced(m):
        return str(jax.make_jaxpr(lambda v: m(v))(jnp.ones((1, 5, 5, 8))))

    # bands: a 7x7 kernel as three grouped convs of 3, 3 and 1 rows (21, 21, 7 taps); 5x5 as one
    for k, convs in ((7, 3), (5, 1)):
        m = Conv2d(8, 8, k, groups=8, depthwise="bands", rngs=nnx.Rngs(0))
        assert traced(m).count("conv_general_dilated[") == convs, k

    conv = Conv2d(8, 8, 3, groups=2, rngs=nnx.Rngs(0))  # grouped, not depthwise: always a conv
    with edgejax.depthwise_impl(conv, "shift"):
        assert "conv_general_dilated" in traced(conv)
    dw = Conv2d(8, 8, 3, groups=8, rngs=nnx.Rngs(0))
    assert dw.depthwise == "auto"
    # auto on the CPU backend (the tests' backend): the shifted form
    assert jax.default_backend() != "cpu" or "conv_general_dilated" not in traced(dw)
    assert "conv_general_dilated" in traced(
        Conv2d(8, 8, 3, groups=8, depthwise="conv", rngs=nnx.Rngs(0))
    )
    # set on a whole model, per layer, and undone after the block; another model is untouched
    model, other = (
        nnx.List([dw, Conv2d(8, 8, 1, rngs=nnx.Rngs(1))]),
        Conv2d(8, 8, 3, groups=8, rngs=nnx.Rngs(2)),
    )
    with edgejax.depthwise_impl(model, "conv"):
        assert model[0].depthwise == model[1].depthwise == "conv"
        assert "conv_general_dilated" in traced(dw)
        assert other.depthwise == "auto"
    assert model[0].depthwise == model[1].depthwise == "auto"
    with pytest.raises(ValueError, match="depthwise impl must be one of"):
        edgejax.set_depthwise_impl(model, "fast")
    with pytest.raises(ValueError, match="depthwise impl must be one of"):
        Conv2d(8, 8, 3, groups=8, depthwise="fast", rngs=nnx.Rngs(0))
    assert model[0].depthwise == "auto"  # a refused setting changes nothing
