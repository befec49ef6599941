# %% [markdown]
# # 03 · Augmentations on real images
#
# `edgejax.data.augment` runs timm's batch augmentations in JAX, on the accelerator, jitted:
# RandAugment (on uint8 images), normalisation, Random Erasing, Mixup and CutMix (after
# normalisation, with mixed label targets). The images are real: ImageNet samples from
# `../shared/data` when present, else the bundled digits.

# %%
# Parameters. SMALL = tiny settings that run in seconds on a CPU (the tests set
# EDGEJAX_NB_SMALL=1); otherwise settings meant for a person. Change them freely.
import os

SMALL = os.environ.get("EDGEJAX_NB_SMALL", "0") == "1"
SIZE = 96 if SMALL else 192  # image side
NUM_IMAGES = 4 if SMALL else 8
MAGNITUDES = (3, 6, 9, -9)  # columns of the op gallery (negative: the other sign)

# %%
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets


def _repo_root():
    if os.environ.get("EDGEJAX_ROOT"):
        return Path(os.environ["EDGEJAX_ROOT"]).resolve()
    for p in [Path.cwd().resolve(), *Path.cwd().resolve().parents]:
        if (p / "edgejax" / "__init__.py").is_file():
            return p
    return None


ROOT = _repo_root()
try:
    import edgejax
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))
    import edgejax
DATA = (ROOT.parent / "shared" / "data") if ROOT else Path("shared/data")
WORK = (
    Path(os.environ.get("EDGEJAX_NB_WORKDIR") or (ROOT or Path.cwd()) / "runs" / "notebooks")
    / "03_augmentations"
)
WORK.mkdir(parents=True, exist_ok=True)

import jax

print(
    f"edgejax {edgejax.__version__}, jax {jax.__version__} on {jax.default_backend()} "
    f"({jax.device_count()} device(s)); SMALL={SMALL}"
)
print("shared data:", DATA if DATA.is_dir() else "absent (the bundled digits are used)")
print("artefacts in:", WORK)

# %%
import numpy as np
from edgejax.data.transforms import center_crop_resize


def load_examples(n, size, *, crop_pct=0.875, interpolation="bilinear"):
    """n real images as uint8 [n, size, size, 3], their int labels, and the class names.

    From ../shared/data/imagenet-samples (classes spread over the 1,000; the sorted WordNet ids
    give timm's ImageNet class indices) when present, else from the bundled digits."""
    root = DATA / "imagenet-samples"
    if root.is_dir():
        wnids = sorted(p.name for p in root.iterdir() if p.is_dir())
        files = [sorted((root / w).iterdir())[0] for w in wnids]
        class_names = [f.stem.split("_", 1)[1].replace("_", " ") for f in files]
        picks = np.linspace(0, len(wnids) - 1, n).astype(int) if n > 1 else [0]
        images = np.stack(
            [
                center_crop_resize(files[i].read_bytes(), size, crop_pct, interpolation)
                for i in picks
            ]
        )
        return images, np.asarray(picks, np.int32), class_names
    import cv2
    from edgejax.data import build_source

    source, meta = build_source("digits", "val")
    idx = np.arange(n) * (len(source) // n)
    images = np.stack(
        [cv2.resize(source[int(i)][0], (size, size), interpolation=cv2.INTER_LINEAR) for i in idx]
    )
    labels = np.asarray([source[int(i)][1] for i in idx], np.int32)
    return images, labels, meta["class_names"]


# %%
import matplotlib.pyplot as plt

images, labels, class_names = load_examples(NUM_IMAGES, SIZE)
print(images.shape, images.dtype, [class_names[i] for i in labels])


def show(rows, titles=None, row_labels=None, size=1.8):
    """rows: list of lists of images (uint8 or float in [0, 1])."""
    nr, nc = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(nr, nc, figsize=(size * nc, size * nr + 0.3 * nr), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(nc):
            ax = axes[i][j]
            ax.axis("off")
            if j < len(row):
                img = np.asarray(row[j])
                ax.imshow(img if img.dtype == np.uint8 else np.clip(img, 0, 1))
                if titles is not None and titles[i][j]:
                    ax.set_title(titles[i][j], fontsize=8)
        if row_labels is not None:
            axes[i][0].text(
                -0.08,
                0.5,
                row_labels[i],
                transform=axes[i][0].transAxes,
                ha="right",
                va="center",
                fontsize=8,
            )
    plt.tight_layout()
    plt.show()


show([list(images)], [[class_names[i] for i in labels]])

# %% [markdown]
# ## The RandAugment ops
#
# Each of timm's 15 ops ('increasing' set, as `rand-m9-mstd0.5-inc1` uses) at a few
# magnitudes (0..10); "(−)" is the other sign, which only the signed ops (rotate, shear,
# translate, and the 'increasing' colour, contrast, brightness and sharpness) use.
# `apply_op` is the code path `rand_augment` uses; all ops and magnitudes are computed by
# one jitted program.

# %%
import jax.numpy as jnp
from edgejax.data import augment

OPS = augment.RAND_INCREASING_TRANSFORMS


@jax.jit
def op_gallery(image, magnitudes, signs):
    """image [H, W, 3] uint8 -> [ops, magnitudes, H, W, 3]"""

    def one(name):
        return jax.vmap(lambda m, s: augment.apply_op(image[None], name, m, s)[0])(
            magnitudes, signs
        )

    return jnp.stack([one(name) for name in OPS])


mags = jnp.abs(jnp.asarray(MAGNITUDES, jnp.float32))
signs = jnp.sign(jnp.asarray(MAGNITUDES, jnp.float32))
gallery = np.asarray(op_gallery(jnp.asarray(images[0]), mags, signs))
show(
    [[images[0]] + list(g) for g in gallery],
    titles=[
        ["original"] + [f"m={abs(m)}" + (" (−)" if m < 0 else "") for m in MAGNITUDES] for _ in OPS
    ],
    row_labels=list(OPS),
    size=1.5,
)

# %% [markdown]
# ## RandAugment on a batch
#
# `rand_augment(key, images)`: per image, 2 ops drawn at random, each applied with
# probability 0.5 at magnitude ~ N(9, 0.5). Each row is another key; labels are unchanged.

# %%
rand_augment = jax.jit(augment.rand_augment)
batch = jnp.asarray(images)
rows = [images] + [np.asarray(rand_augment(jax.random.key(seed), batch)) for seed in range(3)]
names = [class_names[i] for i in labels]
show(rows, titles=[names] * len(rows), row_labels=["original", "key 0", "key 1", "key 2"])

# %% [markdown]
# ## Mixup and CutMix
#
# `mixup_cutmix` pairs image *i* with image *B-1-i* and mixes the one-hot targets with the
# same λ (CutMix: λ corrected to the pasted box's real area). The titles show each image's
# target: the two largest entries of the mixed label vector.

# %%
from functools import partial

num_classes = len(class_names)
x = augment.normalize(batch)  # mixing happens after normalisation, as in timm


def denormalize(x):
    mean, std = np.asarray(augment.IMAGENET_DEFAULT_MEAN), np.asarray(augment.IMAGENET_DEFAULT_STD)
    return np.asarray(x) * std + mean


def target_titles(targets):
    out = []
    for t in np.asarray(targets):
        top = np.argsort(-t)[:2]
        out.append("\n".join(f"{t[k]:.2f} {class_names[k][:14]}" for k in top if t[k] > 0.005))
    return out


# One compiled program for every mode: the switch probability and the label smoothing
# are traced arguments (always pass both, or jit compiles another program).
mix = jax.jit(
    partial(
        augment.mixup_cutmix,
        mixup_alpha=0.8,
        cutmix_alpha=1.0,
        num_classes=num_classes,
        return_lam=True,
    )
)
rows, titles, row_labels = [], [], []
for k, (mode, switch_prob) in enumerate(
    (("Mixup α=0.8", 0.0), ("CutMix α=1.0", 1.0), ("either, p=0.5", 0.5))
):
    for seed in (2 * k, 2 * k + 1):
        mixed, targets, lam = mix(
            jax.random.key(seed),
            x,
            jnp.asarray(labels),
            switch_prob=switch_prob,
            label_smoothing=0.0,
        )
        rows.append(denormalize(mixed))
        titles.append(target_titles(targets))
        row_labels.append(f"{mode}\nλ={float(lam):.2f}")
show(rows, titles, row_labels)

# %% [markdown]
# ## The whole training recipe
#
# timm's order, as the training step applies it (`augment.batch_augment` does it in one
# call): RandAugment on uint8 → normalise → Random Erasing → Mixup/CutMix with label
# smoothing. Built here from the pieces above (already compiled).

# %%
key = jax.random.key(7)
k_ra, k_re, k_mix = jax.random.split(key, 3)
step = rand_augment(k_ra, batch)
step = augment.normalize(step)
step = jax.jit(partial(augment.random_erasing, prob=0.5))(k_re, step)
out, targets, lam = mix(k_mix, step, jnp.asarray(labels), switch_prob=0.5, label_smoothing=0.1)
show([denormalize(out)], [target_titles(targets)])
