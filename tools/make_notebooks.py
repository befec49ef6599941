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
    from pathlib import Path

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
        md('''
        # 01 · Quickstart: train, plot, evaluate

        The command-line quickstart in a notebook: check the install, train the quickstart
        config (MobileNetV3-Small 0.5 from scratch on the bundled handwritten digits), plot the
        training curves and evaluate the result. The same run from a shell:

        ```bash
        python -m edgejax.train --config configs/quickstart.py --workdir runs/quickstart
        ```
        '''),
        params('''
        EPOCHS = 0.5 if SMALL else 15.0        # the config's 15 epochs reach ~93% val top-1
        EVAL_EVERY_EPOCHS = 0.25 if SMALL else 5.0
        '''),
        setup("01_quickstart"),
        md("## Install check\n\nThe package imports, the devices JAX sees, and one forward pass."),
        code('''
        import importlib
        for mod in ("jax", "flax", "optax", "grain", "orbax.checkpoint", "ml_collections"):
            m = importlib.import_module(mod)
            print(f"{mod:18s} {getattr(m, '__version__', '')}")
        print("devices:", jax.devices())
        print(len(edgejax.list_models()), "models registered")
        '''),
        md("## The config\n\nA `ml_collections.ConfigDict`; the notebook shortens the run when `SMALL`."),
        code('''
        import importlib.util
        spec = importlib.util.spec_from_file_location("quickstart_config", ROOT / "configs" / "quickstart.py")
        cfg_module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(cfg_module)
        config = cfg_module.get_config()
        with config.unlocked():
            config.num_epochs = EPOCHS
            config.eval.every_epochs = EVAL_EVERY_EPOCHS
            config.log.every_steps = 2 if SMALL else config.log.every_steps
        print(config)
        '''),
        md("## Train\n\n`edgejax.train.run(config, workdir)` is what the command line calls. "
           "Re-running the cell resumes from the last checkpoint (or only prints the summary)."),
        code('''
        import shutil, time
        from edgejax.train import run

        workdir = WORK / "quickstart"
        if SMALL and workdir.exists():
            shutil.rmtree(workdir)  # the tests always train from scratch
        t0 = time.perf_counter()
        summary = run(config, str(workdir))
        print(f"{time.perf_counter() - t0:.0f} s")
        summary
        '''),
        md("## Curves\n\nThe run directory holds the metrics the loop logged."),
        code('''
        sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*") if p.is_file())[:30]
        '''),
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
        magnitudes (0..10). `apply_op` is the code path `rand_augment` uses; all ops and
        magnitudes are computed by one jitted program.
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
             titles=[["original"] + [f"m={m}" for m in MAGNITUDES] for _ in OPS],
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
        for mode, switch_prob in (("Mixup α=0.8", 0.0), ("CutMix α=1.0", 1.0), ("either, p=0.5", 0.5)):
            for seed in range(2):
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


NOTEBOOKS = {
    "01_quickstart.ipynb": nb01,
    "02_models.ipynb": nb02,
    "03_augmentations.ipynb": nb03,
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
