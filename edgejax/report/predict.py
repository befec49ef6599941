"""Predictions of a run's best checkpoint on its evaluation split (for the confusion matrix).

The training loop saves no predictions, so they are computed here: the run's resolved
``config.json`` rebuilds the model and the evaluation loader, the weights come from
``<run>/best`` (raw or EMA, whichever evaluated better), and the result is cached as
``predictions.npz`` (labels, preds, class_names) beside the run or in the report folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["load_or_predict", "predict_run"]


def predict_run(workdir, *, batch_size: int = 256) -> dict:
    """-> {"labels": int [N], "preds": int [N], "class_names": [str]} for the best checkpoint."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    import edgejax
    from edgejax import data
    from edgejax.data import augment
    from edgejax.train import validate
    from edgejax.train.checkpoint import load_weights
    from edgejax.train.config import resolve_dataset
    from edgejax.train.state import merge, split_model

    workdir = Path(workdir)
    config = validate(json.loads((workdir / "config.json").read_text()))
    ckpt = workdir / "best" if (workdir / "best").exists() else workdir / "checkpoints"
    if not ckpt.exists():
        raise FileNotFoundError(f"{workdir} has no best/ or checkpoints/ to predict with")
    weights = load_weights(str(ckpt))
    dataset = resolve_dataset(config.data.dataset)
    src, info = data.build_source(dataset, config.data.eval_split)
    train_info = data.build_source(dataset, config.data.train_split)[1]
    num_classes = int(train_info["num_classes"])
    minfo = edgejax.model_info(config.model.name)
    d = config.data
    image_size = d.eval_image_size or d.image_size or minfo["input_size"][1]
    mean = tuple(float(v) for v in (d.mean or minfo["mean"]))
    std = tuple(float(v) for v in (d.std or minfo["std"]))
    mdef, _, _, _ = split_model(
        nnx.eval_shape(
            lambda: edgejax.create_model(config.model.name, num_classes=num_classes, rngs=0)
        )
    )
    # the better of raw and EMA at the best evaluation
    use_ema = False
    from edgejax.sweep.study import read_metrics

    rows = read_metrics(workdir)  # a torn line (a run killed mid-write) is skipped
    evals = [r for r in rows if r.get("kind") == "eval"]
    if evals and weights.get("ema_params") is not None:
        b = max(evals, key=lambda r: max(r.get("top1", 0), r.get("ema_top1", -1)))
        use_ema = b.get("ema_top1", -1) > b.get("top1", 0)
    params = weights["ema_params"] if use_ema else weights["params"]
    stats = weights.get("ema_batch_stats" if use_ema else "batch_stats") or {}
    model_state = weights.get("model_state") or {}

    @jax.jit
    def predict(params, stats, model_state, images):
        model = merge(mdef, params, stats, model_state, train=False)
        return jnp.argmax(model(augment.normalize(images, mean, std, jnp.float32)), -1)

    loader = data.make_eval_loader(
        src,
        global_batch_size=batch_size,
        image_size=image_size,
        crop_pct=d.crop_pct or minfo["crop_pct"],
        interpolation=d.interpolation or minfo["interpolation"],
    )
    labels, preds = [], []
    for batch in loader:
        mask = np.asarray(batch["mask"]).astype(bool)
        p = np.asarray(predict(params, stats, model_state, jnp.asarray(batch["image"])))
        labels.append(np.asarray(batch["label"])[mask])
        preds.append(p[mask])
    return {
        "labels": np.concatenate(labels).astype(np.int64),
        "preds": np.concatenate(preds).astype(np.int64),
        "class_names": list(info["class_names"]),
        "ema": use_ema,
    }


def load_or_predict(workdir, cache_dir=None) -> dict:
    """``<run>/predictions.npz`` when present, else :func:`predict_run`, cached beside the run
    (or in ``cache_dir`` when the run folder is read-only)."""
    workdir = Path(workdir)
    for path in (
        workdir / "predictions.npz",
        Path(cache_dir) / f"predictions_{workdir.name}.npz" if cache_dir else None,
    ):
        if path is not None and path.exists():
            z = np.load(path, allow_pickle=False)
            return {
                "labels": z["labels"],
                "preds": z["preds"],
                "class_names": [str(c) for c in z["class_names"]],
            }
    out = predict_run(workdir)
    arrays = dict(
        labels=out["labels"], preds=out["preds"], class_names=np.array(out["class_names"])
    )
    try:
        np.savez_compressed(workdir / "predictions.npz", **arrays)
    except OSError:
        if cache_dir:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            np.savez_compressed(Path(cache_dir) / f"predictions_{workdir.name}.npz", **arrays)
    return out
