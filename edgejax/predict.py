"""Top-k predictions for image files, from a training run, timm weights or an exported model
(:class:`edgejax.infer.Classifier`).

Command line (``python -m edgejax.predict --help``)::

    python -m edgejax.predict --model repvgg_a0 --checkpoint runs/repvgg photo.jpg more/
    python -m edgejax.predict --model mobilenetv3_large_100 --pretrained mnv3.safetensors \\
        images/ --topk 3 --json
    python -m edgejax.predict --model convnext_atto --onnx m.onnx images/ --csv preds.csv

Images go through the model's eval transform (resize the shorter side to size / crop_pct,
centre crop, normalise), as in training and ``edgejax.export``. Class names: a run's
``classes.json`` (written by ``edgejax.train``), ``--class-names FILE`` (one per line), timm's
ImageNet names for a 1000-class head when timm is installed, else the class index. Unreadable
images are listed (stderr, and under ``errors`` with ``--json``) and the others predicted.

Python::

    from edgejax.predict import Predictor
    p = Predictor("repvgg_a0", checkpoint="runs/repvgg")    # or onnx= / stablehlo= / tflite=
    rows, errors = p.predict(["photo.jpg"], topk=5)
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

__all__ = ["Predictor", "image_files", "main"]

IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


def image_files(inputs: Iterable[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Files and folders (searched recursively, sorted) -> (image paths, [(path, error)])."""
    files, errors = [], []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(
                str(f)
                for f in p.rglob("*")
                if f.is_file() and f.suffix.lower() in IMAGE_EXT and not f.name.startswith(".")
            )
            if not found:
                errors.append((item, "folder holds no images (" + ", ".join(IMAGE_EXT) + ")"))
            files += found
        elif p.is_file():
            files.append(str(p))
        else:
            errors.append((item, "no such file or folder"))
    return files, errors


def _read_names(path: str) -> list[str]:
    with open(path) as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise ValueError(f"--class-names {path}: the file holds no names (one per line)")
    return names


class Predictor:
    """Top-k classes of image files with a :class:`edgejax.infer.Classifier` (same arguments:
    ``checkpoint`` / ``pretrained`` / ``onnx`` / ``stablehlo`` / ``tflite``, eval-transform
    overrides); ``class_names`` overrides the run's."""

    def __init__(self, model: str, *, class_names: Sequence[str] | None = None, **kwargs):
        from .infer import Classifier

        self.clf = Classifier(model, **kwargs)
        self.class_names = list(class_names) if class_names else self.clf.class_names

    def predict(
        self, paths: Sequence[str], *, topk: int = 5, batch_size: int = 32, progress=None
    ) -> tuple[list[dict], list[tuple[str, str]]]:
        """-> ([{"path", "topk": [{"index", "name", "prob"}]}], [(path, error)])."""
        from .infer import class_names, softmax

        if topk < 1:
            raise ValueError(f"topk must be at least 1, got {topk}")
        rows, errors = [], []
        for start in range(0, len(paths), batch_size):
            imgs, ok = [], []
            for p in paths[start : start + batch_size]:
                try:
                    imgs.append(self.clf.load_image(p))
                    ok.append(p)
                except Exception as e:  # unreadable, truncated or not an image: listed
                    errors.append((p, f"{type(e).__name__}: {e}"))
            if progress is not None:
                progress.update(len(paths[start : start + batch_size]))
            if not ok:
                continue
            probs = softmax(self.clf.logits(np.stack(imgs)))
            names = class_names(self.class_names, probs.shape[-1])
            top = np.argsort(-probs, axis=-1, kind="stable")[:, : min(topk, probs.shape[-1])]
            for p, idx, pr in zip(ok, top, probs):
                rows.append(
                    {
                        "path": p,
                        "topk": [
                            {"index": int(i), "name": names[i], "prob": float(pr[i])} for i in idx
                        ],
                    }
                )
        return rows, errors


def _parser() -> argparse.ArgumentParser:
    from .infer import add_model_args

    p = argparse.ArgumentParser(
        prog="python -m edgejax.predict",
        description="Top-k classes of images with an edgejax model.",
    )
    p.add_argument("inputs", nargs="+", help="image files and / or folders (searched recursively)")
    add_model_args(p)
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--class-names", help="text file, one class name per line (index order)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--csv", metavar="FILE", help="also write path, rank, index, name, prob")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from .infer import classifier_kwargs

    a = _parser().parse_args(argv)
    try:
        files, errors = image_files(a.inputs)
        if not files:
            for path, err in errors:
                print(f"edgejax.predict: {path}: {err}", file=sys.stderr)
            print("edgejax.predict: no images to predict", file=sys.stderr)
            return 2
        names = _read_names(a.class_names) if a.class_names else None
        pred = Predictor(a.model, class_names=names, **classifier_kwargs(a))
        progress = None
        if len(files) > a.batch_size and sys.stderr.isatty():
            from tqdm import tqdm

            progress = tqdm(total=len(files), unit="img", file=sys.stderr)
        rows, bad = pred.predict(files, topk=a.topk, batch_size=a.batch_size, progress=progress)
        if progress is not None:
            progress.close()
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"edgejax.predict: {e}", file=sys.stderr)
        return 2
    errors += bad
    for path, err in errors:
        print(f"edgejax.predict: skipped {path}: {err}", file=sys.stderr)
    if a.json:
        print(
            json.dumps(
                {
                    "model": a.model,
                    "predictions": rows,
                    "errors": [{"path": p, "error": e} for p, e in errors],
                },
                indent=1,
            )
        )
    else:
        for r in rows:
            top = ", ".join(f"{t['name']} {100 * t['prob']:.1f}%" for t in r["topk"])
            print(f"{r['path']}: {top}")
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "rank", "index", "name", "prob"])
            for r in rows:
                for rank, t in enumerate(r["topk"], 1):
                    w.writerow([r["path"], rank, t["index"], t["name"], f"{t['prob']:.6f}"])
    return 1 if errors and not rows else 0


if __name__ == "__main__":
    sys.exit(main())
