# %% [markdown]
# # 05 · Deploy: benchmark, fuse, export to ONNX, run in onnxruntime
#
# From a trained (here: randomly initialised) model to a file another runtime executes:
#
# 1. benchmark the model as trained (latency, parameters, MACs, compile time);
# 2. fuse it for inference (`edgejax.deploy.fuse`: RepVGG branches -> one conv, every
#    conv + BatchNorm folded) and benchmark again;
# 3. export the fused model to ONNX (through jax2onnx) and to serialized StableHLO;
# 4. run the ONNX file in onnxruntime and compare outputs and latency with JAX.
#
# The same from a shell:
#
# ```bash
# python -m edgejax.bench --models repvgg_a2 --batch-sizes 1,32 --deploy
# python -m edgejax.export --model repvgg_a2 --pretrained repvgg_a2.safetensors \
#     --format onnx --out repvgg_a2.onnx --dynamic-batch --deploy
# ```
#
# Latencies are measured on whatever machine runs the notebook; on a shared CPU they are noisy.

# %%
# Parameters. SMALL = tiny settings that run in seconds on a CPU (the tests set
# EDGEJAX_NB_SMALL=1); otherwise settings meant for a person. Change them freely.
import os

SMALL = os.environ.get("EDGEJAX_NB_SMALL", "0") == "1"
MODEL = "repvgg_a0" if SMALL else "repvgg_a2"
RES = 64 if SMALL else 224
BATCH = 1 if SMALL else 8  # batch size of the latency measurements
REPS = 5 if SMALL else 50  # timed calls per measurement
MAX_TIME_S = 3.0 if SMALL else 10.0

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
    / "05_deploy"
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


# %% [markdown]
# ## The model
#
# `edgejax.bench.build_model` builds `create_model`'s structure with random weights *and*
# random BatchNorm statistics drawn by numpy (fast, and folding the statistics is then
# really exercised). To deploy trained weights instead, use
# `create_model(MODEL, pretrained="file.safetensors")` or a training checkpoint.

# %%
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

# %% [markdown]
# ## 1. Benchmark as trained

# %%
records = [
    benchmark_model(
        model, BATCH, resolution=RES, name=MODEL, reps=REPS, max_time_s=MAX_TIME_S, warmup=2
    )
]
print(format_table(records))

# %% [markdown]
# ## 2. Fuse and benchmark again
#
# `fuse` returns a new model (the original is untouched) whose outputs equal the
# original's in eval mode.

# %%
from edgejax.deploy import fuse, unfused_batchnorms

fused = fuse(model)
forward = nnx.jit(lambda m, x: m(x))
y_model = np.asarray(forward(model, x))
y_fused = np.asarray(forward(fused, x))
print(
    f"parameters {edgejax.count_params(model):,} -> {edgejax.count_params(fused):,}; "
    f"BatchNorms left: {len(unfused_batchnorms(fused))}"
)
print(f"fused vs original logits: max relative error {relative_error(y_fused, y_model):.2e}")
assert relative_error(y_fused, y_model) < 1e-4

records.append(
    benchmark_model(
        fused,
        BATCH,
        resolution=RES,
        name=MODEL,
        deploy=True,
        params_train=edgejax.count_params(model),
        reps=REPS,
        max_time_s=MAX_TIME_S,
        warmup=2,
    )
)
print(format_table(records))

# %% [markdown]
# ## 3. Export
#
# ONNX: input `input` `[B, H, W, 3]` float32 NHWC (normalised like the JAX model's input),
# output `logits`; `dynamic_batch=True` leaves the batch dimension symbolic. StableHLO:
# `jax.export` with the weights embedded, loadable by any JAX program.

# %%
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
print(
    "inputs:",
    [
        (i.name, [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim])
        for i in graph.input
    ],
)
print("ops:", dict(sorted(ops.items(), key=lambda kv: -kv[1])))

hlo_path = WORK / f"{MODEL}_fused.stablehlo"
export_stablehlo(fused, str(hlo_path), resolution=RES, batch_size=x.shape[0])
print(f"  {hlo_path.name:32s} {hlo_path.stat().st_size / 2**20:6.1f} MiB")

# %% [markdown]
# ## 4. Run in onnxruntime and compare

# %%
session = onnx_session(str(onnx_path))
y_onnx = run_onnx(session, x)
y_hlo = np.asarray(load_stablehlo(str(hlo_path)).call(jnp.asarray(x)))
for what, y in (("onnxruntime", y_onnx), ("StableHLO", y_hlo)):
    err = relative_error(y, y_model)
    same = bool((y.argmax(-1) == y_model.argmax(-1)).all())
    print(f"{what:12s} vs JAX (unfused): max relative error {err:.2e}, same top-1: {same}")
    assert err < 1e-3, (what, err)


# %%
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
rows = [
    (r["model"] + (" fused" if r["deploy"] else ""), "JAX (XLA)", r["lat_ms_p50"]) for r in records
]
rows.append((MODEL + " fused", "onnxruntime", latency_ms(lambda: run_onnx(session, xb))))
print(f"batch {BATCH}, {RES}x{RES}, p50 latency on {jax.devices()[0].device_kind}:")
for name, runtime, ms in rows:
    print(f"  {name:22s} {runtime:12s} {ms:8.2f} ms")

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6, 2.5))
labels_ = [f"{name}\n{runtime}" for name, runtime, _ in rows]
ax.barh(labels_, [ms for *_, ms in rows], color=["C0", "C1", "C2"][: len(rows)])
ax.invert_yaxis()
ax.set_xlabel(f"p50 latency, ms (batch {BATCH}, {RES}px)")
plt.tight_layout()
plt.show()
