"""Accuracy of a model on a labelled dataset, in any of its forms (timm's ``validate.py``).

Command line (``python -m edgejax.validate --help``)::

    python -m edgejax.validate --model repvgg_a0 --checkpoint runs/repvgg --data ../data/cifar10
    python -m edgejax.validate --model repvgg_a0 --onnx repvgg.onnx --data ../data/cifar10 --json
    python -m edgejax.validate --model mobilenetv3_large_100 --pretrained w.safetensors \\
        --data /data/imagenet --split val

``--data``: any edgejax source (an ImageFolder tree, a prepared ArrayRecord folder, ``digits``,
``tfds:NAME``); ``--split`` picks the split (default ``val``, which falls back to ``test`` /
``validation`` folders). Every format goes through the same loader and eval transform
(:class:`edgejax.infer.Classifier`), so the numbers of a run, its ONNX, StableHLO and LiteRT
exports compare. Prints top-1, top-5, mean cross-entropy, the image count and throughput
(images per second of model calls, and end to end with decoding).

Python: ``validate(Classifier(...), "data/cifar10", split="test") -> dict``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Sequence

import numpy as np

__all__ = ["validate", "main"]


def validate(
    clf, data: str, *, split: str = "val", batch_size: int = 64, progress: bool = False
) -> dict:
    """-> {"top1", "top5", "loss", "count", "skipped", "img_s_model", "img_s", "time_s", ...}."""
    from . import data as D
    from .data.sources import class_difference
    from .train.config import resolve_dataset

    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    src, info = D.build_source(resolve_dataset(data), split)
    names = getattr(clf, "class_names", None)
    differ = class_difference(names, info["class_names"]) if names else None
    if differ:
        logging.getLogger("edgejax").warning(
            "%s was trained on other class names than %s has (index: run / data): %s; its "
            "labels may not mean what the data's do",
            clf.model,
            data,
            differ,
        )
    loader = D.make_eval_loader(
        src,
        global_batch_size=batch_size,
        image_size=clf.image_size,
        crop_pct=clf.crop_pct,
        interpolation=clf.interpolation,
    )
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=len(src), unit="img", desc=f"validate {clf.model} ({clf.source})", file=sys.stderr
        )
    top1 = top5 = loss = count = 0.0
    model_s, t0 = 0.0, time.perf_counter()
    for b in loader:
        mask = np.asarray(b["mask"], bool)
        if not mask.any():
            continue
        images, labels = np.asarray(b["image"])[mask], np.asarray(b["label"])[mask]
        t = time.perf_counter()
        logits = clf.logits(images).astype(np.float64)
        model_s += time.perf_counter() - t
        if logits.shape[-1] != info["num_classes"]:
            raise ValueError(
                f"{clf.model} has {logits.shape[-1]} classes, the data "
                f"{info['num_classes']} ({data}, split {split}): give a model "
                f"trained on this data"
            )
        z = logits - logits.max(-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        loss += float(-logp[np.arange(len(labels)), labels].sum())
        rank = (logits > logits[np.arange(len(labels)), labels][:, None]).sum(-1)
        top1 += float((rank < 1).sum())
        top5 += float((rank < 5).sum())
        count += len(labels)
        if bar is not None:
            bar.update(int(len(labels)))
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - t0
    n = max(count, 1.0)
    return {
        "model": clf.model,
        "source": clf.source,
        "data": data,
        "split": split,
        "top1": 100.0 * top1 / n,
        "top5": 100.0 * top5 / n,
        "loss": loss / n,
        "count": int(count),
        "skipped": int(loader.stats["skipped"]),
        "image_size": clf.image_size,
        "crop_pct": clf.crop_pct,
        "interpolation": clf.interpolation,
        "batch_size": batch_size,
        "img_s_model": count / model_s if model_s else 0.0,
        "img_s": count / wall if wall else 0.0,
        "time_s": wall,
    }


def _parser() -> argparse.ArgumentParser:
    from .infer import add_model_args

    p = argparse.ArgumentParser(
        prog="python -m edgejax.validate",
        description="top-1 / top-5 / loss of a model on a dataset, in "
        "any format (run, timm weights, ONNX, StableHLO, "
        "LiteRT).",
    )
    add_model_args(p)
    p.add_argument(
        "--data", required=True, help="ImageFolder / ArrayRecord folder, digits or tfds:NAME"
    )
    p.add_argument("--split", default="val", help="split to evaluate (default val)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    from .data.sources import DatasetError
    from .infer import Classifier, classifier_kwargs
    from .train.config import ConfigError

    try:
        clf = Classifier(a.model, **classifier_kwargs(a))
        r = validate(
            clf,
            a.data,
            split=a.split,
            batch_size=a.batch_size,
            progress=not a.no_progress and sys.stderr.isatty(),
        )
    except (ValueError, FileNotFoundError, ImportError, DatasetError, ConfigError) as e:
        print(f"edgejax.validate: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(r, indent=1))
    else:
        print(
            f"{r['model']} ({r['source']}) on {r['data']} [{r['split']}]: top-1 "
            f"{r['top1']:.2f}  top-5 {r['top5']:.2f}  loss {r['loss']:.4f}  "
            f"{r['count']} images  {r['img_s_model']:.1f} img/s (model), "
            f"{r['img_s']:.1f} img/s (end to end)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
