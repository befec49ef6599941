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
