"""edgejax.data: sources, per-record CPU transforms, Grain pipelines, on-accelerator augmentation.

    from edgejax.data import build_source, make_train_loader
    source, info = build_source("digits", "train")
    loader = make_train_loader(source, global_batch_size=256, image_size=224, seed=0)
    for batch in loader: ...   # {"image": uint8 [B, 224, 224, 3], "label": int32 [B]}

Submodules: `sources`, `transforms` (CPU, per record), `pipeline` (Grain), `augment` (JAX, on the
accelerator), `prepare` (`python -m edgejax.data.prepare`). Names are imported lazily so that
preparation workers and Grain worker processes do not import Grain or JAX unless they need them.
"""

import importlib

_EXPORTS = {
    "DataWorkerError": "pipeline",
    "Loader": "pipeline",
    "make_eval_loader": "pipeline",
    "make_train_loader": "pipeline",
    "steps_per_epoch": "pipeline",
    "to_global_arrays": "pipeline",
    "ArrayRecordSource": "sources",
    "DatasetError": "sources",
    "DigitsSource": "sources",
    "ImageFolderSource": "sources",
    "TfdsSource": "sources",
    "build_source": "sources",
    "CorruptImageError": "transforms",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgejax.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"edgejax.data.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
