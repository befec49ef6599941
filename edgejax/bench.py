"""Benchmark edgejax models: latency, throughput, compile time, parameters, FLOPs, size, memory.

Command line (``python -m edgejax.bench --help``)::

    python -m edgejax.bench --models paper --batch-sizes 1,8,32,128,256,512 --resolution 224 \\
        --dtype bfloat16 --mode infer [--deploy] [--json out.json]

Python::

    from edgejax.bench import benchmark
    records = benchmark(["repvgg_a2"], batch_sizes=[1, 32], dtype="float32", deploy=True)

One record (a ``dict``) per model and batch size, keys:

- ``model mode dtype batch_size resolution deploy backend device``
- ``params`` (trainable; the fused count with ``deploy``), ``params_train`` (before fusing)
- ``gmacs`` (per image: multiply-accumulates of every convolution and matrix product in the
  forward pass, counted from the jaxpr, the convention of timm's and the papers' tables) and
  ``gflops`` (per image: XLA's ``cost_analysis()`` of the compiled program, which also counts
  elementwise work; for ``mode='train'`` the whole step: forward, backward and update)
- ``size_mb_fp32`` / ``size_mb_bf16``: the weights (parameters + BatchNorm statistics) in MiB
- ``trace_s`` (trace + lower) and ``compile_s`` (XLA compile), outside the timed loop
- ``lat_ms_p50 lat_ms_p90 lat_ms_p99 lat_ms_mean lat_ms_min``: per call, device-synchronised
  (``block_until_ready``), after ``warmup`` calls; ``reps`` the number of timed calls
- ``img_s``: ``batch_size / p50``
- ``mem_mb``: XLA's static estimate of the program's memory (arguments + outputs + temporaries
  - aliased), every backend; ``peak_mem_mb``: the device's reported high-water mark
  (``memory_stats()['peak_bytes_in_use']``, process-wide, GPU/TPU only; ``None`` on CPU)

Infer mode times ``model(x)`` in eval mode with the weights passed as arguments (or, with
``params_as_constants=True``, closed over as compile-time constants). Train mode times one SGD
(momentum 0.9) step on cross-entropy with label smoothing 0.1 (what ``shared/bench/timm_baseline.py``
times for timm), in train mode, with the state donated.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from edgejax.layers.constants import STUDY_MODELS

__all__ = [
    "PAPER_MODELS",
    "benchmark",
    "benchmark_model",
    "resolve_models",
    "count_macs",
    "validate_resolution",
    "format_table",
    "main",
]

PAPER_MODELS = STUDY_MODELS
_DTYPES = ("float32", "bfloat16", "float16")
_MODES = ("infer", "train")


# ----------------------------------------------------------------------------------------------
# Input checking (everything here runs before anything compiles)


def add_torch_python_flag(parser: argparse.ArgumentParser) -> None:
    """``--torch-python PY``: the interpreter that has torch + timm, for the benchmarks that run
    timm beside edgejax (default ``$EDGEJAX_TORCH_PYTHON``, else the running one). The names the
    scripts used before (``--baseline-python``, ``--timm-python``) are still accepted."""
    default = os.environ.get("EDGEJAX_TORCH_PYTHON", sys.executable)
    parser.add_argument(
        "--torch-python",
        dest="torch_python",
        default=default,
        metavar="PY",
        help="a Python with torch + timm, run beside for ratios (default: "
        "$EDGEJAX_TORCH_PYTHON, else this one)",
    )
    for old in ("--baseline-python", "--timm-python"):
        parser.add_argument(old, dest="torch_python", help=argparse.SUPPRESS)


def resolve_models(spec: str | Sequence[str]) -> list[str]:
    """Model names from a comma list / sequence; ``paper`` expands to the nine paper models and a
    glob (``repvgg_*``) to the matching registered names. Unknown names raise ``ValueError`` with
    the closest registered names."""
    from .registry import get_entry, list_models

    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for item in items:
        if not item:
            continue
        if item == "paper":
            expanded = list(PAPER_MODELS)
        elif any(c in item for c in "*?["):
            expanded = list_models(item)
            if not expanded:
                raise ValueError(f"no registered model matches {item!r}; see edgejax.list_models()")
        else:
            expanded = [get_entry(item).name]  # ValueError with close matches
        names += [n for n in expanded if n not in names]
    if not names:
        raise ValueError("no model given (e.g. --models repvgg_a2,mobilenetv3_large_100 or paper)")
    return names


def _check_batch_sizes(batch_sizes: Iterable[int]) -> list[int]:
    out = []
    for b in batch_sizes:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise ValueError(f"batch sizes must be positive integers, got {b!r}")
        out.append(int(b))
    if not out:
        raise ValueError("no batch size given")
    return out


def _abstract_model(name: str, dtype=None):
    from flax import nnx
    from .registry import create_model

    return nnx.eval_shape(lambda: create_model(name, dtype=dtype))


def validate_resolution(model, resolution: int, *, batch_size: int = 1, name: str | None = None):
    """Raise ``ValueError`` if ``model`` (concrete or ``nnx.eval_shape`` abstract) cannot take
    ``resolution`` x ``resolution`` inputs: the model's own rules (``check_input``), then an
    abstract trace of the forward pass (no compilation). Returns the output shape."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    name = name or type(model).__name__
    if (
        isinstance(resolution, bool)
        or not isinstance(resolution, (int, np.integer))
        or resolution < 1
    ):
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    spec = jax.ShapeDtypeStruct((batch_size, resolution, resolution, model.in_chans), jnp.float32)
    try:
        if hasattr(model, "check_input"):
            model.check_input(spec)
        graphdef, state = nnx.split(model)
        out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, spec)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name} does not support resolution {resolution}: {e}") from None
    return out.shape


# ----------------------------------------------------------------------------------------------
# Counting


def _subjaxprs(params: dict):
    import jax.extend as jex

    for v in params.values():
        vs = v if isinstance(v, (tuple, list)) else (v,)
        for item in vs:
            if isinstance(item, jex.core.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jex.core.Jaxpr):
                yield item


def _jaxpr_macs(jaxpr) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        prim = eqn.primitive.name
        if prim == "conv_general_dilated":
            lhs, rhs = (v.aval for v in eqn.invars[:2])
            out = eqn.outvars[0].aval
            dn = eqn.params["dimension_numbers"]
            rhs_spec = dn.rhs_spec  # (out feature, in feature, spatial...)
            k = math.prod(rhs.shape[d] for d in rhs_spec[2:]) * rhs.shape[rhs_spec[1]]
            total += math.prod(out.shape) * k // max(eqn.params.get("batch_group_count", 1), 1)
        elif prim == "dot_general":
            lhs = eqn.invars[0].aval
            (lc, _), _ = eqn.params["dimension_numbers"]
            total += math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs.shape[d] for d in lc)
        else:
            subs = list(_subjaxprs(eqn.params))
            if not subs:
                continue
            counts = [_jaxpr_macs(j) for j in subs]
            if prim == "cond":
                total += max(counts)
            elif prim == "scan":
                total += eqn.params.get("length", 1) * sum(counts)
            else:
                total += sum(counts)
    return total


def count_macs(model_or_fn, *args) -> int:
    """Multiply-accumulates of every convolution and ``dot_general`` of a model's forward,
    ``count_macs(model, x)``, or of ``fn(*args)`` (traced abstractly; ``x`` and ``args`` may be
    ``jax.ShapeDtypeStruct``; ``model`` may be abstract, from ``nnx.eval_shape``). A model's
    depthwise convs are counted as convolutions whatever the backend (on the CPU they are traced
    as shifted multiply-adds unless set to "conv", see ``edgejax.set_depthwise_impl``)."""
    import jax
    from flax import nnx

    from .layers.core import depthwise_impl

    if isinstance(model_or_fn, nnx.Module):
        with depthwise_impl(model_or_fn, "conv"):
            graphdef, state = nnx.split(model_or_fn)
        fn, args = (lambda s, *a: nnx.merge(graphdef, s)(*a)), (state, *args)
    else:
        fn = model_or_fn
    return _jaxpr_macs(jax.make_jaxpr(fn)(*args).jaxpr)


def _cost_flops(compiled) -> float | None:
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001  (not every backend implements it)
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


def _memory_estimate(compiled) -> int | None:
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001
        return None
    if m is None:
        return None
    return int(
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - m.alias_size_in_bytes
    )


def _peak_device_memory(device) -> int | None:
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001
        return None
    if not stats:
        return None
    return stats.get("peak_bytes_in_use")


def _weights_size(model) -> tuple[int, int]:
    """(elements of parameters + BatchNorm statistics, bytes of them in float32)."""
    import jax
    from flax import nnx

    leaves = jax.tree_util.tree_leaves(nnx.state(model, nnx.Param, nnx.BatchStat))
    n = int(sum(x.size for x in leaves))
    return n, 4 * n


# ----------------------------------------------------------------------------------------------
# Programs


def _infer_program(model, x, *, params_as_constants: bool):
    import jax
    from flax import nnx

    graphdef, state = nnx.split(model)
    if params_as_constants:
        fn = jax.jit(lambda x: nnx.merge(graphdef, state)(x))
        return fn, (x,)
    fn = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
    return fn, (state, x)


class _TrainLoop:
    """One jitted SGD step with the state donated; ``__call__`` advances the carried state."""

    def __init__(self, model, x, num_classes: int):
        import jax
        import jax.numpy as jnp
        import optax
        from flax import nnx

        model.train()
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        tx = optax.sgd(0.1, momentum=0.9)

        def step(params, rest, opt_state, x, y):
            def loss_fn(p, rest):
                # fresh Variables in this (grad) trace, so BatchNorm may update its statistics
                rest = jax.tree.map(lambda v: v, rest)
                m = nnx.merge(graphdef, p, rest)
                logits = m(x).astype(jnp.float32)
                labels = optax.smooth_labels(jax.nn.one_hot(y, num_classes), 0.1)
                loss = optax.softmax_cross_entropy(logits, labels).mean()
                return loss, nnx.split(m, nnx.Param, ...)[2]

            (loss, new_rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), new_rest, opt_state, loss

        self.fn = jax.jit(step, donate_argnums=(0, 1, 2))
        y = jax.random.randint(jax.random.PRNGKey(1), (x.shape[0],), 0, max(num_classes, 1))
        self.args = [params, rest, tx.init(params), x, y]
        self.compiled = None

    def lower(self):
        return self.fn.lower(*self.args)

    def __call__(self):
        params, rest, opt_state, loss = self.compiled(*self.args)
        self.args[:3] = params, rest, opt_state
        return loss


def _time_calls(
    call: Callable[[], Any], *, warmup: int, reps: int, max_time_s: float, min_reps: int = 5
) -> np.ndarray:
    import jax

    for _ in range(warmup):
        jax.block_until_ready(call())
    times = []
    start = time.perf_counter()
    while len(times) < reps:
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - t0)
        if len(times) >= min_reps and time.perf_counter() - start > max_time_s:
            break
    return np.asarray(times)


# ----------------------------------------------------------------------------------------------
# Benchmark


def _dtype(dtype):
    import jax.numpy as jnp

    if dtype is None:
        return None
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    return getattr(jnp, name)


def benchmark_model(
    model,
    batch_size: int,
    *,
    resolution: int = 224,
    dtype="float32",
    mode: str = "infer",
    name: str | None = None,
    warmup: int = 3,
    reps: int = 50,
    max_time_s: float = 10.0,
    params_as_constants: bool = False,
    params_train: int | None = None,
    deploy: bool = False,
    seed: int = 0,
) -> dict:
    """Benchmark one built model at one batch size; returns one record (see the module doc).

    ``model``: an edgejax classifier already built with the compute ``dtype`` (and fused if
    ``deploy``); train mode modifies it (train mode, updated weights), so pass a copy.
    ``reps=0`` compiles without running: the record has no timings.
    """
    import jax
    import jax.numpy as jnp
    from .registry import count_params

    if mode not in _MODES:
        raise ValueError(f"mode must be 'infer' or 'train', got {mode!r}")
    name = name or type(model).__name__
    jdtype = _dtype(dtype)
    device = jax.devices()[0]
    x = jax.random.normal(
        jax.random.PRNGKey(seed), (batch_size, resolution, resolution, model.in_chans), jnp.float32
    ).astype(jdtype)
    x_spec = jax.ShapeDtypeStruct((1, resolution, resolution, model.in_chans), jdtype)
    try:
        macs = count_macs(model, x_spec)
    except Exception as e:  # noqa: BLE001  (a count is not worth losing the timings over)
        warnings.warn(f"{name}: could not count MACs ({type(e).__name__}: {e})")
        macs = None
    n_weights, weight_bytes = _weights_size(model)
    rec: dict[str, Any] = dict(
        model=name,
        mode=mode,
        dtype=np.dtype(jdtype).name,
        batch_size=batch_size,
        resolution=resolution,
        deploy=deploy,
        backend=jax.default_backend(),
        device=getattr(device, "device_kind", str(device)),
        params=count_params(model),
        params_train=params_train or count_params(model),
        gmacs=None if macs is None else macs / 1e9,
        size_mb_fp32=weight_bytes / 2**20,
        size_mb_bf16=weight_bytes / 2**21,
        params_as_constants=params_as_constants if mode == "infer" else False,
    )

    t0 = time.perf_counter()
    if mode == "infer":
        model.eval()
        fn, args = _infer_program(model, x, params_as_constants=params_as_constants)
        lowered = fn.lower(*args)
    else:
        loop = _TrainLoop(model, x, getattr(model, "num_classes", 1000) or 1000)
        lowered = loop.lower()
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    rec.update(trace_s=t1 - t0, compile_s=t2 - t1)
    flops = _cost_flops(compiled)
    rec["gflops"] = None if flops is None else flops / batch_size / 1e9
    mem = _memory_estimate(compiled)
    rec["mem_mb"] = None if mem is None else mem / 2**20

    if reps == 0:  # compile only (e.g. to fill a persistent compilation cache)
        return rec
    if mode == "infer":
        call = lambda: compiled(*args)  # noqa: E731
    else:
        loop.compiled = compiled
        call = loop
    times = _time_calls(call, warmup=warmup, reps=reps, max_time_s=max_time_s) * 1e3
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    peak = _peak_device_memory(device)
    rec.update(
        lat_ms_p50=float(p50),
        lat_ms_p90=float(p90),
        lat_ms_p99=float(p99),
        lat_ms_mean=float(times.mean()),
        lat_ms_min=float(times.min()),
        reps=len(times),
        img_s=batch_size / (p50 / 1e3),
        peak_mem_mb=None if peak is None else peak / 2**20,
    )
    return rec


def _random_leaf(rng: np.random.Generator, key: str, kind: str, shape, dtype) -> np.ndarray:
    if kind == "BatchStat":
        if key == "var":
            return rng.uniform(0.5, 1.5, shape).astype(dtype)
        return (0.1 * rng.standard_normal(shape)).astype(dtype)
    if len(shape) >= 2:  # HWIO conv / [in, out] linear kernels: unit-variance activations
        fan_in = max(1, math.prod(shape[:-1]))
        return (rng.standard_normal(shape) / math.sqrt(fan_in)).astype(dtype)
    if key == "scale":
        return (1.0 + 0.1 * rng.standard_normal(shape)).astype(dtype)
    return (0.1 * rng.standard_normal(shape)).astype(dtype)


def build_model(name: str, *, seed: int = 0, **kwargs):
    """``create_model(name, **kwargs)`` with random weights drawn on the host by numpy.

    The structure is ``create_model``'s (built abstractly with ``nnx.eval_shape``); the weights
    are random with the variance of a fan-in initialisation and BatchNorm statistics are random
    too (so that folding them is exercised). Built this way because ``create_model``'s random
    initialisation compiles one program per op and shape: minutes for the larger models on a
    busy 2-core CPU, against seconds here. Meant for benchmarks, export checks and tests, where
    the values do not matter; for training use ``create_model``. ``pretrained`` is forwarded to
    ``create_model``. Falls back to ``create_model`` for a model with other kinds of state.
    """
    import jax.numpy as jnp
    from flax import nnx
    from .registry import create_model

    if kwargs.get("pretrained"):
        return create_model(name, **kwargs)
    abstract = nnx.eval_shape(lambda: create_model(name, **kwargs))
    graphdef, state = nnx.split(abstract)
    flat = list(nnx.to_flat_state(state))
    if not all(
        type(v).__name__ in ("Param", "BatchStat")
        and jnp.issubdtype(v.get_value().dtype, jnp.floating)
        for _, v in flat
    ):
        return create_model(name, **kwargs)
    rng = np.random.default_rng(seed)
    for path, var in flat:
        v = var.get_value()
        var.set_value(
            jnp.asarray(
                _random_leaf(rng, str(path[-1]), type(var).__name__, v.shape, np.dtype(v.dtype))
            )
        )
    model = nnx.merge(graphdef, state)
    model.eval()
    return model


def _build(name: str, dtype, deploy: bool):
    from .deploy import fuse
    from .registry import count_params

    model = build_model(name, dtype=dtype)
    params_train = count_params(model)
    if deploy:
        model = fuse(model)
    return model, params_train


def benchmark(
    models: str | Sequence[str],
    batch_sizes: Sequence[int] = (1,),
    *,
    resolution: int = 224,
    dtype="float32",
    mode: str = "infer",
    deploy: bool = False,
    warmup: int = 3,
    reps: int = 50,
    max_time_s: float = 10.0,
    params_as_constants: bool = False,
    progress: bool = False,
    on_record: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Benchmark every model at every batch size; returns the records (see the module doc).

    All inputs are checked first (model names, batch sizes, dtype, mode, that each model takes
    ``resolution``), so bad input fails before anything compiles. A batch size that runs out of
    memory gives a record with ``error`` set and no timings; other errors propagate.
    """
    names = resolve_models(models)
    batch_sizes = _check_batch_sizes(batch_sizes)
    jdtype = _dtype(dtype)
    if mode not in _MODES:
        raise ValueError(f"mode must be 'infer' or 'train', got {mode!r}")
    if isinstance(reps, bool) or not isinstance(reps, (int, np.integer)) or reps < 0:
        raise ValueError(f"reps must be an integer >= 0 (0: compile only), got {reps!r}")
    if deploy and mode == "train":
        raise ValueError(
            "--deploy gives an inference-only model (BatchNorm folded); "
            "it cannot be benchmarked in train mode"
        )
    for name in names:
        validate_resolution(_abstract_model(name), resolution, name=name)

    records: list[dict] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(names) * len(batch_sizes), unit="run", file=sys.stderr, dynamic_ncols=True
        )
    try:
        for name in names:
            model = None
            for b in batch_sizes:
                if bar is not None:
                    bar.set_description(f"{name} b={b}")
                if model is None or mode == "train":  # a train step changes the model
                    model, params_train = _build(name, jdtype, deploy)
                try:
                    rec = benchmark_model(
                        model,
                        b,
                        resolution=resolution,
                        dtype=dtype,
                        mode=mode,
                        name=name,
                        warmup=warmup,
                        reps=reps,
                        max_time_s=max_time_s,
                        params_as_constants=params_as_constants,
                        params_train=params_train,
                        deploy=deploy,
                    )
                except Exception as e:  # noqa: BLE001
                    if "RESOURCE_EXHAUSTED" not in str(e) and "out of memory" not in str(e).lower():
                        raise
                    rec = dict(
                        model=name,
                        mode=mode,
                        dtype=np.dtype(jdtype).name,
                        batch_size=b,
                        resolution=resolution,
                        deploy=deploy,
                        error=f"out of memory: {str(e).splitlines()[0][:200]}",
                    )
                records.append(rec)
                if on_record is not None:
                    on_record(rec)
                if bar is not None:
                    bar.update(1)
                    if "lat_ms_p50" in rec:
                        bar.set_postfix_str(
                            f"p50 {rec['lat_ms_p50']:.2f} ms, {rec['img_s']:.0f} img/s"
                        )
    finally:
        if bar is not None:
            bar.close()
    return records


# ----------------------------------------------------------------------------------------------
# Output

_COLUMNS = [  # (header, key, format)
    ("model", "model", "{}"),
    ("mode", "mode", "{}"),
    ("dtype", "dtype", "{}"),
    ("deploy", "deploy", "{}"),
    ("batch", "batch_size", "{}"),
    ("params M", "params", "{:.3f}"),
    ("GMACs", "gmacs", "{:.3f}"),
    ("GFLOPs", "gflops", "{:.3f}"),
    ("MB f32", "size_mb_fp32", "{:.1f}"),
    ("MB bf16", "size_mb_bf16", "{:.1f}"),
    ("compile s", "compile_s", "{:.1f}"),
    ("p50 ms", "lat_ms_p50", "{:.2f}"),
    ("p90 ms", "lat_ms_p90", "{:.2f}"),
    ("p99 ms", "lat_ms_p99", "{:.2f}"),
    ("img/s", "img_s", "{:.1f}"),
    ("mem MB", "mem_mb", "{:.0f}"),
    ("peak MB", "peak_mem_mb", "{:.0f}"),
]


def _cell(rec: dict, key: str, fmt: str) -> str:
    v = rec.get(key)
    if v is None:
        return "-"
    if key == "params":
        v = v / 1e6
    if isinstance(v, bool):
        return "yes" if v else "no"
    return fmt.format(v)


def format_table(records: Sequence[dict]) -> str:
    """A Markdown table of the records (columns without any value are dropped)."""
    cols = [c for c in _COLUMNS if any(r.get(c[1]) is not None for r in records)]
    rows = [[h for h, _, _ in cols]]
    for r in records:
        if "error" in r:
            rows.append(
                [
                    str(r.get("model")),
                    r.get("mode", ""),
                    r.get("dtype", ""),
                    "",
                    str(r.get("batch_size")),
                ]
                + [r["error"][:40]]
                + [""] * (len(cols) - 6)
            )
        else:
            rows.append([_cell(r, k, f) for _, k, f in cols])
    widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


# The vector extensions CPU inference speed depends on (int8 dot products: the VNNI ones).
CPU_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "asimddp",
    "sve",
)


def cpu_flags() -> list[str]:
    """Which of ``CPU_FLAGS`` this CPU has (from /proc/cpuinfo; empty where it is unreadable)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next(ln for ln in f if ln.startswith(("flags", "Features"))).split())
    except (OSError, StopIteration):
        return []
    return [k for k in CPU_FLAGS if k in flags]


def environment() -> dict:
    """Versions and hardware, stored beside the records."""
    import jax
    import flax

    dev = jax.devices()[0]
    return dict(
        jax=jax.__version__,
        flax=flax.__version__,
        backend=jax.default_backend(),
        device=getattr(dev, "device_kind", str(dev)),
        device_count=jax.device_count(),
        cpu_count=os.cpu_count(),
        cpu_flags=cpu_flags(),
        platform=platform.platform(),
        xla_flags=os.environ.get("XLA_FLAGS", ""),
    )


# ----------------------------------------------------------------------------------------------
# Command line


def _int_list(s: str) -> list[int]:
    try:
        return [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m edgejax.bench",
        description="Latency / throughput / compile time / params / FLOPs / size / memory of "
        "edgejax models.",
    )
    p.add_argument(
        "--models",
        default="paper",
        help="comma list of model names or globs, or 'paper' (the nine paper models)",
    )
    p.add_argument("--batch-sizes", type=_int_list, default=[1], help="e.g. 1,8,32,128,256,512")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument(
        "--dtype",
        default=None,
        choices=_DTYPES,
        help="compute dtype (default: bfloat16 on accelerators, float32 on CPU)",
    )
    p.add_argument("--mode", default="infer", choices=_MODES)
    p.add_argument(
        "--deploy",
        action="store_true",
        help="benchmark the fused inference model (edgejax.deploy.fuse)",
    )
    p.add_argument(
        "--params-as-constants",
        action="store_true",
        help="close the weights over as compile-time constants (infer mode)",
    )
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument(
        "--reps",
        type=int,
        default=50,
        help="timed calls (at most); 0 compiles only (e.g. to fill a persistent "
        "compilation cache, JAX_COMPILATION_CACHE_DIR)",
    )
    p.add_argument(
        "--max-time",
        type=float,
        default=10.0,
        help="stop timing a configuration after this many seconds (>= 5 calls)",
    )
    p.add_argument("--json", default=None, help="write {'environment', 'records'} here")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import jax

    dtype = args.dtype or ("float32" if jax.default_backend() == "cpu" else "bfloat16")
    env = environment()
    print(
        f"# edgejax.bench on {env['backend']} ({env['device']}), jax {env['jax']}, "
        f"mode={args.mode} dtype={dtype} resolution={args.resolution}"
        f"{' deploy' if args.deploy else ''}",
        file=sys.stderr,
    )
    done: list[dict] = []

    def write_json(rec=None):
        if rec is not None:
            done.append(rec)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(
                    dict(environment=env, args=vars(args) | dict(dtype=dtype), records=done),
                    f,
                    indent=1,
                )

    try:
        records = benchmark(
            args.models,
            args.batch_sizes,
            resolution=args.resolution,
            dtype=dtype,
            mode=args.mode,
            deploy=args.deploy,
            warmup=args.warmup,
            reps=args.reps,
            max_time_s=args.max_time,
            params_as_constants=args.params_as_constants,
            progress=not args.no_progress,
            on_record=write_json,
        )
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(records))
    if args.json:
        write_json()  # (already written record by record, so a long run leaves partial results)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
