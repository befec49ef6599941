"""edgejax.deploy.fuse: outputs unchanged, parameter counts as expected, for every paper model."""

import jax
import numpy as np
import pytest
from flax import nnx

import edgejax
from edgejax.bench import PAPER_MODELS, build_model
from edgejax.deploy import _fuse_inplace, fuse, unfused_batchnorms
from edgejax.layers import BatchNorm2d

# timm's / the porting spec's counts; deploy: RepVGG re-parameterised, BNs folded, ConvNeXt's
# layer scales folded.
TRAIN_PARAMS = {
    "efficientnetv2_s": 21_458_488,
    "tf_efficientnetv2_s": 21_458_488,
    "convnext_tiny": 28_589_128,
    "mobilevitv2_050": 1_370_593,
    "mobilevitv2_075": 2_866_009,
    "mobilevitv2_100": 4_901_841,
    "mobilenetv3_large_100": 5_483_032,
    "tiny_vit_21m_224": 21_198_568,
    "repvgg_a2": 28_210_600,
}
SLOW = {
    "efficientnetv2_s",
    "tf_efficientnetv2_s",
    "convnext_tiny",
    "tiny_vit_21m_224",
    "mobilevitv2_075",
    "mobilevitv2_100",
}


def _bn_channels(model):
    return sum(m.num_features for _, m in nnx.iter_modules(model) if isinstance(m, BatchNorm2d))


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_fused_param_counts(name):
    # Abstract (no compute): structure of create_model -> fuse.
    model = nnx.eval_shape(lambda: edgejax.create_model(name))
    fused = nnx.eval_shape(lambda: fuse(edgejax.create_model(name)))
    n, nf = edgejax.count_params(model), edgejax.count_params(fused)
    assert n == TRAIN_PARAMS[name]
    assert unfused_batchnorms(fused) == []  # every BatchNorm folded into its conv
    if name == "repvgg_a2":
        assert nf == 25_499_944
    elif name == "convnext_tiny":
        # no BatchNorm; each block's layer scale (one per channel) is folded into its fc2
        assert nf == n - (3 * 96 + 3 * 192 + 9 * 384 + 3 * 768) == 28_582_504
    else:
        # each folded BN keeps its bias (as the conv bias) and drops its scale
        assert nf == n - _bn_channels(model)
    if name == "tiny_vit_21m_224":
        assert 9_000 < n - nf < 9_400  # porting spec: -9.2k


def _outputs_before_after(model, x):
    """Eval outputs of ``model`` and of its fused form, in one compiled program (the transform
    that ``fuse`` jits)."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def both(state, x):
        m = nnx.merge(graphdef, state)
        return m(x), _fuse_inplace(m)(x)

    return both(state, x)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in PAPER_MODELS]
)
def test_fused_outputs_equal(name):
    model = build_model(name)  # random weights and random BatchNorm statistics
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 64, 64, 3))
    y, yf = _outputs_before_after(model, x)
    err = float(np.max(np.abs(np.asarray(y) - np.asarray(yf))) / np.max(np.abs(np.asarray(y))))
    assert err <= 1e-5, err


@pytest.mark.parametrize("name", ["convnext_atto", "convnext_zepto_rms_ols", "convnext_tiny"])
def test_convnext_channels_first_stages_equal(name):
    # conv_mlp (atto: 1x1 Conv2d MLP), SimpleNorm and the overlap_act stem (zepto_rms_ols), Linear
    # MLP (tiny); with and
    # without the layer scale folded in. channels_first is what the ONNX export traces.
    from edgejax.layers import channels_first

    model = build_model(name)
    fused = fuse(model)
    assert all(b.gamma is None for st in fused.stages for b in st.blocks)
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 64, 64, 3))
    run = lambda m: np.asarray(
        jax.jit(lambda s, x: nnx.merge(nnx.graphdef(m), s)(x))(nnx.state(m), x)
    )
    y = run(model)
    for m in (model, fused):
        with channels_first():
            y_cf = run(m)
        assert np.max(np.abs(y_cf - y)) / np.max(np.abs(y)) <= 1e-5
    # every conv ran on an NCHW map: stem, 3 downsamples, each block's dw, fc1, fc2
    n_convs = (
        sum(isinstance(m, edgejax.layers.Conv2d) for m in fused.stem)
        + 3
        + 3 * sum(len(st.blocks) for st in model.stages)
    )
    with channels_first():
        specs = _conv_lhs_specs(jax.make_jaxpr(lambda x: fused(x))(x).jaxpr)
    assert specs == [(0, 1, 2, 3)] * n_convs


def test_tiny_vit_channels_first_stages_equal():
    # 112 px: stage 1 is 14x14 with 7x7 windows (four windows: the stage stays channels-last),
    # stage 2 one padded 14x14 window, stage 3 one padded 7x7 window (both run in NCHW);
    # call_nchw's several-window branch is checked directly below.
    from edgejax.layers import channels_first

    model = build_model("tiny_vit_5m_224")
    fused = fuse(model)
    assert all(b.attn.scale == 1.0 for st in fused.stages[1:] for b in st.blocks)  # folded
    x = jax.random.normal(jax.random.PRNGKey(3), (2, 112, 112, 3))
    run = lambda m: np.asarray(
        jax.jit(lambda s, x: nnx.merge(nnx.graphdef(m), s)(x))(nnx.state(m), x)
    )
    y = run(model)
    for m in (model, fused):
        for cf in (False, True):
            with channels_first(cf):
                y2 = run(m)
            assert np.max(np.abs(y2 - y)) / np.max(np.abs(y)) <= 1e-5, (m is fused, cf)
    with channels_first():
        specs = _conv_lhs_specs(jax.make_jaxpr(lambda x: fused(x))(x).jaxpr)
    # stages 2 and 3: per block the local conv, MLP fc1/fc2, attention qkv/proj
    assert specs.count((0, 1, 2, 3)) == 5 * sum(len(st.blocks) for st in model.stages[2:])
    # a several-window map through call_nchw equals the channels-last block
    blk = fused.stages[1].blocks[0]
    xm = jax.random.normal(jax.random.PRNGKey(4), (1, 15, 13, blk.dim))  # 3x2 windows, padded
    ref = np.asarray(blk(xm))
    got = np.asarray(blk.call_nchw(xm.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1))
    assert np.max(np.abs(got - ref)) / np.max(np.abs(ref)) <= 1e-5


def _conv_lhs_specs(jaxpr):
    """The input layout (``lhs_spec``) of every convolution in ``jaxpr``, nested ones included."""
    out = []
    for e in jaxpr.eqns:
        if e.primitive.name == "conv_general_dilated":
            out.append(tuple(e.params["dimension_numbers"].lhs_spec))
        for v in e.params.values():
            inner = getattr(v, "jaxpr", None)
            if inner is not None:
                out += _conv_lhs_specs(getattr(inner, "jaxpr", inner))
    return out


def test_fuse_public_api_repvgg():
    model = build_model("repvgg_a0")
    fused = fuse(model)
    assert edgejax.count_params(fused) < edgejax.count_params(model)
    assert all(b.reparam_conv is None for b in model.stages[0])  # input untouched
    assert all(b.reparam_conv is not None for b in fused.stages[0])
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
    run = lambda m: np.asarray(
        jax.jit(lambda s, x: nnx.merge(nnx.graphdef(m), s)(x))(nnx.state(m), x)
    )
    y, yf = run(model), run(fused)
    assert np.max(np.abs(y - yf)) / np.max(np.abs(y)) <= 1e-5
    # fusing twice is a no-op
    assert edgejax.count_params(fuse(fused)) == edgejax.count_params(fused)
    # inplace transforms the given object
    same = fuse(model, inplace=True)
    assert same is model and model.stages[0][0].reparam_conv is not None
