"""What every family promises, one parametrized test each: its names registered, bad input named
before anything is traced, ``num_classes=0`` giving the pooled pre-logits features, bfloat16
compute close to float32 (parameters stay float32), drop path random in train mode only.

Each family file keeps its own numerics (structure, parameter counts, initialisation, folding);
equivalence with timm lives in test_timm_equivalence.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import edgejax
from jitted import fwd

# family: (a small variant, the names the family registers)
FAMILIES = {
    "repvgg": ("repvgg_a0", lambda: __import__("test_repvgg").NAMES),
    "mobilenetv3": ("mobilenetv3_small_050", lambda: __import__("test_mobilenetv3").PARAMS),
    "efficientnet": ("tf_efficientnetv2_b0", lambda: __import__("test_efficientnet").PARAMS),
    "convnext": ("convnext_atto", lambda: __import__("test_convnext").TIMM_PARAMS),
    "mobilevit": ("mobilevitv2_050", lambda: __import__("test_mobilevit").TIMM_PARAMS),
    "tiny_vit": ("tiny_vit_5m_224", lambda: __import__("test_tiny_vit").TIMM_PARAMS),
}
FAMILY_IDS = sorted(FAMILIES)


def _x(size=64, batch=2, seed=0):
    return jax.random.uniform(jax.random.key(seed), (batch, size, size, 3))


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_every_name_is_registered_by_exactly_one_family():
    names = {family: set(expected()) for family, (_, expected) in FAMILIES.items()}
    registered = set(edgejax.list_models())
    for family, own in names.items():
        assert own <= registered, f"{family}: not registered: {sorted(own - registered)}"
    union = set().union(*names.values())
    assert sum(len(v) for v in names.values()) == len(union)  # no name in two families
    assert registered - union <= {"mobilevitv2_xxs", "mobilevitv2_xs", "mobilevitv2_s"}, sorted(
        registered - union
    )  # the study's aliases


@pytest.mark.parametrize("family", FAMILY_IDS)
def test_bad_input_is_named_before_anything_is_traced(family):
    name = FAMILIES[family][0]
    model = nnx.eval_shape(lambda: edgejax.create_model(name, num_classes=10, rngs=0))
    with pytest.raises(ValueError, match="NHWC"):
        model(jnp.zeros((1, 3, 64, 64)))  # NCHW
    with pytest.raises(ValueError, match="NHWC"):
        model(jnp.zeros((64, 64, 3)))  # no batch dimension
    with pytest.raises(TypeError, match="float"):
        model(jnp.zeros((1, 64, 64, 3), jnp.uint8))
    with pytest.raises(ValueError, match="smaller than the minimum"):
        model(jnp.zeros((1, 8, 8, 3)))
    with pytest.raises(ValueError, match=name):  # close matches listed
        edgejax.create_model(name + "x")


@pytest.mark.parametrize("family", FAMILY_IDS)
def test_num_classes_zero_gives_the_pre_logits_features(family):
    name = FAMILIES[family][0]
    model = edgejax.create_model(name, num_classes=0, rngs=0)
    x = _x()
    feats = fwd(model, x)
    # timm's head_hidden_size where a head layer sits between the pooling and the classifier
    width = getattr(model, "head_hidden_size", None) or model.num_features
    assert feats.shape == (2, width) and model.num_classes == 0
    pre = nnx.jit(lambda m, x: m.forward_head(m.forward_features(x), pre_logits=True))(model, x)
    np.testing.assert_allclose(feats, pre, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("family", FAMILY_IDS)
def test_bfloat16_compute_is_close_to_float32(family):
    name = FAMILIES[family][0]
    f32 = edgejax.create_model(name, num_classes=10, rngs=0)
    bf16 = edgejax.create_model(name, num_classes=10, rngs=0, dtype=jnp.bfloat16)
    assert {p.dtype for p in jax.tree.leaves(nnx.state(bf16, nnx.Param))} == {np.dtype("float32")}
    x = _x()
    y32, y16 = fwd(f32, x), fwd(bf16, x)
    assert y16.dtype == jnp.bfloat16 and y32.dtype == jnp.float32
    # bfloat16 keeps 8 mantissa bits: over tens of layers of a random-init net the logits drift
    # by a few percent; a wrong cast (float16 overflow, parameters in bf16) gives O(1).
    assert _rel(y16, y32) < 0.1


@pytest.mark.parametrize("family", FAMILY_IDS)
def test_drop_path_is_random_in_train_mode_only(family):
    name = FAMILIES[family][0]
    model = edgejax.create_model(
        name, num_classes=10, drop_path_rate=0.3, rngs=nnx.Rngs(params=0, dropout=1)
    )
    plain = edgejax.create_model(name, num_classes=10, rngs=0)
    # The same weights in both (the drop-path rng streams shift the params stream); vectors
    # near zero (layer scales of 1e-6, zero-initialised last norms, biases) set to 1, so that a
    # dropped branch shows in the output
    state = nnx.state(model, nnx.Param)
    state = jax.tree.map(
        lambda p: jnp.ones_like(p) if p.ndim == 1 and float(jnp.max(jnp.abs(p))) < 1e-3 else p,
        state,
    )
    nnx.update(model, state)
    nnx.update(plain, state)
    x = _x(batch=4)
    np.testing.assert_allclose(fwd(model, x), fwd(plain, x), rtol=1e-5, atol=1e-5)  # eval
    model.train()
    a, b = fwd(model, x), fwd(model, x)
    assert not np.allclose(a, b), "drop path should draw new masks at each train call"
