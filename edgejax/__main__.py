"""``python -m edgejax``: the commands edgejax has, one line each."""

from __future__ import annotations

import sys

COMMANDS = (
    ("train", "train (or resume) a model from a config: --config configs/repvgg_a2.py"),
    ("sweep", "run (or resume) an Optuna sweep of training runs, optionally in trial groups"),
    ("report", "tables and plots of runs and studies (Markdown + PNG)"),
    ("bench", "inference latency / throughput, params and FLOPs of registered models"),
    ("export", "export a model to ONNX, StableHLO or LiteRT, float or int8 (optionally fused)"),
    ("validate", "top-1 / top-5 / loss of a run, timm weights or an exported file on a dataset"),
    ("predict", "top-k classes of image files from a run, timm weights or an exported model"),
    ("data.prepare", "re-encode an ImageFolder or TFDS dataset as sharded ArrayRecord"),
    ("distill.cache", "write a teacher's sparse targets for a run, to distil without the teacher"),
)


def main(argv=None) -> int:
    from . import __version__

    print(
        f"edgejax {__version__}: lightweight image classifiers in JAX.\n\nCommands "
        f"(python -m edgejax.<command> --help for each):\n"
    )
    width = max(len(n) for n, _ in COMMANDS)
    for name, text in COMMANDS:
        print(f"  {name:<{width}}  {text}")
    print("\nStart with: python -m edgejax.train --config configs/quickstart.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
