"""Write timm-equivalence fixtures (needs the `torch` extra: torch + timm).

    python tools/make_timm_fixtures.py repvgg_a2 'mobilenetv3_*' [--size 192] [--seed 0]

For each timm model: fill every parameter and BatchNorm statistic from the seeded generator in
tests/timm_fixture_lib.py, run a seeded input in eval mode and in train mode (drop rates 0), and
save the manifest, seeds, parameter count, logits and BatchNorm statistics after the train-mode
forward to tests/fixtures/timm/<name>@<size>.npz. No weights are stored.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

import numpy as np
import torch
import timm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import timm_fixture_lib as lib  # noqa: E402


def make(name: str, size: int | None, seed: int, lean: bool = False) -> Path:
    # Drop rates 0: some timm defaults (TinyViT) train with drop path, which would randomise the
    # train-mode logits.
    kw = dict(pretrained=False, num_classes=1000, drop_rate=0.0, drop_path_rate=0.0)
    if lean:
        # Huge models (convnext_xxlarge): allocate once, fill tensor by tensor (peak ~ model
        # size instead of ~3x). Only for models without non-parameter index buffers, which
        # to_empty() would leave uninitialised.
        model = timm.create_model(name, device="meta", **kw).to_empty(device="cpu")
    else:
        model = timm.create_model(name, **kw)
    size = size or model.pretrained_cfg["input_size"][-1]
    sd = model.state_dict(keep_vars=True)
    manifest = [
        (k, list(v.shape))
        for k, v in sd.items()
        if not k.endswith(lib.IGNORED_SUFFIXES) and v.dtype.is_floating_point
    ]
    with torch.no_grad():
        for i, (k, s) in enumerate(manifest):
            sd[k].copy_(torch.from_numpy(lib.tensor_value(k, s, seed, i)))
    x = torch.from_numpy(lib.input_value(seed, lib.BATCH, 3, size))
    with torch.no_grad():
        model.eval()
        eval_logits = model(x).numpy()
        model.train()
        train_logits = model(x).numpy()
    bn_prefixes = [k[: -len(".running_mean")] for k, _ in manifest if k.endswith(".running_mean")]
    running = {k: v.detach().numpy() for k, v in model.state_dict().items() if "running_" in k}
    meta = dict(
        name=name,
        size=size,
        seed=seed,
        batch=lib.BATCH,
        manifest=manifest,
        num_params=int(sum(p.numel() for p in model.parameters())),
        bn_prefixes=bn_prefixes,
        timm_version=timm.__version__,
        torch_version=torch.__version__,
    )
    path = lib.fixture_path(name, size)
    lib.save_fixture(
        path,
        meta,
        dict(
            eval_logits=eval_logits.astype(np.float32),
            train_logits=train_logits.astype(np.float32),
            bn_after_train=lib.bn_summary(running, bn_prefixes),
        ),
    )
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("patterns", nargs="+", help="timm model names or fnmatch patterns")
    ap.add_argument("--size", type=int, default=None, help="input size (default: timm's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--lean",
        action="store_true",
        help="allocate on the meta device and fill in place (huge models)",
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    all_names = timm.list_models()
    for pat in args.patterns:
        names = [n for n in all_names if fnmatch.fnmatch(n, pat)] or [pat]
        for name in names:
            path = make(name, args.size, args.seed, lean=args.lean)
            print(f"{path.name}: {path.stat().st_size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
