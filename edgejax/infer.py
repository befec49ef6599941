"""One classifier interface over every form a model takes: a training run, timm weights, or an
exported ONNX / StableHLO / LiteRT file, with the model's eval transform settings and class
names. ``edgejax.predict`` and ``edgejax.validate`` are built on it, so the numbers of every
format compare.

    from edgejax.infer import Classifier
    clf = Classifier("repvgg_a0", onnx="m.onnx")
    logits = clf.logits(images_uint8_nhwc)      # eval-transformed uint8 images -> float32 logits
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = [
    "Classifier",
    "SOURCES",
    "add_model_args",
    "classifier_kwargs",
    "class_names",
    "eval_settings",
    "imagenet_names",
    "read_transform",
    "softmax",
    "write_transform",
]

SOURCES = ("checkpoint", "pretrained", "onnx", "stablehlo", "tflite")


class Classifier:
    """A model from one of ``checkpoint`` (a run's workdir, or its best/ or checkpoints/),
    ``pretrained`` (timm safetensors), ``onnx``, ``stablehlo`` or ``tflite`` (files written by
    ``edgejax.export``), or random weights when none is given.

    ``image_size`` / ``crop_pct`` / ``interpolation`` / ``mean`` / ``std`` (0-1 scale) default
    to the run's config for a checkpoint, else the model's (``edgejax.model_info``). ``class_names``: the run's
    ``classes.json`` for a checkpoint, else None (callers fall back to indices)."""

    def __init__(
        self,
        model: str,
        *,
        checkpoint: str | None = None,
        pretrained: str | None = None,
        onnx: str | None = None,
        stablehlo: str | None = None,
        tflite: str | None = None,
        image_size: int | None = None,
        crop_pct: float | None = None,
        interpolation: str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ):
        paths = dict(zip(SOURCES, (checkpoint, pretrained, onnx, stablehlo, tflite)))
        given = [n for n, v in paths.items() if v]
        if len(given) > 1:
            raise ValueError(f"give one source of weights, not {' and '.join(given)}")
        for name in given:
            if not Path(paths[name]).exists():
                raise FileNotFoundError(f"--{name} {paths[name]}: no such file or directory")
        exported = next((v for v in (onnx, stablehlo, tflite) if v), None)
        t = eval_settings(
            model,
            checkpoint=checkpoint,
            image_size=image_size,
            crop_pct=crop_pct,
            interpolation=interpolation,
            recorded=read_transform(exported) if exported else None,
        )
        self.model, self.source = model, (given[0] if given else "random")
        self.image_size, self.crop_pct = t["image_size"], t["crop_pct"]
        self.interpolation, self.class_names = t["interpolation"], t["class_names"]
        self.mean = np.asarray(mean or t["mean"], np.float32) * 255.0
        self.std = np.asarray(std or t["std"], np.float32) * 255.0
        self.fixed_batch: int | None = None
        if onnx:
            from .export import onnx_session, run_onnx

            sess = onnx_session(onnx)
            shape = sess.get_inputs()[0].shape
            self._fn = lambda x: run_onnx(sess, x)
        elif stablehlo:
            from .export import load_stablehlo

            exp = load_stablehlo(stablehlo)
            shape = exp.in_avals[0].shape
            self._fn = lambda x: np.asarray(exp.call(x))
        elif tflite:
            from .export.litert import litert_runner

            self._fn, shape = litert_runner(tflite)
        else:
            import jax
            from flax import nnx
            from .export import load_model

            m = load_model(model, checkpoint=checkpoint, pretrained=pretrained)
            graphdef, state = nnx.split(m)
            call = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
            self._fn = lambda x: np.asarray(call(state, x))
        if onnx or stablehlo or tflite:  # an exported file is traced at one resolution
            b, h = shape[0], shape[1]
            self.fixed_batch = b if isinstance(b, int) else None
            if isinstance(h, int) and image_size is None:
                self.image_size = h
            elif isinstance(h, int) and h != self.image_size:
                raise ValueError(
                    f"{given[0]} file takes {h} px images, not --image-size {self.image_size}"
                )

    def logits(self, images: np.ndarray) -> np.ndarray:
        """uint8 NHWC images (already eval-transformed) -> float32 logits [N, classes]."""
        x = (np.asarray(images, np.float32) - self.mean) / self.std
        n = len(x)
        b = self.fixed_batch or n
        out = []
        for start in range(0, n, b):  # a fixed-batch file: chunks, the last one padded
            chunk = x[start : start + b]
            if len(chunk) < b:
                chunk = np.concatenate(
                    [chunk, np.zeros((b - len(chunk),) + x.shape[1:], np.float32)]
                )
            out.append(np.asarray(self._fn(chunk), np.float32)[: min(b, n - start)])
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def load_image(self, path: str) -> np.ndarray:
        """An image file -> the eval-transformed uint8 HWC image (raises on unreadable files)."""
        from .data import transforms as T

        with open(path, "rb") as f:
            data = f.read()
        return T.center_crop_resize(data, self.image_size, self.crop_pct, self.interpolation)


def eval_settings(
    model: str,
    *,
    checkpoint: str | None = None,
    image_size: int | None = None,
    crop_pct: float | None = None,
    interpolation: str | None = None,
    recorded: dict | None = None,
) -> dict:
    """The eval transform of ``model`` -> {image_size, crop_pct, interpolation, mean, std (0-1
    scale), class_names}: what is given, else what an exported file ``recorded``
    (``read_transform``), else the run's config and classes.json for a ``checkpoint``, else the
    model's defaults (``edgejax.model_info``)."""
    import edgejax

    info = edgejax.model_info(model)  # unknown names fail here, with the closest names
    run_cfg, names = _run_files(checkpoint) if checkpoint else ({}, None)
    d = dict(run_cfg.get("data", {}))
    if recorded:
        d.update({k: v for k, v in recorded.items() if k != "class_names" and v is not None})
        d["eval_image_size"] = recorded.get("image_size") or d.get("eval_image_size")
        names = recorded.get("class_names") or names
    return {
        "image_size": int(
            image_size or d.get("eval_image_size") or d.get("image_size") or info["input_size"][1]
        ),
        "crop_pct": float(crop_pct or d.get("crop_pct") or info["crop_pct"]),
        "interpolation": interpolation or d.get("interpolation") or info["interpolation"],
        "mean": tuple(d.get("mean") or info["mean"]),
        "std": tuple(d.get("std") or info["std"]),
        "class_names": names,
    }


# Exported files carry the eval transform they were exported with: in the ONNX file's metadata,
# beside a StableHLO / LiteRT file as ``<file>.json``.
_META_KEY = "edgejax.eval_transform"


def write_transform(path: str, transform: dict) -> None:
    """Record ``transform`` (eval_settings' keys) with the exported file at ``path``."""
    text = json.dumps({k: (list(v) if isinstance(v, tuple) else v) for k, v in transform.items()})
    if str(path).endswith(".onnx"):
        import onnx

        m = onnx.load(str(path))
        props = {p.key: p for p in m.metadata_props}
        prop = props.get(_META_KEY) or m.metadata_props.add()
        prop.key, prop.value = _META_KEY, text
        onnx.save(m, str(path))
    else:
        Path(str(path) + ".json").write_text(text + "\n")


def read_transform(path: str) -> dict | None:
    """What ``write_transform`` recorded for the file at ``path`` (None when nothing was)."""
    try:
        if str(path).endswith(".onnx"):
            import onnx

            m = onnx.load(str(path), load_external_data=False)
            text = next((p.value for p in m.metadata_props if p.key == _META_KEY), None)
        else:
            side = Path(str(path) + ".json")
            text = side.read_text() if side.exists() else None
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return None


def _run_files(checkpoint: str) -> tuple[dict, list[str] | None]:
    """A run's config.json and classes.json, looked up at or above ``checkpoint``."""
    p = Path(checkpoint).resolve()
    cfg, names = {}, None
    for d in (p, p.parent, p.parent.parent):
        if not cfg and (d / "config.json").exists():
            cfg = json.loads((d / "config.json").read_text())
        if names is None and (d / "classes.json").exists():
            names = json.loads((d / "classes.json").read_text())["class_names"]
    return cfg, names


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def imagenet_names() -> list[str] | None:
    """timm's ImageNet-1k class descriptions, when timm is installed."""
    try:
        from timm.data import ImageNetInfo
    except ImportError:
        return None
    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(1000)]


def class_names(given: Sequence[str] | None, num_classes: int) -> list[str]:
    """``given`` (checked against the head), timm's ImageNet names for 1000 classes, or indices."""
    names = list(given) if given else (imagenet_names() if num_classes == 1000 else None)
    if names is None:
        return [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for a {num_classes}-class model")
    return names


def add_weights_args(p, *, exported_files: bool = True):
    """``--model`` and where its weights come from, the same in every command that runs a model
    (export, validate, predict): ``--checkpoint`` (a training run) or ``--pretrained`` (timm
    weights), and with ``exported_files`` an exported ``--onnx`` / ``--stablehlo`` / ``--tflite``
    file. Returns the mutually exclusive group."""
    p.add_argument("--model", required=True, help="registered model name, e.g. repvgg_a2")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="a training run's workdir, or its best/ or checkpoints/")
    src.add_argument("--pretrained", help="timm .safetensors weights file")
    if exported_files:
        src.add_argument("--onnx", help="an ONNX file written by edgejax.export")
        src.add_argument("--stablehlo", help="a StableHLO file written by edgejax.export")
        src.add_argument("--tflite", help="a LiteRT (.tflite) file")
    return src


def add_model_args(p) -> None:
    """The model, weights-source and eval-transform flags every inference command shares."""
    add_weights_args(p)
    # --resolution, as edgejax.export and edgejax.bench name it, is the same flag
    p.add_argument(
        "--image-size",
        "--resolution",
        dest="image_size",
        type=int,
        default=None,
        help="default: the exported file's, the run's or the model's",
    )
    p.add_argument("--crop-pct", type=float, default=None)
    p.add_argument("--interpolation", default=None, choices=("bilinear", "bicubic", "nearest"))


def classifier_kwargs(a) -> dict:
    """Parsed ``add_model_args`` flags -> ``Classifier`` keyword arguments."""
    return {
        "checkpoint": a.checkpoint,
        "pretrained": a.pretrained,
        "onnx": a.onnx,
        "stablehlo": a.stablehlo,
        "tflite": a.tflite,
        "image_size": a.image_size,
        "crop_pct": a.crop_pct,
        "interpolation": a.interpolation,
    }
