"""Deterministic timm-equivalence fixtures, shared by tools/make_timm_fixtures.py (torch side) and
tests/test_timm_equivalence.py (JAX side). Pure numpy, so both environments import it.

A fixture stores the state-dict manifest (names, shapes), the seeds and the expected outputs; the
tensors themselves are regenerated from (seed, key index) with numpy's PCG64, which is stable
across numpy versions.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "timm"
BATCH = 2
# Logits stored per sample: the first STORED_CLASSES of 1000 (keeps ~100 fixtures under 2 MB;
# every logit depends on the whole network, and the classifier is one plain Linear).
STORED_CLASSES = 500
IGNORED_SUFFIXES = ("num_batches_tracked", "attention_bias_idxs", "relative_position_index")


def tensor_value(key: str, shape, seed: int, index: int) -> np.ndarray:
    """The value of tensor ``key`` (position ``index`` in the manifest) for fixture ``seed``.

    Weights: N(0, 1/fan_in) (non-trivial but bounded activations); norm scales and layer scales:
    U(0.5, 1.5); biases: N(0, 0.1); running means N(0, 0.2); running variances U(0.5, 2.0) (positive
    and not 1, so BatchNorm folding is exercised); attention bias tables N(0, 1).
    """
    rng = np.random.default_rng([seed, index])
    shape = tuple(int(s) for s in shape)
    last = key.rsplit(".", 1)[-1]
    if last == "running_var":
        v = rng.uniform(0.5, 2.0, shape)
    elif last == "running_mean":
        v = rng.normal(0.0, 0.2, shape)
    elif "attention_biases" in last:
        v = rng.normal(0.0, 1.0, shape)
    elif len(shape) >= 2:
        fan_in = math.prod(shape[1:])
        v = rng.normal(0.0, 1.0 / math.sqrt(max(fan_in, 1)), shape)
    elif last in ("weight", "gamma", "layer_scale", "scale") or last.startswith("gamma"):
        v = rng.uniform(0.5, 1.5, shape)
    else:
        v = rng.normal(0.0, 0.1, shape)
    return v.astype(np.float32)


def input_value(seed: int, batch: int, chans: int, size: int) -> np.ndarray:
    """The NCHW float32 input of a fixture (transpose to NHWC for edgejax)."""
    rng = np.random.default_rng([seed, 10**6])
    return rng.normal(0.0, 1.0, (batch, chans, size, size)).astype(np.float32)


def build_state_dict(manifest: list, seed: int) -> dict[str, np.ndarray]:
    return {k: tensor_value(k, s, seed, i) for i, (k, s) in enumerate(manifest)}


def bn_summary(running: dict[str, np.ndarray], prefixes: list[str]) -> np.ndarray:
    """Per BatchNorm: [sum(mean), sum(var), mean[:4], var[:4]] (zero padded), float64."""
    rows = []
    for p in prefixes:
        m = np.asarray(running[p + ".running_mean"], np.float64)
        v = np.asarray(running[p + ".running_var"], np.float64)
        row = np.zeros(10)
        row[0], row[1] = m.sum(), v.sum()
        row[2 : 2 + min(4, m.size)] = m[:4]
        row[6 : 6 + min(4, v.size)] = v[:4]
        rows.append(row)
    return np.stack(rows) if rows else np.zeros((0, 10))


def fixture_path(name: str, size: int) -> Path:
    return FIXTURE_DIR / f"{name}@{size}.npz"


def save_fixture(path: Path, meta: dict, arrays: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: (v[:, :STORED_CLASSES] if k.endswith("_logits") else v) for k, v in arrays.items()}
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)


def load_fixture(path: Path) -> tuple[dict, dict]:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        arrays = {k: z[k] for k in z.files if k != "meta"}
    return meta, arrays
