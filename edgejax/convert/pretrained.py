"""Loading timm weights: a local safetensors file or the Hugging Face Hub. Never unpickles."""

from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["load_pretrained", "read_safetensors", "hub_filename"]

_PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".pkl", ".ckpt", ".tar")

_CONVERT_HINT = (
    "edgejax never unpickles weights (loading a pickle can run arbitrary code). Convert it once, "
    "in an environment with torch, to safetensors:\n"
    "    import torch, safetensors.torch as st\n"
    "    sd = torch.load('{path}', map_location='cpu', weights_only=True)\n"
    "    sd = sd.get('state_dict', sd.get('model', sd))\n"
    "    st.save_file({{k: v.contiguous() for k, v in sd.items()}}, 'weights.safetensors')\n"
    "then pass pretrained='weights.safetensors'."
)


def read_safetensors(path: str | os.PathLike) -> dict:
    """Read a safetensors file into ``{name: numpy array}`` (float32 for floating tensors)."""
    import numpy as np
    from safetensors.numpy import load_file

    path = Path(path)
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise ValueError(
            f"refusing to load {path}: {path.suffix} files are pickles. "
            + _CONVERT_HINT.format(path=path)
        )
    if not path.exists():
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    try:
        sd = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types; it checks the header's
        # claimed sizes and offsets against the file before allocating anything
        with open(path, "rb") as f:
            head = f.read(2)
        pickle_like = head[:1] == b"\x80" or head == b"PK"  # a torch.save file (pickle / zip)
        raise ValueError(
            f"{path} is not a readable safetensors file ({e})"
            + (
                ". " + _CONVERT_HINT.format(path=path)
                if pickle_like
                else ": the file is damaged or not safetensors"
            )
        ) from None
    return {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in sd.items()}


def hub_filename(name: str) -> tuple[str, str]:
    """(repo id, filename) of the timm weights for ``name`` on the Hugging Face Hub."""
    from ..registry import get_entry

    entry = get_entry(name)
    repo = entry.info.get("hf_hub_id") or f"timm/{entry.name}"
    return repo, "model.safetensors"


def _download(name: str) -> Path:
    repo, filename = hub_filename(name)
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:  # pragma: no cover - a core dependency
        raise ImportError(
            "pretrained=True needs huggingface_hub: pip install huggingface_hub"
        ) from e
    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename))
    except Exception as e:
        raise RuntimeError(
            f"could not get the timm weights for {name!r}: {repo}/{filename} is not in the local "
            f"Hugging Face cache and could not be downloaded ({type(e).__name__}: {e}). Download "
            f"it on a machine with internet access (huggingface-cli download {repo} {filename}) "
            f"and pass pretrained='/path/to/{filename}'."
        ) from None


def load_pretrained(
    name: str, pretrained, *, num_classes: int | None = None, dtype=None, rngs=None, **overrides
):
    """Build ``name`` from timm weights. ``pretrained`` is a path or ``True`` (Hub).

    ``num_classes=None`` keeps the file's classifier, whatever its width (a 21,841-class
    ImageNet-22k head stays one). When ``num_classes`` is given and differs from the file's
    classifier, the backbone is loaded and a fresh classifier is initialised (fine-tuning), as
    timm does, and one line on the ``edgejax`` logger says so.
    """
    from ..registry import get_entry, _as_rngs
    from .timm import from_timm, load_state_dict

    path = _download(name) if pretrained is True else Path(pretrained)
    sd = read_safetensors(path)
    entry = get_entry(name)
    model = from_timm(entry.name, sd, num_classes=None, dtype=dtype, **overrides)
    if num_classes is None or model.num_classes == num_classes:
        return model
    logging.getLogger("edgejax").warning(
        "%s: %s has a %d-class head; loaded only its backbone, with a freshly initialised "
        "%d-class head",
        entry.name,
        path.name,
        model.num_classes,
        num_classes,
    )
    fresh = entry.builder(
        entry.cfg, num_classes=num_classes, rngs=_as_rngs(rngs), dtype=dtype, **overrides
    )
    head = model.timm_head
    backbone = {k: v for k, v in sd.items() if not k.startswith(head + ".")}
    load_state_dict(fresh, backbone, strict=False)
    fresh.eval()
    return fresh
