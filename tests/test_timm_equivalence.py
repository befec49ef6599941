"""Numeric equivalence with timm, from the fixtures written by tools/make_timm_fixtures.py.

For every fixture: the state dict is rebuilt from its manifest and seed, converted with
``edgejax.convert.from_timm`` and run on CPU in float32. Asserted: parameter count equal to timm's;
eval logits rel err <= 1e-5; train-mode logits <= 1e-4; BatchNorm running statistics after one
train-mode forward equal timm's; every parameter receives a non-zero gradient.
"""

from __future__ import annotations

import numpy as np
import pytest
import jax
import jax.numpy as jnp
from flax import nnx

import edgejax
from edgejax.convert import from_timm
from edgejax.registry import count_params
from timm_fixture_lib import FIXTURE_DIR, build_state_dict, input_value, load_fixture, bn_summary

FIXTURES = sorted(FIXTURE_DIR.glob("*.npz"))

# The default suite (CI: 2 cores, ~15 minutes for everything) checks logits for the study's nine
# models and one variant per distinct block structure or code path of each family (below); every
# other fixture runs with `-m slow` (the same code paths at other widths, depths and resolutions).
LOGITS_DEFAULT = {
    # the study's models
    "efficientnetv2_s@288",
    "tf_efficientnetv2_s@300",
    "convnext_tiny@224",
    "mobilevitv2_050@256",
    "mobilevitv2_075@256",
    "mobilevitv2_100@256",
    "mobilenetv3_large_100@224",
    "tiny_vit_21m_224@224",
    "repvgg_a2@224",
    # other structures: off-default resolutions, overlapping stems, RMS norms, head-norm-first,
    # TF 'same' padding, global context, grouped RepVGG convs, MobileViT v1, minimal MobileNetV3
    "convnext_atto@160",
    "convnext_atto_ols@224",
    "convnext_zepto_rms_ols@224",
    "convnext_tiny_hnf@224",
    "efficientnetv2_rw_t@192",
    "tf_efficientnetv2_b0@192",
    "gc_efficientnetv2_rw_t@224",
    "mobilenetv3_small_050@224",
    "mobilenetv3_rw@224",
    "tf_mobilenetv3_large_minimal_100@224",
    "mobilevit_xxs@224",
    "repvgg_a0@160",
    "repvgg_b1g4@224",
    "tiny_vit_5m_224@256",
}
# The gradient check compiles a backward pass: in the default suite it runs on the smallest
# variant of each family (gc_efficientnetv2_rw_t's global context in test_efficientnet.py);
# `-m slow` runs it on every variant.
GRAD_DEFAULT = {
    "repvgg_a0",
    "mobilenetv3_small_050",
    "tf_efficientnetv2_b0",
    "convnext_atto",
    "mobilevitv2_050",
    "mobilevit_xxs",
    "tiny_vit_5m_224",
}


GRAD_EXEMPT = ("se.conv_attn.bias",)


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _param(path):
    slow = path.stem not in LOGITS_DEFAULT
    return pytest.param(path, id=path.stem, marks=[pytest.mark.slow] if slow else [])


def _grad_param(path):
    name = path.stem.split("@")[0]
    marks = [] if name in GRAD_DEFAULT else [pytest.mark.slow]
    return pytest.param(path, id=path.stem, marks=marks)


def _forward(model, x):
    """Jitted forward of ``model`` in its current mode; returns (logits, BatchNorm statistics)."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, x):
        m = nnx.merge(graphdef, state)
        return m(x), nnx.state(m, nnx.BatchStat)

    return run(state, x)


@pytest.fixture(scope="module")
def cpu_f32():
    with jax.default_device(jax.devices("cpu")[0]):
        yield


@pytest.mark.parametrize("path", [_param(p) for p in FIXTURES])
def test_matches_timm(path, cpu_f32):
    meta, ref = load_fixture(path)
    sd = build_state_dict(meta["manifest"], meta["seed"])
    model = from_timm(meta["name"], sd)
    assert count_params(model) == meta["num_params"], "parameter count differs from timm"
    x = jnp.asarray(input_value(meta["seed"], meta["batch"], 3, meta["size"]).transpose(0, 2, 3, 1))

    n = ref["eval_logits"].shape[1]  # fixtures store the first STORED_CLASSES logits
    err_eval = rel_err(_forward(model, x)[0][:, :n], ref["eval_logits"])
    assert err_eval <= 1e-5, f"eval rel err {err_eval:.2e}"

    model.train()
    logits, stats = _forward(model, x)
    err_train = rel_err(logits[:, :n], ref["train_logits"])
    assert err_train <= 1e-4, f"train rel err {err_train:.2e}"

    nnx.update(model, stats)
    running = edgejax.convert.to_timm(model)
    got = bn_summary(running, meta["bn_prefixes"])
    # Running means of deep layers are small differences of large activations: float32
    # summation order alone moves them by ~1e-5 absolute, hence the tolerance.
    np.testing.assert_allclose(
        got,
        ref["bn_after_train"],
        rtol=1e-3,
        atol=1e-4,
        err_msg="BatchNorm running statistics after a train forward",
    )
    print(f"{path.stem}: params {meta['num_params']:,} eval {err_eval:.2e} train {err_train:.2e}")


def _default_res(paths):
    """One fixture per model: the one at timm's default resolution."""
    import edgejax

    out = []
    for p in paths:
        name, size = p.stem.split("@")
        if edgejax.registry.get_entry(name).info["input_size"][-1] == int(size):
            out.append(p)
    return out


@pytest.mark.parametrize("path", [_grad_param(p) for p in _default_res(FIXTURES)])
def test_every_parameter_gets_a_gradient(path):
    """Train mode, fixture weights (random BN scales, no zero-initialised gates), a 96 px input."""
    meta, _ = load_fixture(path)
    model = from_timm(meta["name"], build_state_dict(meta["manifest"], meta["seed"]))
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    size = 96
    x = jax.random.normal(jax.random.key(1), (2, size, size, 3))
    w = jax.random.normal(jax.random.key(2), (2, model.num_classes))

    def loss_fn(params, rest):
        return jnp.sum(nnx.merge(graphdef, params, rest, copy=True)(x) * w)

    grads = jax.jit(jax.grad(loss_fn))(params, rest)
    flat = nnx.to_flat_state(grads)
    zero = [".".join(map(str, k)) for k, v in flat if not np.any(np.asarray(v[...]) != 0)]
    # GlobalContext's attention logit bias feeds a softmax over positions, which is
    # shift-invariant: its gradient is zero by construction (in timm too).
    zero = [k for k in zero if not k.endswith(GRAD_EXEMPT)]
    assert not zero, f"parameters with zero gradient: {zero[:20]}"
