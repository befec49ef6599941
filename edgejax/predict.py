"""Top-k predictions for image files, from a training run, timm weights or an exported model.

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
    p = Predictor("repvgg_a0", checkpoint="runs/repvgg")
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
            found = sorted(str(f) for f in p.rglob("*")
                           if f.is_file() and f.suffix.lower() in IMAGE_EXT
                           and not f.name.startswith("."))
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


def _imagenet_names() -> list[str] | None:
    try:
        from timm.data import ImageNetInfo
    except ImportError:
        return None
    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(1000)]


class Predictor:
    """A model (from one of ``checkpoint`` / ``pretrained`` / ``onnx`` / ``stablehlo``, or random
    weights when none is given) with its eval transform and class names."""

    def __init__(self, model: str, *, checkpoint: str | None = None,
                 pretrained: str | None = None, onnx: str | None = None,
                 stablehlo: str | None = None, image_size: int | None = None,
                 crop_pct: float | None = None, interpolation: str | None = None,
                 class_names: Sequence[str] | None = None):
        import edgejax
        given = [n for n, v in (("checkpoint", checkpoint), ("pretrained", pretrained),
                                ("onnx", onnx), ("stablehlo", stablehlo)) if v]
        if len(given) > 1:
            raise ValueError(f"give one source of weights, not {' and '.join(given)}")
        info = edgejax.model_info(model)  # unknown names fail here, with the closest names
        run_cfg, run_names = {}, None
        if checkpoint:
            run_cfg, run_names = _run_files(checkpoint)
        d = run_cfg.get("data", {})
        self.model = model
        self.image_size = int(image_size or d.get("eval_image_size") or d.get("image_size")
                              or info["input_size"][1])
        self.crop_pct = float(crop_pct or d.get("crop_pct") or info["crop_pct"])
        self.interpolation = interpolation or d.get("interpolation") or info["interpolation"]
        self.mean = np.asarray(d.get("mean") or info["mean"], np.float32) * 255.0
        self.std = np.asarray(d.get("std") or info["std"], np.float32) * 255.0
        if onnx:
            from .export import onnx_session, run_onnx
            sess = onnx_session(onnx)
            self._fn, self._batch = (lambda x: run_onnx(sess, x)), _fixed_batch_onnx(sess)
        elif stablehlo:
            from .export import load_stablehlo
            exp = load_stablehlo(stablehlo)
            b = exp.in_avals[0].shape[0]
            self._fn = lambda x: np.asarray(exp.call(x))
            self._batch = b if isinstance(b, int) else None
        else:
            import jax
            from flax import nnx
            from .export import load_model
            m = load_model(model, checkpoint=checkpoint, pretrained=pretrained)
            gd, st = nnx.split(m)
            call = jax.jit(lambda st, x: nnx.merge(gd, st)(x))
            self._fn, self._batch = (lambda x: np.asarray(call(st, x))), None
        self.class_names = list(class_names) if class_names else run_names

    def _names(self, num_classes: int) -> list[str]:
        names = self.class_names
        if names is None and num_classes == 1000:
            names = _imagenet_names()
        if names is None:
            return [str(i) for i in range(num_classes)]
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for a {num_classes}-class model")
        return names

    def _load(self, path: str) -> np.ndarray:
        from .data import transforms as T
        with open(path, "rb") as f:
            data = f.read()
        return T.center_crop_resize(data, self.image_size, self.crop_pct, self.interpolation)

    def predict(self, paths: Sequence[str], *, topk: int = 5, batch_size: int = 32, progress=None
                ) -> tuple[list[dict], list[tuple[str, str]]]:
        """-> ([{"path", "topk": [{"index", "name", "prob"}]}], [(path, error)])."""
        if topk < 1:
            raise ValueError(f"topk must be at least 1, got {topk}")
        rows, errors = [], []
        batch = self._batch or batch_size
        for start in range(0, len(paths), batch):
            imgs, ok = [], []
            for p in paths[start:start + batch]:
                try:
                    imgs.append(self._load(p))
                    ok.append(p)
                except Exception as e:  # unreadable, truncated or not an image: listed
                    errors.append((p, f"{type(e).__name__}: {e}"))
            if progress is not None:
                progress.update(len(paths[start:start + batch]))
            if not ok:
                continue
            x = (np.stack(imgs).astype(np.float32) - self.mean) / self.std
            n = len(x)
            if self._batch and n < self._batch:  # a fixed-batch export: pad, drop the padding
                x = np.concatenate([x, np.zeros((self._batch - n,) + x.shape[1:], x.dtype)])
            logits = np.asarray(self._fn(x), np.float32)[:n]
            probs = _softmax(logits)
            names = self._names(probs.shape[-1])
            k = min(topk, probs.shape[-1])
            top = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
            for p, idx, pr in zip(ok, top, probs):
                rows.append({"path": p, "topk": [{"index": int(i), "name": names[i],
                                                   "prob": float(pr[i])} for i in idx]})
        return rows, errors


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _fixed_batch_onnx(sess) -> int | None:
    b = sess.get_inputs()[0].shape[0]
    return b if isinstance(b, int) else None


def _run_files(checkpoint: str) -> tuple[dict, list[str] | None]:
    """A run's config.json and classes.json, looked up beside or above ``checkpoint``."""
    p = Path(checkpoint).resolve()
    cfg, names = {}, None
    for d in (p, p.parent, p.parent.parent):
        if (d / "config.json").exists() and not cfg:
            cfg = json.loads((d / "config.json").read_text())
        if (d / "classes.json").exists() and names is None:
            names = json.loads((d / "classes.json").read_text())["class_names"]
    return cfg, names


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edgejax.predict",
                                description="Top-k classes of images with an edgejax model.")
    p.add_argument("inputs", nargs="+", help="image files and / or folders (searched recursively)")
    p.add_argument("--model", required=True, help="registered model name, e.g. repvgg_a2")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="a training run's workdir, or its best/ or checkpoints/")
    src.add_argument("--pretrained", help="timm .safetensors weights file")
    src.add_argument("--onnx", help="an ONNX file written by edgejax.export")
    src.add_argument("--stablehlo", help="a StableHLO file written by edgejax.export")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=None, help="default: the run's or model's")
    p.add_argument("--crop-pct", type=float, default=None)
    p.add_argument("--interpolation", default=None, choices=("bilinear", "bicubic", "nearest"))
    p.add_argument("--class-names", help="text file, one class name per line (index order)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--csv", metavar="FILE", help="also write path, rank, index, name, prob")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    try:
        files, errors = image_files(a.inputs)
        if not files:
            for path, err in errors:
                print(f"edgejax.predict: {path}: {err}", file=sys.stderr)
            print("edgejax.predict: no images to predict", file=sys.stderr)
            return 2
        names = _read_names(a.class_names) if a.class_names else None
        pred = Predictor(a.model, checkpoint=a.checkpoint, pretrained=a.pretrained, onnx=a.onnx,
                         stablehlo=a.stablehlo, image_size=a.image_size, crop_pct=a.crop_pct,
                         interpolation=a.interpolation, class_names=names)
        progress = None
        if len(files) > a.batch_size and sys.stderr.isatty():
            from tqdm import tqdm
            progress = tqdm(total=len(files), unit="img", file=sys.stderr)
        rows, bad = pred.predict(files, topk=a.topk, batch_size=a.batch_size, progress=progress)
        if progress is not None:
            progress.close()
    except (ValueError, FileNotFoundError) as e:
        print(f"edgejax.predict: {e}", file=sys.stderr)
        return 2
    errors += bad
    for path, err in errors:
        print(f"edgejax.predict: skipped {path}: {err}", file=sys.stderr)
    if a.json:
        print(json.dumps({"model": a.model, "predictions": rows,
                          "errors": [{"path": p, "error": e} for p, e in errors]}, indent=1))
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
