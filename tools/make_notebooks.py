"""Generate the tutorial notebooks in ``notebooks/`` (outputs stripped) from the cells below.

    python tools/make_notebooks.py            # (re)write notebooks/*.ipynb
    python tools/make_notebooks.py --check    # exit 1 if a notebook differs from this script

The notebooks are data: edit the cells here, regenerate, and review the diff of this file. Each
notebook starts with a parameters cell: ``SMALL`` (tiny settings, set by the tests through
``EDGEJAX_NB_SMALL=1``) or meaningful settings for a human (the default). Artefacts (runs,
weights, exported files) go under ``WORK`` (``EDGEJAX_NB_WORKDIR``, default ``runs/notebooks``
of the repository, which git ignores). ``tests/test_notebooks.py`` executes every notebook.
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"


def md(text: str) -> tuple[str, str]:
    return ("markdown", textwrap.dedent(text).strip("\n"))


def code(text: str) -> tuple[str, str]:
    return ("code", textwrap.dedent(text).strip("\n"))


def params(body: str) -> tuple[str, str]:
    """The parameters cell: SMALL from the environment, then the notebook's own settings."""
    head = '''
    # Parameters. SMALL = tiny settings that run in seconds on a CPU (the tests set
    # EDGEJAX_NB_SMALL=1); otherwise settings meant for a person. Change them freely.
    import os
    SMALL = os.environ.get("EDGEJAX_NB_SMALL", "0") == "1"
    '''
    return ("code", textwrap.dedent(head).strip("\n") + "\n" + textwrap.dedent(body).strip("\n"))


def setup(name: str) -> tuple[str, str]:
    """Find the repository (for ``../shared/data`` and an uninstalled checkout) and ``WORK``."""
    return code(f'''
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
    WORK = Path(os.environ.get("EDGEJAX_NB_WORKDIR") or (ROOT or Path.cwd()) / "runs" / "notebooks") / "{name}"
    WORK.mkdir(parents=True, exist_ok=True)

    import jax
    print(f"edgejax {{edgejax.__version__}}, jax {{jax.__version__}} on {{jax.default_backend()}} "
          f"({{jax.device_count()}} device(s)); SMALL={{SMALL}}")
    print("shared data:", DATA if DATA.is_dir() else "absent (the bundled digits are used)")
    print("artefacts in:", WORK)
    ''')


# Loading a few real images: ImageNet samples (one per class, 1,000 classes), else the digits.
LOAD_EXAMPLES = '''
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
        images = np.stack([center_crop_resize(files[i].read_bytes(), size, crop_pct,
                                              interpolation) for i in picks])
        return images, np.asarray(picks, np.int32), class_names
    import cv2
    from edgejax.data import build_source
    source, meta = build_source("digits", "val")
    idx = np.arange(n) * (len(source) // n)
    images = np.stack([cv2.resize(source[int(i)][0], (size, size), interpolation=cv2.INTER_LINEAR)
                       for i in idx])
    labels = np.asarray([source[int(i)][1] for i in idx], np.int32)
    return images, labels, meta["class_names"]
'''


# ============================================================================================
# 01 quickstart
def nb01():
    return [
        md("""
        # 01 · Quickstart: train, plot, evaluate

        The command-line quickstart in a notebook: check the install, train the quickstart
        config (MobileNetV3-Small 0.5 from scratch on the bundled handwritten digits: 1,438
        train / 359 val images, 32x32, nothing to download), plot the training curves and
        evaluate the best checkpoint. The same run from a shell:

        ```bash
        python -m edgejax.train --config configs/quickstart.py --workdir runs/quickstart
        ```

        With the full settings (15 epochs, ~330 steps) it reaches about 90% val top-1 in a few
        minutes on a laptop CPU; `SMALL` trains a handful of steps (the accuracy is then chance).
        """),
        params("""
        # (04_hparam_study's SMALL trials use the same steps, batch and EMA setting.)
        STEPS = 6 if SMALL else 0              # 0 = the config's 15 epochs
        EVAL_EVERY_STEPS = 3 if SMALL else 0   # 0 = the config's (every 5 epochs)
        BATCH = 32 if SMALL else 0             # 0 = the config's 64
        """),
        setup("01_quickstart"),
        md("## Install check\n\nVersions, the devices JAX sees, and one forward pass of a model."),
        code("""
        import importlib
        import numpy as np
        import jax.numpy as jnp
        from flax import nnx

        for mod in ("jax", "flax", "optax", "grain", "orbax.checkpoint", "ml_collections", "numpy"):
            m = importlib.import_module(mod)
            print(f"{mod:18s} {getattr(m, '__version__', '?')}")
        print("devices:", jax.devices())
        print(len(edgejax.list_models()), "models registered")
        tiny = edgejax.create_model("repvgg_a0", num_classes=10, rngs=0)
        print(f"repvgg_a0: {edgejax.count_params(tiny):,} parameters")
        """),
        md("""
        ## The config

        A `ml_collections.ConfigDict` built from `edgejax.train.base_config()` (the schema of
        every key a run accepts). `configs/quickstart.py` changes the model, data, optimizer and
        schedule; the cell below shortens the run when `SMALL`.
        """),
        code("""
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
        for key in ("model.name", "data.dataset", "data.image_size", "global_batch_size",
                    "num_epochs", "num_steps", "optimizer.name", "optimizer.lr",
                    "optimizer.weight_decay", "schedule.name", "schedule.warmup_epochs",
                    "augment.label_smoothing", "ema.decay", "eval.every_epochs", "eval.every_steps"):
            value = config
            for part in key.split("."):
                value = value[part]
            print(f"{key:26s} {value}")
        """),
        md("""
        ## Train

        `edgejax.train.run(config, workdir)` is what the command line calls. The run directory
        gets `config.json`, `metrics.jsonl`, `checkpoints/`, `best/` and `summary.json`;
        re-running the cell resumes from the last checkpoint (or only prints the summary).
        """),
        code("""
        import shutil
        from edgejax.train import run

        workdir = WORK / "quickstart"
        if SMALL and workdir.exists():
            shutil.rmtree(workdir)  # the tests always train from scratch
        summary = run(config, str(workdir))
        for key in ("status", "step", "total_steps", "best_top1", "best_epoch", "num_params",
                    "time_s", "compile_s"):
            print(f"{key:12s} {summary[key]}")
        """),
        md("## Curves\n\nEvery logged row of `metrics.jsonl`: training averages (`kind=train`) "
           "and evaluations (`kind=eval`, raw and EMA weights)."),
        code("""
        import json
        import matplotlib.pyplot as plt

        rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
        train = [r for r in rows if r["kind"] == "train"]
        evals = [r for r in rows if r["kind"] == "eval"]
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
        axes[0].plot([r["step"] for r in train], [r["loss"] for r in train], label="train")
        axes[0].plot([r["step"] for r in evals], [r["loss"] for r in evals], "o-", label="val")
        axes[0].set_title("loss"); axes[0].legend()
        axes[1].plot([r["step"] for r in evals], [r["top1"] for r in evals], "o-", label="val")
        if evals and "ema_top1" in evals[0]:
            axes[1].plot([r["step"] for r in evals], [r["ema_top1"] for r in evals], "s--", label="val, EMA")
        axes[1].plot([r["step"] for r in train], [100 * r["top1"] for r in train], alpha=0.5, label="train")
        axes[1].set_title("top-1 (%)"); axes[1].legend()
        axes[2].plot([r["step"] for r in train], [r["lr"] for r in train])
        axes[2].set_title("learning rate")
        for ax in axes:
            ax.set_xlabel("step")
        plt.tight_layout()
        plt.show()
        """),
        md("""
        ## Evaluate

        `edgejax.report.predict.predict_run` rebuilds the model from the run's `config.json`,
        loads the best checkpoint (raw or EMA weights, whichever evaluated better) and predicts
        the whole validation split in order.
        """),
        code("""
        from absl import logging as absl_logging
        from edgejax.data import build_source
        from edgejax.report.predict import predict_run

        absl_logging.set_verbosity(absl_logging.ERROR)  # orbax's notes on read-only checkpoints
        pred = predict_run(workdir)
        labels, preds, class_names = pred["labels"], pred["preds"], pred["class_names"]
        print(f"val top-1 {100 * (labels == preds).mean():.2f}% on {len(labels)} images "
              f"({'EMA' if pred['ema'] else 'raw'} weights)")
        confusion = np.zeros((len(class_names),) * 2, int)
        np.add.at(confusion, (labels, preds), 1)
        per_class = confusion.diagonal() / confusion.sum(1).clip(1)
        print("per class:", "  ".join(f"{c}: {100 * a:.0f}%" for c, a in zip(class_names, per_class)))

        val, _ = build_source("digits", "val")
        assert (np.asarray([val[i][1] for i in range(len(val))]) == labels).all()  # same order
        fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw=dict(width_ratios=[1, 1.3]))
        ax0.imshow(confusion, cmap="Blues")
        ax0.set_xlabel("predicted"); ax0.set_ylabel("true"); ax0.set_title("confusion")
        ax0.set_xticks(range(len(class_names)), class_names); ax0.set_yticks(range(len(class_names)), class_names)
        ax1.axis("off"); ax1.set_title("val images: prediction (true)")
        show = np.r_[np.flatnonzero(labels != preds)[:8], np.flatnonzero(labels == preds)][:16]
        for k, i in enumerate(show):
            sub = ax1.inset_axes([(k % 8) / 8, 0.5 - (k // 8) * 0.5, 0.12, 0.4])
            sub.imshow(val[int(i)][0]); sub.axis("off")
            sub.set_title(f"{class_names[preds[i]]} ({class_names[labels[i]]})", fontsize=8,
                          color="green" if preds[i] == labels[i] else "red")
        plt.show()
        """),
    ]


# ============================================================================================
# 02 models
def nb02():
    return [
        md('''
        # 02 · Models: create, inspect, load timm weights, reparameterise

        - list the registered models and their families, and `model_info`;
        - create a model and run it on real images;
        - load timm weights from a `.safetensors` file and compare the logits with timm's
          (when torch and timm are installed; otherwise the timm part is skipped with a note and
          the file is written from edgejax itself, so the loading path still runs);
        - reparameterise RepVGG for deployment (same outputs, fewer parameters);
        - a parameter / MAC table of a few models.
        '''),
        params('''
        MODEL = "repvgg_a0" if SMALL else "repvgg_a2"   # a RepVGG, for the reparameterisation
        RES = 64 if SMALL else 224                        # input resolution
        NUM_IMAGES = 2 if SMALL else 8
        TABLE_MODELS = (["repvgg_a0", "mobilenetv3_small_050", "convnext_atto"] if SMALL else
                        ["mobilenetv3_large_100", "mobilevitv2_050", "mobilevitv2_075",
                         "mobilevitv2_100", "repvgg_a2", "tiny_vit_21m_224", "convnext_tiny",
                         "efficientnetv2_s", "tf_efficientnetv2_s"])
        '''),
        setup("02_models"),
        md("## The registry\n\n`list_models(pattern)` takes an fnmatch pattern; aliases are "
           "the study's names (e.g. `mobilevitv2_xs`)."),
        code('''
        from edgejax.registry import get_entry

        names = edgejax.list_models()
        print(len(names), "models")
        families = {}
        for n in names:
            families.setdefault(get_entry(n).family, []).append(n)
        for family, members in families.items():
            print(f"{family:14s} {len(members):3d}  {', '.join(members[:4])}{', ...' if len(members) > 4 else ''}")
        aliases = sorted(set(edgejax.list_models(include_aliases=True)) - set(names))
        print("aliases:", ", ".join(f"{a} -> {get_entry(a).name}" for a in aliases))
        print("repvgg_*:", edgejax.list_models("repvgg_*"))
        '''),
        code('''
        info = edgejax.model_info(MODEL)
        for key, value in info.items():
            print(f"{key:16s} {value}")
        '''),
        md("An unknown name fails early with the closest registered names:"),
        code('''
        try:
            edgejax.create_model("repvgg_a3")
        except ValueError as e:
            print("ValueError:", e)
        '''),
        md('''
        ## Create a model and run it

        Models are `flax.nnx` modules returned in eval mode. Inputs are NHWC float images
        normalised with the model's `mean` / `std`. `nnx.jit` compiles the forward pass once.
        '''),
        code(LOAD_EXAMPLES),
        code('''
        import jax.numpy as jnp
        from flax import nnx
        from edgejax.data.augment import normalize

        model = edgejax.create_model(MODEL, rngs=0)   # random weights, 1000 classes
        print(f"{type(model).__name__}: {edgejax.count_params(model):,} parameters")

        images, labels, class_names = load_examples(NUM_IMAGES, RES, crop_pct=info["crop_pct"],
                                                    interpolation=info["interpolation"])
        x = normalize(jnp.asarray(images), info["mean"], info["std"])
        forward = nnx.jit(lambda m, x: m(x))
        logits = forward(model, x)
        print("input", x.shape, x.dtype, "-> logits", logits.shape)
        '''),
        md('''
        ## timm weights from a safetensors file

        `create_model(name, pretrained="file.safetensors")` reads a timm state dict (no torch
        needed) and `edgejax.convert.from_timm(name, state_dict)` converts any `{name: array}`
        mapping. `pretrained=True` fetches timm's weights from the Hugging Face Hub.

        Here the file comes from a timm model (random weights, so nothing is downloaded) when
        torch and timm are installed. Without them, the timm comparison is skipped and the file
        is written from the edgejax model above with `edgejax.convert.to_timm`, so the loading
        path is still shown.
        '''),
        code('''
        import importlib.util
        HAVE_TORCH = all(importlib.util.find_spec(m) is not None
                         for m in ("torch", "timm", "safetensors"))
        weights = WORK / f"{MODEL}.safetensors"
        if HAVE_TORCH:
            import timm, torch
            from safetensors.torch import save_file
            torch.manual_seed(0)
            timm_model = timm.create_model(MODEL, pretrained=False).eval()
            with torch.no_grad():  # non-trivial BatchNorm statistics, so folding them matters
                for m in timm_model.modules():
                    if isinstance(m, torch.nn.BatchNorm2d):
                        m.running_mean.normal_(0, 0.1)
                        m.running_var.uniform_(0.5, 1.5)
            save_file({k: v.contiguous() for k, v in timm_model.state_dict().items()}, str(weights))
            print(f"timm {timm.__version__}: wrote {weights.name} from timm.create_model({MODEL!r})")
        else:
            from safetensors.numpy import save_file
            print("NOTE: torch/timm are not installed: skipping the comparison with timm. "
                  "The safetensors file is written from the edgejax model (edgejax.convert.to_timm).")
            save_file(edgejax.convert.to_timm(model), str(weights))
        print(f"{weights.stat().st_size / 2**20:.1f} MiB")
        '''),
        code('''
        loaded = edgejax.create_model(MODEL, pretrained=str(weights))
        state_dict = edgejax.convert.read_safetensors(weights)
        print(f"{len(state_dict)} tensors, e.g.", [k for k in state_dict if "num_batches" not in k][:3])
        same = edgejax.convert.from_timm(MODEL, state_dict)      # the same, from a dict
        assert set(edgejax.convert.to_timm(same)) <= set(state_dict)   # and back to timm names
        logits_loaded = np.asarray(forward(loaded, x))
        '''),
        code('''
        from edgejax.export import relative_error

        if HAVE_TORCH:
            with torch.no_grad():  # timm takes NCHW
                reference = timm_model(torch.from_numpy(np.array(x).transpose(0, 3, 1, 2))).numpy()
            what = "timm"
        else:
            reference = np.asarray(logits)  # the model the file was written from
            what = "the edgejax model the file came from"
        err = relative_error(logits_loaded, reference)
        top5 = lambda z: np.argsort(-z, axis=-1)[:, :5]
        print(f"edgejax vs {what}: max relative error {err:.2e}; "
              f"top-5 classes equal: {bool((top5(logits_loaded) == top5(reference)).all())}")
        assert err < 1e-4, err
        '''),
        md('''
        ## Reparameterise RepVGG

        A RepVGG block trains three branches (3x3 conv + BN, 1x1 conv + BN, identity BN) and
        deploys one 3x3 conv. `edgejax.reparameterize` (= `edgejax.deploy.fuse`) folds the
        branches and every conv + BatchNorm pair; the outputs do not change.
        '''),
        code('''
        fused = edgejax.reparameterize(loaded)
        block = lambda m: m.stages[0][1]   # a block with all three branches
        print("train-time block:", {k: type(v).__name__ for k, v in vars(block(loaded)).items()
                                    if k in ("conv_kxk", "conv_1x1", "identity", "reparam_conv")})
        print("deployed block:  ", {k: type(v).__name__ for k, v in vars(block(fused)).items()
                                    if k in ("conv_kxk", "conv_1x1", "identity", "reparam_conv")})
        print(f"parameters {edgejax.count_params(loaded):,} -> {edgejax.count_params(fused):,}")
        logits_fused = np.asarray(forward(fused, x))
        err = relative_error(logits_fused, logits_loaded)
        print(f"fused vs unfused logits: max relative error {err:.2e}")
        assert err < 1e-4, err
        if HAVE_TORCH:  # timm's own reparameterisation, for comparison
            from timm.utils.model import reparameterize_model
            with torch.no_grad():
                timm_fused = reparameterize_model(timm_model)
                ref = timm_fused(torch.from_numpy(np.array(x).transpose(0, 3, 1, 2))).numpy()
            print(f"edgejax fused vs timm fused: max relative error {relative_error(logits_fused, ref):.2e}")
        '''),
        md('''
        ## Parameters and MACs

        Counted abstractly: `nnx.eval_shape` builds the model without allocating weights, and
        `edgejax.bench.count_macs` counts the multiply-accumulates of every convolution and
        matrix product in the traced forward pass (timm's and the papers' convention) at the
        model's native resolution. `top1` is timm's ImageNet figure for its default weights.
        '''),
        code('''
        from edgejax.bench import count_macs

        def row(name):
            entry = get_entry(name)
            abstract = nnx.eval_shape(lambda: edgejax.create_model(name))
            graphdef, state = nnx.split(abstract)
            res = entry.info["input_size"][1]
            spec = jax.ShapeDtypeStruct((1, res, res, 3), jnp.float32)
            macs = count_macs(lambda s, x: nnx.merge(graphdef, s)(x), state, spec)
            return dict(model=name, family=entry.family, res=res,
                        params_m=edgejax.count_params(abstract) / 1e6, gmacs=macs / 1e9,
                        top1=entry.info.get("top1"))

        table = [row(n) for n in TABLE_MODELS]
        print(f"{'model':24s} {'family':12s} {'res':>4s} {'params M':>9s} {'GMACs':>7s} {'top1':>6s}")
        for r in table:
            top1 = f"{r['top1']:.1f}" if r["top1"] else "-"
            print(f"{r['model']:24s} {r['family']:12s} {r['res']:4d} {r['params_m']:9.2f} "
                  f"{r['gmacs']:7.3f} {top1:>6s}")
        '''),
        code('''
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for r in table:
            ax.scatter(r["gmacs"], r["params_m"])
            ax.annotate(r["model"], (r["gmacs"], r["params_m"]), fontsize=8,
                        xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log"); ax.set_yscale("log")
        ax.set_xlabel("GMACs per image (native resolution)"); ax.set_ylabel("parameters (M)")
        ax.set_title("size and cost")
        plt.show()
        '''),
    ]


# ============================================================================================
# 03 augmentations
def nb03():
    return [
        md('''
        # 03 · Augmentations on real images

        `edgejax.data.augment` runs timm's batch augmentations in JAX, on the accelerator, jitted:
        RandAugment (on uint8 images), normalisation, Random Erasing, Mixup and CutMix (after
        normalisation, with mixed label targets). The images are real: ImageNet samples from
        `../shared/data` when present, else the bundled digits.
        '''),
        params('''
        SIZE = 96 if SMALL else 192        # image side
        NUM_IMAGES = 4 if SMALL else 8
        MAGNITUDES = (3, 6, 9, -9)         # columns of the op gallery (negative: the other sign)
        '''),
        setup("03_augmentations"),
        code(LOAD_EXAMPLES),
        code('''
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
                    axes[i][0].text(-0.08, 0.5, row_labels[i], transform=axes[i][0].transAxes,
                                    ha="right", va="center", fontsize=8)
            plt.tight_layout()
            plt.show()

        show([list(images)], [[class_names[i] for i in labels]])
        '''),
        md('''
        ## The RandAugment ops

        Each of timm's 15 ops ('increasing' set, as `rand-m9-mstd0.5-inc1` uses) at a few
        magnitudes (0..10); "(−)" is the other sign, which only the signed ops (rotate, shear,
        translate, and the 'increasing' colour, contrast, brightness and sharpness) use.
        `apply_op` is the code path `rand_augment` uses; all ops and magnitudes are computed by
        one jitted program.
        '''),
        code('''
        import jax.numpy as jnp
        from edgejax.data import augment

        OPS = augment.RAND_INCREASING_TRANSFORMS

        @jax.jit
        def op_gallery(image, magnitudes, signs):
            """image [H, W, 3] uint8 -> [ops, magnitudes, H, W, 3]"""
            def one(name):
                return jax.vmap(lambda m, s: augment.apply_op(image[None], name, m, s)[0])(magnitudes, signs)
            return jnp.stack([one(name) for name in OPS])

        mags = jnp.abs(jnp.asarray(MAGNITUDES, jnp.float32))
        signs = jnp.sign(jnp.asarray(MAGNITUDES, jnp.float32))
        gallery = np.asarray(op_gallery(jnp.asarray(images[0]), mags, signs))
        show([[images[0]] + list(g) for g in gallery],
             titles=[["original"] + [f"m={abs(m)}" + (" (−)" if m < 0 else "") for m in MAGNITUDES]
                     for _ in OPS],
             row_labels=list(OPS), size=1.5)
        '''),
        md('''
        ## RandAugment on a batch

        `rand_augment(key, images)`: per image, 2 ops drawn at random, each applied with
        probability 0.5 at magnitude ~ N(9, 0.5). Each row is another key; labels are unchanged.
        '''),
        code('''
        rand_augment = jax.jit(augment.rand_augment)
        batch = jnp.asarray(images)
        rows = [images] + [np.asarray(rand_augment(jax.random.key(seed), batch)) for seed in range(3)]
        names = [class_names[i] for i in labels]
        show(rows, titles=[names] * len(rows), row_labels=["original", "key 0", "key 1", "key 2"])
        '''),
        md('''
        ## Mixup and CutMix

        `mixup_cutmix` pairs image *i* with image *B-1-i* and mixes the one-hot targets with the
        same λ (CutMix: λ corrected to the pasted box's real area). The titles show each image's
        target: the two largest entries of the mixed label vector.
        '''),
        code('''
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
                out.append("\\n".join(f"{t[k]:.2f} {class_names[k][:14]}" for k in top if t[k] > 0.005))
            return out

        # One compiled program for every mode: the switch probability and the label smoothing
        # are traced arguments (always pass both, or jit compiles another program).
        mix = jax.jit(partial(augment.mixup_cutmix, mixup_alpha=0.8, cutmix_alpha=1.0,
                              num_classes=num_classes, return_lam=True))
        rows, titles, row_labels = [], [], []
        for k, (mode, switch_prob) in enumerate((("Mixup α=0.8", 0.0), ("CutMix α=1.0", 1.0),
                                                 ("either, p=0.5", 0.5))):
            for seed in (2 * k, 2 * k + 1):
                mixed, targets, lam = mix(jax.random.key(seed), x, jnp.asarray(labels),
                                          switch_prob=switch_prob, label_smoothing=0.0)
                rows.append(denormalize(mixed))
                titles.append(target_titles(targets))
                row_labels.append(f"{mode}\\nλ={float(lam):.2f}")
        show(rows, titles, row_labels)
        '''),
        md('''
        ## The whole training recipe

        timm's order, as the training step applies it (`augment.batch_augment` does it in one
        call): RandAugment on uint8 → normalise → Random Erasing → Mixup/CutMix with label
        smoothing. Built here from the pieces above (already compiled).
        '''),
        code('''
        key = jax.random.key(7)
        k_ra, k_re, k_mix = jax.random.split(key, 3)
        step = rand_augment(k_ra, batch)
        step = augment.normalize(step)
        step = jax.jit(partial(augment.random_erasing, prob=0.5))(k_re, step)
        out, targets, lam = mix(k_mix, step, jnp.asarray(labels), switch_prob=0.5,
                                label_smoothing=0.1)
        show([denormalize(out)], [target_titles(targets)])
        '''),
    ]


# ============================================================================================
# 04 hyperparameter study
def nb04():
    return [
        md("""
        # 04 · A small hyperparameter study

        A sweep is a file whose `get_config()` returns an `edgejax.sweep.sweep_config()` filled
        in: the base training config, the search space, the sampler and the pruner. Each trial is
        a training run in `<study-dir>/trials/<NNNN>/`; the Optuna study lives in
        `<study-dir>/study.db`, so re-running resumes. `edgejax.report` turns study and run
        directories into Markdown tables and plots.

        Here: the quickstart (digits) with horizontal flips on or off (a mirrored 2 is not a 2)
        and, with the full settings, three learning rates. From a shell:

        ```bash
        python -m edgejax.sweep --config sweep_digits.py --study-dir runs/digits_sweep --set num_epochs=3
        python -m edgejax.report runs/digits_sweep --out runs/digits_report
        ```
        """),
        params("""
        LRS = [4e-3] if SMALL else [1e-3, 4e-3, 1.6e-2]   # AdamW learning rates (grid)
        HFLIPS = [0.0, 0.5]                                 # horizontal-flip probabilities (grid)
        # SMALL: the same steps as 01_quickstart's SMALL run, so a shared compilation cache
        # (the tests set JAX_COMPILATION_CACHE_DIR) serves both notebooks.
        OVERRIDES = ([("num_steps", 6), ("eval.every_steps", 3), ("global_batch_size", 32),
                      ("ema.decay", 0.0), ("log.progress", False), ("log.every_steps", 1)]
                     if SMALL else [("num_epochs", 3.0), ("eval.every_epochs", 1.0)])
        """),
        setup("04_hparam_study"),
        md("""
        ## The sweep config

        Written to a file, as you would keep it in `configs/sweeps/`. `grid=` gives the values of
        the grid sampler; with `sampler="tpe"` the same space is searched instead.
        """),
        code("""
        import textwrap

        sweep_file = WORK / "sweep_digits.py"
        sweep_file.write_text(textwrap.dedent(f'''
            from edgejax.sweep import categorical, loguniform, sweep_config

            def get_config(arg=None):
                s = sweep_config()
                s.name = "digits_flip_lr"
                s.description = "quickstart on digits: horizontal flip x learning rate"
                s.base = {str(ROOT / "configs" / "quickstart.py")!r}
                s.space = (categorical("data.hflip", {HFLIPS!r}),
                           loguniform("optimizer.lr", 1e-3, 2e-2, grid={LRS!r}))
                s.sampler = "grid"
                s.pruner = "none"
                return s
            '''))

        from edgejax.sweep import load_sweep
        sweep = load_sweep(str(sweep_file))
        print(sweep)
        """),
        md("""
        ## Run it

        `SweepRunner(sweep, study_dir, overrides=...).run()` is what `python -m edgejax.sweep`
        calls. JAX's persistent compilation cache (the command line keeps one in
        `<study-dir>/jax_cache`) lets trials whose training step compiles to the same program
        skip the compilation: the flip probability only changes the CPU data pipeline.
        """),
        code("""
        import shutil
        from edgejax.sweep import SweepRunner

        study_dir = WORK / "study"
        if SMALL and study_dir.exists():
            shutil.rmtree(study_dir)  # the tests always start a fresh study
        if not jax.config.jax_compilation_cache_dir:  # unless one is set already
            jax.config.update("jax_compilation_cache_dir", str(study_dir / "jax_cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

        runner = SweepRunner(sweep, study_dir, overrides=OVERRIDES)
        result = runner.run()
        {k: result[k] for k in ("complete", "pruned", "failed", "time_s", "best")}
        """),
        md("""
        ## The report

        `build_report(dirs, out)` writes `README.md` (tables, plots linked), `tables.json` and
        the PNGs: the trials table, top-1 per epoch of every trial, the optimisation history,
        parameter importances (with enough trials), every run's curves and the confusion matrix
        of the best run.
        """),
        code("""
        from IPython.display import Image, Markdown, display
        from edgejax.report import build_report

        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)  # orbax's notes on read-only checkpoints
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # optuna: importances of a tiny study
            report = build_report([study_dir], WORK / "report", title="digits: flip x learning rate")
        text = report["markdown"].read_text().split("## All runs")[0]
        display(Markdown("\\n".join(line for line in text.splitlines()
                                    if not line.startswith("!["))))  # the plots are below
        """),
        code("""
        for path in report["plots"]:
            if "curves/" not in path.as_posix():  # the per-run curves are in the README
                print(path.name)
                display(Image(filename=str(path), width=520))
        """),
    ]


# ============================================================================================
# 05 deploy
def nb05():
    return [
        md("""
        # 05 · Deploy: benchmark, fuse, export to ONNX, run in onnxruntime

        From a trained (here: randomly initialised) model to a file another runtime executes:

        1. benchmark the model as trained (latency, parameters, MACs, compile time);
        2. fuse it for inference (`edgejax.deploy.fuse`: RepVGG branches -> one conv, every
           conv + BatchNorm folded) and benchmark again;
        3. export the fused model to ONNX (through jax2onnx) and to serialized StableHLO;
        4. run the ONNX file in onnxruntime and compare outputs and latency with JAX.

        The same from a shell:

        ```bash
        python -m edgejax.bench --models repvgg_a2 --batch-sizes 1,32 --deploy
        python -m edgejax.export --model repvgg_a2 --pretrained repvgg_a2.safetensors \\
            --format onnx --out repvgg_a2.onnx --dynamic-batch --deploy
        ```

        Latencies are measured on whatever machine runs the notebook; on a shared CPU they are noisy.
        """),
        params("""
        MODEL = "repvgg_a0" if SMALL else "repvgg_a2"
        RES = 64 if SMALL else 224
        BATCH = 1 if SMALL else 8          # batch size of the latency measurements
        REPS = 5 if SMALL else 50          # timed calls per measurement
        MAX_TIME_S = 3.0 if SMALL else 10.0
        """),
        setup("05_deploy"),
        code(LOAD_EXAMPLES),
        md("""
        ## The model

        `edgejax.bench.build_model` builds `create_model`'s structure with random weights *and*
        random BatchNorm statistics drawn by numpy (fast, and folding the statistics is then
        really exercised). To deploy trained weights instead, use
        `create_model(MODEL, pretrained="file.safetensors")` or a training checkpoint.
        """),
        code("""
        import time
        import jax.numpy as jnp
        from flax import nnx
        from edgejax.bench import benchmark_model, build_model, format_table
        from edgejax.data.augment import normalize
        from edgejax.export import relative_error

        info = edgejax.model_info(MODEL)
        model = build_model(MODEL)
        images, labels, class_names = load_examples(max(BATCH, 2), RES)
        x = np.asarray(normalize(jnp.asarray(images), info["mean"], info["std"]))
        print(MODEL, f"{edgejax.count_params(model):,} parameters; input {x.shape}")
        """),
        md("## 1. Benchmark as trained"),
        code("""
        records = [benchmark_model(model, BATCH, resolution=RES, name=MODEL, reps=REPS,
                                   max_time_s=MAX_TIME_S, warmup=2)]
        print(format_table(records))
        """),
        md("""
        ## 2. Fuse and benchmark again

        `fuse` returns a new model (the original is untouched) whose outputs equal the
        original's in eval mode.
        """),
        code("""
        from edgejax.deploy import fuse, unfused_batchnorms

        fused = fuse(model)
        forward = nnx.jit(lambda m, x: m(x))
        y_model = np.asarray(forward(model, x))
        y_fused = np.asarray(forward(fused, x))
        print(f"parameters {edgejax.count_params(model):,} -> {edgejax.count_params(fused):,}; "
              f"BatchNorms left: {len(unfused_batchnorms(fused))}")
        print(f"fused vs original logits: max relative error {relative_error(y_fused, y_model):.2e}")
        assert relative_error(y_fused, y_model) < 1e-4

        records.append(benchmark_model(fused, BATCH, resolution=RES, name=MODEL, deploy=True,
                                       params_train=edgejax.count_params(model), reps=REPS,
                                       max_time_s=MAX_TIME_S, warmup=2))
        print(format_table(records))
        """),
        md("""
        ## 3. Export

        ONNX: input `input` `[B, H, W, 3]` float32 NHWC (normalised like the JAX model's input),
        output `logits`; `dynamic_batch=True` leaves the batch dimension symbolic. StableHLO:
        `jax.export` with the weights embedded, loadable by any JAX program.
        """),
        code("""
        from edgejax.export import export_onnx, export_stablehlo, load_stablehlo, onnx_session, run_onnx

        onnx_path = WORK / f"{MODEL}_fused.onnx"
        t0 = time.perf_counter()
        export_onnx(fused, str(onnx_path), resolution=RES, dynamic_batch=True)
        print(f"ONNX export: {time.perf_counter() - t0:.1f} s")
        for f in sorted(WORK.glob(onnx_path.name + "*")):  # the graph (+ external weights, if any)
            print(f"  {f.name:32s} {f.stat().st_size / 2**20:6.1f} MiB")

        import onnx
        graph = onnx.load(str(onnx_path)).graph
        ops = {}
        for node in graph.node:
            ops[node.op_type] = ops.get(node.op_type, 0) + 1
        print("inputs:", [(i.name, [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim])
                          for i in graph.input])
        print("ops:", dict(sorted(ops.items(), key=lambda kv: -kv[1])))

        hlo_path = WORK / f"{MODEL}_fused.stablehlo"
        export_stablehlo(fused, str(hlo_path), resolution=RES, batch_size=x.shape[0])
        print(f"  {hlo_path.name:32s} {hlo_path.stat().st_size / 2**20:6.1f} MiB")
        """),
        md("## 4. Run in onnxruntime and compare"),
        code("""
        session = onnx_session(str(onnx_path))
        y_onnx = run_onnx(session, x)
        y_hlo = np.asarray(load_stablehlo(str(hlo_path)).call(jnp.asarray(x)))
        for what, y in (("onnxruntime", y_onnx), ("StableHLO", y_hlo)):
            err = relative_error(y, y_model)
            same = bool((y.argmax(-1) == y_model.argmax(-1)).all())
            print(f"{what:12s} vs JAX (unfused): max relative error {err:.2e}, same top-1: {same}")
            assert err < 1e-3, (what, err)
        """),
        code("""
        def latency_ms(call, reps=REPS, warmup=2):
            for _ in range(warmup):
                call()
            times = []
            t_end = time.perf_counter() + MAX_TIME_S
            while len(times) < reps and (len(times) < 3 or time.perf_counter() < t_end):
                t0 = time.perf_counter()
                call()
                times.append((time.perf_counter() - t0) * 1e3)
            return float(np.median(times))

        xb = x[:BATCH]
        rows = [(r["model"] + (" fused" if r["deploy"] else ""), "JAX (XLA)", r["lat_ms_p50"])
                for r in records]
        rows.append((MODEL + " fused", "onnxruntime", latency_ms(lambda: run_onnx(session, xb))))
        print(f"batch {BATCH}, {RES}x{RES}, p50 latency on {jax.devices()[0].device_kind}:")
        for name, runtime, ms in rows:
            print(f"  {name:22s} {runtime:12s} {ms:8.2f} ms")
        """),
        code("""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 2.5))
        labels_ = [f"{name}\\n{runtime}" for name, runtime, _ in rows]
        ax.barh(labels_, [ms for *_, ms in rows], color=["C0", "C1", "C2"][:len(rows)])
        ax.invert_yaxis()
        ax.set_xlabel(f"p50 latency, ms (batch {BATCH}, {RES}px)")
        plt.tight_layout()
        plt.show()
        """),
    ]


NOTEBOOKS = {
    "01_quickstart.ipynb": nb01,
    "02_models.ipynb": nb02,
    "03_augmentations.ipynb": nb03,
    "04_hparam_study.ipynb": nb04,
    "05_deploy.ipynb": nb05,
}


def build(name: str) -> nbformat.NotebookNode:
    stem = name.split(".")[0]
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for i, (kind, src) in enumerate(NOTEBOOKS[name]()):
        cell = (nbformat.v4.new_markdown_cell(src) if kind == "markdown"
                else nbformat.v4.new_code_cell(src))
        cell.id = f"{stem.replace('_', '-')}-{i:02d}"  # stable ids: regenerating gives no diff
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(name: str) -> str:
    return nbformat.writes(build(name)) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if a notebook is not what this script generates")
    parser.add_argument("names", nargs="*", help="notebooks to write (default: all)")
    args = parser.parse_args(argv)
    stale = []
    for name in args.names or NOTEBOOKS:
        path = NOTEBOOK_DIR / name
        text = render(name)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            NOTEBOOK_DIR.mkdir(exist_ok=True)
            path.write_text(text)
            print("wrote", path.relative_to(ROOT))
    if stale:
        print("out of date (run python tools/make_notebooks.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
