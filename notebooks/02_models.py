# %% [markdown]
# # 02 · Models: create, inspect, load timm weights, reparameterise
#
# - list the registered models and their families, and `model_info`;
# - create a model and run it on real images;
# - load timm weights from a `.safetensors` file and compare the logits with timm's
#   (when torch and timm are installed; otherwise the timm part is skipped with a note and
#   the file is written from edgejax itself, so the loading path still runs);
# - reparameterise RepVGG for deployment (same outputs, fewer parameters);
# - a parameter / MAC table of a few models.

# %%
# Parameters. SMALL = tiny settings that run in seconds on a CPU (the tests set
# EDGEJAX_NB_SMALL=1); otherwise settings meant for a person. Change them freely.
import os

SMALL = os.environ.get("EDGEJAX_NB_SMALL", "0") == "1"
MODEL = "repvgg_a0" if SMALL else "repvgg_a2"  # a RepVGG, for the reparameterisation
RES = 64 if SMALL else 224  # input resolution
NUM_IMAGES = 2 if SMALL else 8
TABLE_MODELS = (
    ["repvgg_a0", "mobilenetv3_small_050", "convnext_atto"]
    if SMALL
    else [
        "mobilenetv3_large_100",
        "mobilevitv2_050",
        "mobilevitv2_075",
        "mobilevitv2_100",
        "repvgg_a2",
        "tiny_vit_21m_224",
        "convnext_tiny",
        "efficientnetv2_s",
        "tf_efficientnetv2_s",
    ]
)

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
    / "02_models"
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
# ## The registry
#
# `list_models(pattern)` takes an fnmatch pattern; aliases are the study's names (e.g. `mobilevitv2_xs`).

# %%
from edgejax.registry import get_entry

names = edgejax.list_models()
print(len(names), "models")
families = {}
for n in names:
    families.setdefault(get_entry(n).family, []).append(n)
for family, members in families.items():
    print(
        f"{family:14s} {len(members):3d}  {', '.join(members[:4])}{', ...' if len(members) > 4 else ''}"
    )
aliases = sorted(set(edgejax.list_models(include_aliases=True)) - set(names))
print("aliases:", ", ".join(f"{a} -> {get_entry(a).name}" for a in aliases))
print("repvgg_*:", edgejax.list_models("repvgg_*"))

# %%
info = edgejax.model_info(MODEL)
for key, value in info.items():
    print(f"{key:16s} {value}")

# %% [markdown]
# An unknown name fails early with the closest registered names:

# %%
try:
    edgejax.create_model("repvgg_a3")
except ValueError as e:
    print("ValueError:", e)

# %% [markdown]
# ## Create a model and run it
#
# Models are `flax.nnx` modules returned in eval mode. Inputs are NHWC float images
# normalised with the model's `mean` / `std`. `nnx.jit` compiles the forward pass once.

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
import jax.numpy as jnp
from flax import nnx
from edgejax.data.augment import normalize

model = edgejax.create_model(MODEL, rngs=0)  # random weights, 1000 classes
print(f"{type(model).__name__}: {edgejax.count_params(model):,} parameters")

images, labels, class_names = load_examples(
    NUM_IMAGES, RES, crop_pct=info["crop_pct"], interpolation=info["interpolation"]
)
x = normalize(jnp.asarray(images), info["mean"], info["std"])
forward = nnx.jit(lambda m, x: m(x))
logits = forward(model, x)
print("input", x.shape, x.dtype, "-> logits", logits.shape)

# %% [markdown]
# ## timm weights from a safetensors file
#
# `create_model(name, pretrained="file.safetensors")` reads a timm state dict (no torch
# needed) and `edgejax.convert.from_timm(name, state_dict)` converts any `{name: array}`
# mapping. `pretrained=True` fetches timm's weights from the Hugging Face Hub.
#
# Here the file comes from a timm model (random weights, so nothing is downloaded) when
# torch and timm are installed. Without them, the timm comparison is skipped and the file
# is written from the edgejax model above with `edgejax.convert.to_timm`, so the loading
# path is still shown.

# %%
import importlib.util

HAVE_TORCH = all(importlib.util.find_spec(m) is not None for m in ("torch", "timm", "safetensors"))
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

    print(
        "NOTE: torch/timm are not installed: skipping the comparison with timm. "
        "The safetensors file is written from the edgejax model (edgejax.convert.to_timm)."
    )
    save_file(edgejax.convert.to_timm(model), str(weights))
print(f"{weights.stat().st_size / 2**20:.1f} MiB")

# %%
loaded = edgejax.create_model(MODEL, pretrained=str(weights))
state_dict = edgejax.convert.read_safetensors(weights)
print(f"{len(state_dict)} tensors, e.g.", [k for k in state_dict if "num_batches" not in k][:3])
same = edgejax.convert.from_timm(MODEL, state_dict)  # the same, from a dict
assert set(edgejax.convert.to_timm(same)) <= set(state_dict)  # and back to timm names
logits_loaded = np.asarray(forward(loaded, x))

# %%
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
print(
    f"edgejax vs {what}: max relative error {err:.2e}; "
    f"top-5 classes equal: {bool((top5(logits_loaded) == top5(reference)).all())}"
)
assert err < 1e-4, err

# %% [markdown]
# ## Reparameterise RepVGG
#
# A RepVGG block trains three branches (3x3 conv + BN, 1x1 conv + BN, identity BN) and
# deploys one 3x3 conv. `edgejax.reparameterize` (= `edgejax.deploy.fuse`) folds the
# branches and every conv + BatchNorm pair; the outputs do not change.

# %%
fused = edgejax.reparameterize(loaded)
block = lambda m: m.stages[0][1]  # a block with all three branches
print(
    "train-time block:",
    {
        k: type(v).__name__
        for k, v in vars(block(loaded)).items()
        if k in ("conv_kxk", "conv_1x1", "identity", "reparam_conv")
    },
)
print(
    "deployed block:  ",
    {
        k: type(v).__name__
        for k, v in vars(block(fused)).items()
        if k in ("conv_kxk", "conv_1x1", "identity", "reparam_conv")
    },
)
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
    print(
        f"edgejax fused vs timm fused: max relative error {relative_error(logits_fused, ref):.2e}"
    )

# %% [markdown]
# ## Parameters and MACs
#
# Counted abstractly: `nnx.eval_shape` builds the model without allocating weights, and
# `edgejax.bench.count_macs` counts the multiply-accumulates of every convolution and
# matrix product in the traced forward pass (timm's and the papers' convention) at the
# model's native resolution. `top1` is timm's ImageNet figure for its default weights.

# %%
from edgejax.bench import count_macs


def row(name):
    entry = get_entry(name)
    abstract = nnx.eval_shape(lambda: edgejax.create_model(name))
    res = entry.info["input_size"][1]
    spec = jax.ShapeDtypeStruct((1, res, res, 3), jnp.float32)
    macs = count_macs(abstract, spec)
    return dict(
        model=name,
        family=entry.family,
        res=res,
        params_m=edgejax.count_params(abstract) / 1e6,
        gmacs=macs / 1e9,
        top1=entry.info.get("top1"),
    )


table = [row(n) for n in TABLE_MODELS]
print(f"{'model':24s} {'family':12s} {'res':>4s} {'params M':>9s} {'GMACs':>7s} {'top1':>6s}")
for r in table:
    top1 = f"{r['top1']:.1f}" if r["top1"] else "-"
    print(
        f"{r['model']:24s} {r['family']:12s} {r['res']:4d} {r['params_m']:9.2f} "
        f"{r['gmacs']:7.3f} {top1:>6s}"
    )

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6, 4))
for r in table:
    ax.scatter(r["gmacs"], r["params_m"])
    ax.annotate(
        r["model"],
        (r["gmacs"], r["params_m"]),
        fontsize=8,
        xytext=(3, 3),
        textcoords="offset points",
    )
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("GMACs per image (native resolution)")
ax.set_ylabel("parameters (M)")
ax.set_title("size and cost")
plt.show()
