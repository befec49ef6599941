"""Grain random-access data sources. Each returns `(image, label)` per index, where `image` is
encoded bytes (JPEG, PNG, ...) or a uint8 array [H, W, 3], and `label` an int.

- `ImageFolderSource`: `root/<class>/<image>`, class index = sorted folder names (torchvision/timm).
- `ArrayRecordSource`: shards written by `python -m edgejax.data.prepare`.
- `TfdsSource`: `tfds.data_source(...)` with image decoding skipped (extra `tfds`).
- `DigitsSource`: scikit-learn's bundled handwritten digits (real images, no download).
- `build_source(spec, split)` picks one from a string.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

# Same as torchvision's IMG_EXTENSIONS (plus upper case, handled by lower()).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
TRAIN_SPLITS = ("train", "training")
VAL_SPLITS = ("val", "validation", "valid", "test", "eval")
METADATA_FILE = "metadata.json"
ARRAY_RECORD_OPTIONS = "group_size:1,uncompressed"


class DatasetError(ValueError):
    """A dataset that cannot be used: missing path, no images, not prepared."""


def class_difference(run_names: Sequence[str], data_names: Sequence[str]) -> str | None:
    """None when a run's class names are the data's; else the first differences by index
    (``"0: cat / dog, 1: dog / cat"``, run / data) or the two counts."""
    run_names, data_names = list(run_names), list(data_names)
    if run_names == data_names:
        return None
    differ = [f"{i}: {a} / {b}" for i, (a, b) in enumerate(zip(run_names, data_names)) if a != b]
    if len(run_names) != len(data_names) or not differ:
        return f"{len(run_names)} vs {len(data_names)} classes"
    return ", ".join(differ[:5]) + (f" and {len(differ) - 5} more" if len(differ) > 5 else "")


# ---------------------------------------------------------------- record format (ArrayRecord)
def encode_record(image_bytes: bytes, label: int) -> bytes:
    """One ArrayRecord record: int32 little-endian label, then the encoded image bytes."""
    return struct.pack("<i", int(label)) + bytes(image_bytes)


def decode_record(record: bytes) -> tuple[bytes, int]:
    (label,) = struct.unpack_from("<i", record, 0)
    return record[4:], label


# ---------------------------------------------------------------- ImageFolder
def _split_dirs(root: Path, split: str) -> Path:
    """timm's rule: use root/<split> (or a known alias) when it exists, else the root itself."""
    names = (
        TRAIN_SPLITS if split in TRAIN_SPLITS else VAL_SPLITS if split in VAL_SPLITS else (split,)
    )
    for name in (split,) + tuple(n for n in names if n != split):
        if (root / name).is_dir():
            return root / name
    present = [n for n in TRAIN_SPLITS + VAL_SPLITS if (root / n).is_dir()]
    if present:  # a split tree without the requested split: do not treat 'train/' as a class
        raise DatasetError(f"{root} has split folders {present} but none for split {split!r}")
    return root


def _class_dirs(root: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


def find_images(
    root: str | os.PathLike, classes: Sequence[str] | None = None, classes_from: str | None = None
) -> tuple[list[str], list[tuple[str, int]], list[str]]:
    """Scan `root/<class>/**` -> (class_names, [(path, label)], ignored_paths).

    Files are kept by extension (case-insensitive) like torchvision; the content is sniffed at
    decode time, so a PNG named `.jpg` still decodes. Hidden files are ignored. ``classes``
    (another split's class names, ``classes_from`` naming it): labels index into that list, a
    class folder outside it is an error, and a class it has that ``root`` lacks is said once.
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"dataset path does not exist: {root}")
    if not root.is_dir():
        raise DatasetError(f"dataset path is not a directory: {root}")
    found = _class_dirs(root)
    if not found:
        raise DatasetError(
            f"no class folders in {root}: expected an ImageFolder tree root/<class>/<image>"
        )
    if classes is None:
        classes = found
    else:
        classes = list(classes)
        extra = [c for c in found if c not in classes]
        if extra:
            raise DatasetError(
                f"{root}: class folder(s) {', '.join(extra)} are not among the {len(classes)} "
                f"classes of {classes_from or 'the train split'}; labels follow the train "
                f"split's class names, so every split's classes must be among them"
            )
        missing = [c for c in classes if c not in found]
        if missing:
            log.warning(
                "%s has no images of %d of the %d classes of %s: %s",
                root,
                len(missing),
                len(classes),
                classes_from or "the train split",
                ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""),
            )
    index = {c: i for i, c in enumerate(classes)}
    samples, ignored = [], []
    for name in found:
        label = index[name]
        for dirpath, dirnames, filenames in os.walk(root / name, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(filenames):
                if f.startswith("."):
                    continue
                p = os.path.join(dirpath, f)
                if f.lower().endswith(IMG_EXTENSIONS):
                    samples.append((p, label))
                else:
                    ignored.append(p)
    if not samples:
        raise DatasetError(
            f"no images in {root} ({len(classes)} class folders, extensions {IMG_EXTENSIONS})"
        )
    return classes, samples, ignored


class ImageFolderSource:
    """Random access to `root/<class>/<image>` files; returns (file bytes, label)."""

    def __init__(
        self,
        root: str | os.PathLike,
        classes: Sequence[str] | None = None,
        classes_from: str | None = None,
    ):
        self.root = str(root)
        self.class_names, self.samples, self.ignored = find_images(root, classes, classes_from)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[bytes, int]:
        path, label = self.samples[index]
        try:
            with open(path, "rb") as f:
                return f.read(), label
        except OSError:  # vanished or unreadable: the transform counts it as skipped
            return b"", label

    def __repr__(self) -> str:
        return (
            f"ImageFolderSource({self.root!r}, {len(self)} images, {len(self.class_names)} classes)"
        )


# ---------------------------------------------------------------- ArrayRecord
def read_metadata(path: str | os.PathLike) -> dict:
    meta_path = Path(path) / METADATA_FILE
    with open(meta_path) as f:
        return json.load(f)


class ArrayRecordSource:
    """Shards written by `edgejax.data.prepare` for one split; returns (JPEG bytes, label)."""

    def __init__(self, path: str | os.PathLike, split: str = "train"):
        from array_record.python.array_record_data_source import ArrayRecordDataSource

        self.path = str(path)
        meta = read_metadata(path)
        splits = meta["splits"]
        if split not in splits:
            alias = [
                s
                for s in splits
                if (split in TRAIN_SPLITS and s in TRAIN_SPLITS)
                or (split in VAL_SPLITS and s in VAL_SPLITS)
            ]
            if alias:
                split = alias[0]
            elif "all" in splits:
                log.warning(
                    "%s has no split %r; using 'all' (train and val are the same data)", path, split
                )
                split = "all"
            else:
                raise DatasetError(f"{path} has no split {split!r}; it has {sorted(splits)}")
        self.split = split
        self.class_names = list(meta["class_names"])
        files = [os.path.join(self.path, f) for f in splits[split]["files"]]
        missing = [f for f in files if not os.path.exists(f)]
        if missing:
            raise DatasetError(f"missing shard files in {path}: {missing[:3]}")
        if splits[split]["num_records"] == 0:
            raise DatasetError(f"split {split!r} of {path} holds no records")
        self._files = files
        try:
            self._ds = ArrayRecordDataSource(files)
        except Exception as e:  # a damaged shard: ArrayRecord's message does not say which
            bad = shard_problems(files, splits[split].get("file_records"))
            raise DatasetError(_damaged_message(path, split, bad or [(files[0], str(e))])) from None
        expected = splits[split]["num_records"]
        if len(self._ds) != expected:
            bad = shard_problems(files, splits[split].get("file_records"))
            raise DatasetError(
                _damaged_message(
                    path,
                    split,
                    bad
                    or [
                        (
                            path,
                            f"{len(self._ds)} records in the shards, metadata.json says {expected}",
                        )
                    ],
                )
            )
        self._bounds = None  # record index -> shard, worked out on the first unreadable record
        self._warned = False

    def __len__(self) -> int:
        return len(self._ds)

    def __getitem__(self, index: int) -> tuple[bytes, int]:
        try:
            return decode_record(self._ds[index])
        except Exception as e:  # a damaged chunk inside a shard: skipped like a corrupt image
            if not self._warned:
                self._warned = True
                log.warning(
                    "%s: record %d of split %r is unreadable (%s: %s); skipping it and "
                    "any other (check the shards with python -m edgejax.data.prepare "
                    "--check %s)",
                    self._shard_of(index),
                    index,
                    self.split,
                    type(e).__name__,
                    str(e).strip()[:200],
                    self.path,
                )
            return b"", 0

    def _shard_of(self, index: int) -> str:
        if self._bounds is None:
            from array_record.python.array_record_data_source import ArrayRecordDataSource

            sizes = [len(ArrayRecordDataSource([f])) for f in self._files]
            self._bounds = np.cumsum(sizes)
        return self._files[int(np.searchsorted(self._bounds, index, side="right"))]

    def __getstate__(self):
        return {"path": self.path, "split": self.split}

    def __setstate__(self, state):
        self.__init__(state["path"], state["split"])

    def __repr__(self) -> str:
        return f"ArrayRecordSource({self.path!r}, split={self.split!r}, {len(self)} records)"


def shard_problems(
    files: Sequence[str], file_records: Sequence[int] | None = None, read_all: bool = False
) -> list[tuple[str, str]]:
    """[(shard, what is wrong)] for shards that do not open, hold another number of records than
    ``file_records`` says, or (``read_all``) hold a record that does not read or decode."""
    from array_record.python.array_record_data_source import ArrayRecordDataSource

    problems = []
    for i, f in enumerate(files):
        try:
            ds = ArrayRecordDataSource([f])
            n = len(ds)
        except Exception as e:
            msg = str(e).strip()
            size = os.path.getsize(f) if os.path.exists(f) else 0
            problems.append(
                (
                    f,
                    f"does not open ({msg + '; ' if msg else ''}{size:,} bytes: "
                    f"truncated or damaged)",
                )
            )
            continue
        if file_records is not None and n != file_records[i]:
            problems.append((f, f"holds {n} records, metadata.json says {file_records[i]}"))
            continue
        if read_all:
            for j in range(n):
                try:
                    data, label = decode_record(ds[j])
                    if not data:
                        raise ValueError("no image bytes")
                except Exception as e:
                    problems.append((f, f"record {j} of {n} does not read ({e})"))
                    break
    return problems


def _damaged_message(path, split: str, problems: list[tuple[str, str]]) -> str:
    lines = "; ".join(f"{os.path.basename(f)} {why}" for f, why in problems[:5])
    return (
        f"{path}: split {split!r} has {len(problems)} damaged shard(s): {lines}. Prepare the "
        f"dataset again (python -m edgejax.data.prepare SRC {path} --overwrite), or copy the "
        f"shard(s) again from where the dataset came from"
    )


# ---------------------------------------------------------------- TFDS
TFDS_SPLITS = {"val": "validation", "valid": "validation", "eval": "validation"}


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DatasetError(
            "TFDS datasets need the optional extra: pip install 'edgejax[tfds]' "
            "(tensorflow-datasets and tensorflow-cpu)"
        ) from e
    return tfds


class TfdsSource:
    """`tfds.data_source(name, split)` (ArrayRecord format), image bytes left encoded."""

    def __init__(self, name: str, split: str = "train", data_dir: str | None = None):
        tfds = _import_tfds()
        self.name, self.data_dir = name, data_dir
        split = TFDS_SPLITS.get(split, split)
        self.split = split
        try:
            builder = tfds.builder(name, data_dir=data_dir)
            self._ds = tfds.data_source(
                name, split=split, data_dir=data_dir, decoders={"image": tfds.decode.SkipDecoding()}
            )
        except Exception as e:
            raise DatasetError(
                f"TFDS dataset {name!r} (split {split!r}) is not prepared in "
                f"{data_dir or '~/tensorflow_datasets'}: {e}\n"
                f"Prepare it once with: tfds build {name} --file_format=array_record "
                f"--manual_dir=DIR (for imagenet2012, DIR holds ILSVRC2012_img_train.tar and "
                f"ILSVRC2012_img_val.tar)"
            ) from e
        self.class_names = list(builder.info.features["label"].names)

    def __len__(self) -> int:
        return len(self._ds)

    def __getitem__(self, index: int) -> tuple[bytes, int]:
        ex = self._ds[index]
        return ex["image"], int(ex["label"])

    def __getstate__(self):
        return {"name": self.name, "split": self.split, "data_dir": self.data_dir}

    def __setstate__(self, state):
        self.__init__(state["name"], state["split"], state["data_dir"])


# ---------------------------------------------------------------- bundled digits
class DigitsSource:
    """scikit-learn's bundled handwritten digits (UCI, 1,797 real 8x8 scans, 10 classes).

    Returned as RGB uint8 [32, 32, 3] (8x8 grey levels 0..16 scaled to 0..255, upscaled 4x with
    bilinear interpolation). Split: a fixed, stratified-by-order 80/20 cut (every 5th image is val).
    """

    SIZE = 32

    def __init__(self, split: str = "train"):
        from sklearn.datasets import load_digits

        import cv2

        d = load_digits()
        images = np.clip(d.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
        idx = np.arange(len(images))
        is_val = idx % 5 == 4
        if split in TRAIN_SPLITS:
            keep = ~is_val
        elif split in VAL_SPLITS:
            keep = is_val
        else:
            raise DatasetError(f"digits has splits 'train' and 'val', not {split!r}")
        big = [
            cv2.resize(im, (self.SIZE, self.SIZE), interpolation=cv2.INTER_LINEAR)
            for im in images[keep]
        ]
        self.images = np.repeat(np.stack(big)[..., None], 3, axis=3)
        self.labels = d.target[keep].astype(np.int64)
        self.class_names = [str(i) for i in range(10)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.images[index], int(self.labels[index])


# ---------------------------------------------------------------- factory
def build_source(spec: str, split: str = "train") -> tuple[Any, dict]:
    """Build a data source from a spec string.

    spec: "digits" | "tfds:<name>[:<data_dir>]" | path to a prepared ArrayRecord dir (holds
    metadata.json) | path to an ImageFolder root (with train/ and val/ sub-folders, or a flat
    class tree used for every split, as timm does).
    Returns (source, info) with info keys num_classes, class_names, num_records, kind, split.
    Raises DatasetError (before any worker starts) for missing paths and empty datasets.
    """
    spec = str(spec)
    if spec == "digits":
        src = DigitsSource(split)
        kind = "digits"
    elif spec.startswith("tfds:"):
        parts = spec[len("tfds:") :].split(":", 1)
        src = TfdsSource(parts[0], split, data_dir=parts[1] if len(parts) > 1 else None)
        kind = "tfds"
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            raise DatasetError(
                f"dataset path does not exist: {path} (expected 'digits', 'tfds:<name>', an "
                f"ImageFolder root or a directory prepared by `python -m edgejax.data.prepare`)"
            )
        if (path / METADATA_FILE).exists():
            src = ArrayRecordSource(path, split)
            kind = "array_record"
        else:
            split_dir = _split_dirs(path, split)
            train_dir = next((path / n for n in TRAIN_SPLITS if (path / n).is_dir()), None)
            if split_dir != path and train_dir is not None and split_dir != train_dir:
                # every split numbers its classes as the train split does
                src = ImageFolderSource(split_dir, _class_dirs(train_dir), str(train_dir))
            else:
                src = ImageFolderSource(split_dir)
            kind = "image_folder"
            if src.ignored:
                log.warning(
                    "%d files without an image extension ignored in %s", len(src.ignored), src.root
                )
    if len(src) == 0:
        raise DatasetError(f"dataset {spec!r} split {split!r} is empty")
    info = {
        "num_classes": len(src.class_names),
        "class_names": list(src.class_names),
        "num_records": len(src),
        "kind": kind,
        "split": split,
    }
    return src, info
