"""Carve a class-balanced ImageFolder subset (train / val / test) out of an ImageFolder dataset,
as symbolic links: nothing is copied.

    python tools/make_subset.py ../shared/data/cifar10 runs/data/cifar10_2k \
        --train 200 --val 100 --test 200 --seed 0

``--train`` and ``--val`` images per class come from the source's ``train/`` split (disjoint:
the val split is carved from the training images, so that tuning never sees the test images);
``--test`` per class from its ``test/`` split (or ``val/`` when there is no ``test/``). The draw
is a seeded permutation of each class's sorted file names, so the same command gives the same
subset on every machine.
"""

from __future__ import annotations

import argparse
import os
import random
import sys

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _files(d: str) -> list[str]:
    return sorted(f for f in os.listdir(d) if f.lower().endswith(IMAGE_EXT))


def make_subset(src: str, out: str, *, train: int, val: int, test: int, seed: int = 0) -> dict:
    src, out = os.path.abspath(src), os.path.abspath(out)
    held_out = "test" if os.path.isdir(os.path.join(src, "test")) else "val"
    for split in ("train", held_out):
        if not os.path.isdir(os.path.join(src, split)):
            raise SystemExit(
                f"{src}: no {split}/ directory (an ImageFolder root has train/ and "
                f"test/ or val/, one folder per class)"
            )
    classes = sorted(
        d
        for d in os.listdir(os.path.join(src, "train"))
        if os.path.isdir(os.path.join(src, "train", d))
    )
    counts = {"train": 0, "val": 0, "test": 0}
    for cls in classes:
        rng = random.Random(f"{seed}:{cls}")
        pool = _files(os.path.join(src, "train", cls))
        rng.shuffle(pool)
        if len(pool) < train + val:
            raise SystemExit(
                f"class {cls}: {len(pool)} training images, fewer than "
                f"--train {train} + --val {val}"
            )
        test_pool = _files(os.path.join(src, held_out, cls))
        rng.shuffle(test_pool)
        if len(test_pool) < test:
            raise SystemExit(
                f"class {cls}: {len(test_pool)} {held_out} images, fewer than --test {test}"
            )
        picks = {
            "train": ("train", pool[:train]),
            "val": ("train", pool[train : train + val]),
            "test": (held_out, test_pool[:test]),
        }
        for split, (from_split, names) in picks.items():
            d = os.path.join(out, split, cls)
            os.makedirs(d, exist_ok=True)
            for name in names:
                link = os.path.join(d, name)
                if not os.path.lexists(link):
                    os.symlink(os.path.join(src, from_split, cls, name), link)
            counts[split] += len(names)
    return {"classes": len(classes), **counts}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("src", help="ImageFolder root with train/ and test/ (or val/)")
    p.add_argument("out", help="output root (train/, val/, test/ of symbolic links)")
    p.add_argument("--train", type=int, required=True, help="training images per class")
    p.add_argument("--val", type=int, required=True, help="val images per class (from train/)")
    p.add_argument("--test", type=int, required=True, help="test images per class")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    info = make_subset(a.src, a.out, train=a.train, val=a.val, test=a.test, seed=a.seed)
    print(
        f"{a.out}: {info['classes']} classes, {info['train']} train / {info['val']} val / "
        f"{info['test']} test images"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
