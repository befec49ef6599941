# %% [markdown]
# # 01 · Quickstart: train, plot, evaluate
#
# The command-line quickstart in a notebook: check the install, train the quickstart
# config (MobileNetV3-Small 0.5 from scratch on the bundled handwritten digits: 1,438
# train / 359 val images, 32x32, nothing to download), plot the training curves and
# evaluate the best checkpoint. The same run from a shell:
#
# ```bash
# python -m edgejax.train --config configs/quickstart.py --workdir runs/quickstart
# ```
#
# With the full settings (15 epochs, ~330 steps) it reaches about 90% val top-1 in a few
# minutes on a laptop CPU; `SMALL` trains a handful of steps (the accuracy is then chance).

# %%
# Parameters. SMALL = tiny settings that run in seconds on a CPU (the tests set
# EDGEJAX_NB_SMALL=1); otherwise settings meant for a person. Change them freely.
import os

SMALL = os.environ.get("EDGEJAX_NB_SMALL", "0") == "1"
# (04_hparam_study's SMALL trials use the same steps, batch and EMA setting.)
STEPS = 6 if SMALL else 0  # 0 = the config's 15 epochs
EVAL_EVERY_STEPS = 3 if SMALL else 0  # 0 = the config's (every 5 epochs)
BATCH = 32 if SMALL else 0  # 0 = the config's 64

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
    / "01_quickstart"
)
WORK.mkdir(parents=True, exist_ok=True)

import jax

print(
    f"edgejax {edgejax.__version__}, jax {jax.__version__} on {jax.default_backend()} "
    f"({jax.device_count()} device(s)); SMALL={SMALL}"
)
print("shared data:", DATA if DATA.is_dir() else "absent (the bundled digits are used)")
print("artefacts in:", WORK)

# %% [markdown]
# ## Install check
#
# Versions, the devices JAX sees, and one forward pass of a model.

# %%
import importlib
import numpy as np

for mod in ("jax", "flax", "optax", "grain", "orbax.checkpoint", "ml_collections", "numpy"):
    m = importlib.import_module(mod)
    print(f"{mod:18s} {getattr(m, '__version__', '?')}")
print("devices:", jax.devices())
print(len(edgejax.list_models()), "models registered")
tiny = edgejax.create_model("repvgg_a0", num_classes=10, rngs=0)
print(f"repvgg_a0: {edgejax.count_params(tiny):,} parameters")

# %% [markdown]
# ## The config
#
# A `ml_collections.ConfigDict` built from `edgejax.train.base_config()` (the schema of
# every key a run accepts). `configs/quickstart.py` changes the model, data, optimizer and
# schedule; the cell below shortens the run when `SMALL`.

# %%
from edgejax.sweep import load_train_config

config = load_train_config(str(ROOT / "configs" / "quickstart.py"))
with config.unlocked():
    if STEPS:
        config.num_steps = STEPS
        config.log.every_steps = 1
    if EVAL_EVERY_STEPS:
        config.eval.every_steps = EVAL_EVERY_STEPS
    if BATCH:
        config.global_batch_size = BATCH
    config.log.progress = not SMALL
    if SMALL:
        config.ema.decay = 0.0  # one model to evaluate instead of two: less to compile
for key in (
    "model.name",
    "data.dataset",
    "data.image_size",
    "global_batch_size",
    "num_epochs",
    "num_steps",
    "optimizer.name",
    "optimizer.lr",
    "optimizer.weight_decay",
    "schedule.name",
    "schedule.warmup_epochs",
    "augment.label_smoothing",
    "ema.decay",
    "eval.every_epochs",
    "eval.every_steps",
):
    value = config
    for part in key.split("."):
        value = value[part]
    print(f"{key:26s} {value}")

# %% [markdown]
# ## Train
#
# `edgejax.train.run(config, workdir)` is what the command line calls. The run directory
# gets `config.json`, `metrics.jsonl`, `checkpoints/`, `best/` and `summary.json`;
# re-running the cell resumes from the last checkpoint (or only prints the summary).

# %%
import shutil
from edgejax.train import run

workdir = WORK / "quickstart"
if SMALL and workdir.exists():
    shutil.rmtree(workdir)  # the tests always train from scratch
summary = run(config, str(workdir))
for key in (
    "status",
    "step",
    "total_steps",
    "best_top1",
    "best_epoch",
    "num_params",
    "time_s",
    "compile_s",
):
    print(f"{key:12s} {summary[key]}")

# %% [markdown]
# ## Curves
#
# Every logged row of `metrics.jsonl`: training averages (`kind=train`) and evaluations (`kind=eval`, raw and EMA weights).

# %%
import json
import matplotlib.pyplot as plt

rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
train = [r for r in rows if r["kind"] == "train"]
evals = [r for r in rows if r["kind"] == "eval"]
fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
axes[0].plot([r["step"] for r in train], [r["loss"] for r in train], label="train")
axes[0].plot([r["step"] for r in evals], [r["loss"] for r in evals], "o-", label="val")
axes[0].set_title("loss")
axes[0].legend()
axes[1].plot([r["step"] for r in evals], [r["top1"] for r in evals], "o-", label="val")
if evals and "ema_top1" in evals[0]:
    axes[1].plot(
        [r["step"] for r in evals], [r["ema_top1"] for r in evals], "s--", label="val, EMA"
    )
axes[1].plot([r["step"] for r in train], [100 * r["top1"] for r in train], alpha=0.5, label="train")
axes[1].set_title("top-1 (%)")
axes[1].legend()
axes[2].plot([r["step"] for r in train], [r["lr"] for r in train])
axes[2].set_title("learning rate")
for ax in axes:
    ax.set_xlabel("step")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Evaluate
#
# `edgejax.report.predict.predict_run` rebuilds the model from the run's `config.json`,
# loads the best checkpoint (raw or EMA weights, whichever evaluated better) and predicts
# the whole validation split in order.

# %%
from absl import logging as absl_logging
from edgejax.data import build_source
from edgejax.report.predict import predict_run

absl_logging.set_verbosity(absl_logging.ERROR)  # orbax's notes on read-only checkpoints
pred = predict_run(workdir)
labels, preds, class_names = pred["labels"], pred["preds"], pred["class_names"]
print(
    f"val top-1 {100 * (labels == preds).mean():.2f}% on {len(labels)} images "
    f"({'EMA' if pred['ema'] else 'raw'} weights)"
)
confusion = np.zeros((len(class_names),) * 2, int)
np.add.at(confusion, (labels, preds), 1)
per_class = confusion.diagonal() / confusion.sum(1).clip(1)
print("per class:", "  ".join(f"{c}: {100 * a:.0f}%" for c, a in zip(class_names, per_class)))

val, _ = build_source("digits", "val")
assert (np.asarray([val[i][1] for i in range(len(val))]) == labels).all()  # same order
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw=dict(width_ratios=[1, 1.3]))
ax0.imshow(confusion, cmap="Blues")
ax0.set_xlabel("predicted")
ax0.set_ylabel("true")
ax0.set_title("confusion")
ax0.set_xticks(range(len(class_names)), class_names)
ax0.set_yticks(range(len(class_names)), class_names)
ax1.axis("off")
ax1.set_title("val images: prediction (true)")
show = np.r_[np.flatnonzero(labels != preds)[:8], np.flatnonzero(labels == preds)][:16]
for k, i in enumerate(show):
    sub = ax1.inset_axes([(k % 8) / 8, 0.5 - (k // 8) * 0.5, 0.12, 0.4])
    sub.imshow(val[int(i)][0])
    sub.axis("off")
    sub.set_title(
        f"{class_names[preds[i]]} ({class_names[labels[i]]})",
        fontsize=8,
        color="green" if preds[i] == labels[i] else "red",
    )
plt.show()
