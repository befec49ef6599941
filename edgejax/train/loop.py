"""The training loop: ``run(config, workdir)`` for one run, ``run_group(configs, workdirs)`` for K
trials trained at once on one input pipeline (a run is a group of one).

Everything around the jitted step lives here: data, the mesh and shardings, evaluation cadence,
checkpoints, logging, preemption (SIGTERM) and stopping (or, in a group, freezing) on a
non-finite loss.
"""

from __future__ import annotations

import json
import re
import math
import os
import signal
import threading
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from .checkpoint import Checkpointer
from .config import ConfigError, data_seed, resolve_dataset, resolve_dtype, validate
from .hparams import Features, check_group, hparams
from .logging import MetricLogger
from .optim import make_optimizer, make_schedule
from .progressive import make_plan
from .state import TrainState, init_train_state, split_model
from .step import make_eval_step, make_train_step

__all__ = ["run", "run_group", "Pruned", "NonFiniteLossError", "build", "Run"]


class Pruned(Exception):
    """Raised by a ``report_fn`` (or returned as status "pruned") to stop a run early."""


class NonFiniteLossError(FloatingPointError):
    """The loss (or gradient norm) became NaN/inf; the message names the step."""


def _host(tree):
    """Fully replicated global arrays -> numpy (works with several processes too)."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def _replicate(tree, sharding):
    """Host arrays (identical on every process) -> global arrays laid out with ``sharding``."""

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    return jax.tree.map(put, tree)


# Initialisation runs once: compile it with XLA's cheap settings (3x faster to compile on CPU;
# the random bits are integer ops and identical either way).
_CHEAP_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _compile_cheap(jitted, *args):
    lowered = jitted.lower(*args)
    try:
        return lowered.compile(compiler_options=_CHEAP_COMPILE)
    except Exception:  # an XLA build without these options
        return lowered.compile()


class Run:
    """Everything built from a config before the loop starts (also used by benchmarks / tests).

    Attributes: config, mesh, replicated / batch shardings, model_def, tx, schedule, state,
    train_step / eval_step (jitted), group_train_step / group_eval_step (the same, ``vmap``-ed
    over a leading trial axis of the state), mean, std, image_size, num_classes. ``features``:
    what the step computes (default: the config's own; a group passes the union of its trials').
    """

    def __init__(
        self,
        config,
        *,
        num_classes: int,
        steps_per_epoch: int,
        total_steps: int,
        devices=None,
        features: Features | None = None,
        teacher=None,
    ):
        import edgejax

        if config.dtype == "auto":
            config = resolve_dtype(config, print_once())
        self.config = config
        self.num_classes = num_classes
        info = edgejax.model_info(config.model.name)
        self.model_info = info
        d = config.data
        self.image_size = d.image_size or info["input_size"][1]
        self.eval_image_size = d.eval_image_size or self.image_size
        self.crop_pct = d.crop_pct or info["crop_pct"]
        self.interpolation = d.interpolation or info["interpolation"]
        self.mean = tuple(float(v) for v in (d.mean or info["mean"]))
        self.std = tuple(float(v) for v in (d.std or info["std"]))
        devices = jax.devices() if devices is None else devices
        self.mesh = Mesh(np.asarray(devices), ("data",))
        self.replicated = NamedSharding(self.mesh, P())
        self.batch_sharding = NamedSharding(self.mesh, P("data"))
        n = len(devices)
        if config.global_batch_size % n:
            raise ConfigError(
                f"global_batch_size {config.global_batch_size} must be divisible by "
                f"the {n} devices of the mesh"
            )
        micro = config.global_batch_size // config.optimizer.grad_accum_steps
        if micro % n:
            raise ConfigError(
                f"micro-batch {micro} (global_batch_size / grad_accum_steps) must be "
                f"divisible by the {n} devices"
            )

        kwargs = {}
        if config.model.drop_rate:
            kwargs["drop_rate"] = config.model.drop_rate
        if config.model.drop_path_rate:
            kwargs["drop_path_rate"] = config.model.drop_path_rate
        pretrained = config.model.pretrained
        pretrained = True if pretrained == "hub" else (pretrained or None)
        dtype = jnp.bfloat16 if config.dtype == "bfloat16" else None
        self.features = features or Features.of([config])
        self.steps_per_epoch, self.total_steps = steps_per_epoch, total_steps

        def make_model(seed=None):
            rngs = (
                int(config.seed)
                if seed is None
                else nnx.Rngs(params=jax.random.key(seed), dropout=jax.random.key(seed + 1))
            )
            return edgejax.create_model(
                config.model.name,
                num_classes=num_classes,
                pretrained=pretrained,
                rngs=rngs,
                dtype=dtype,
                **kwargs,
            )

        ema = self.features.ema
        hp0 = self.hparams(config)
        seed0 = np.int32(config.seed)
        # The seed and the hyperparameters are arguments, not constants: one compiled
        # initialiser serves every trial of a group, bit for bit what each gets alone.
        if pretrained:  # file / hub reads cannot be traced: build eagerly, then place
            self.model_def, params, batch_stats, model_state = split_model(make_model())
            self.tx = make_optimizer(config, params, self.features)
            weights = _replicate((params, batch_stats, model_state), self.replicated)
            init = jax.jit(
                lambda w, seed, hp: init_train_state(*w, self.tx, seed=seed, ema=ema, hparams=hp),
                out_shardings=self.replicated,
            )
            self._init = lambda seed, hp: init(weights, seed, hp)
        else:
            # Build the model inside one jit: one compilation instead of one per initializer op
            # (minutes on a busy CPU), and the state is born replicated on the mesh.
            self.model_def, abstract_params, _, _ = split_model(nnx.eval_shape(make_model))
            self.tx = make_optimizer(config, abstract_params, self.features)

            def init(seed, hp):
                _, p, b, m = split_model(make_model(seed))
                return init_train_state(p, b, m, self.tx, seed=seed, ema=ema, hparams=hp)

            self._init = _compile_cheap(jax.jit(init, out_shardings=self.replicated), seed0, hp0)
        self.schedule = make_schedule(config, steps_per_epoch, total_steps)
        self.state: TrainState = self.init_state(config)

        # A teacher (distillation): its weights are one more argument of the step, placed once
        # and shared by every trial of a group (in a vmapped group its forward is one batched
        # call over the trials' inputs).
        self.teacher = teacher
        cached = teacher is not None and teacher.weights is None  # targets read from a cache
        step_fn = make_train_step(
            config,
            self.model_def,
            self.tx,
            total_steps,
            self.mean,
            self.std,
            self.features,
            teacher=None if teacher is None else teacher.definition,
            cached=cached,
        )
        r, b = self.replicated, self.batch_sharding
        shardings, axes = ((r, b), (0, None))
        if teacher is not None and not cached:
            self.teacher_weights = _replicate(teacher.weights, r)
            shardings, axes = (r, b, r), (0, None, None)
        self.train_step = jax.jit(
            step_fn, in_shardings=shardings, out_shardings=(r, r), donate_argnums=(0,)
        )
        eval_fn = make_eval_step(config, self.model_def, self.mean, self.std)
        self.eval_step = jax.jit(eval_fn, in_shardings=(r, r, r, b), out_shardings=r)
        # A trial group in one program: the state (and so the hyperparameters) carry a leading
        # trial axis, the batch is shared.
        self.group_train_step = jax.jit(
            jax.vmap(step_fn, in_axes=axes),
            in_shardings=shardings,
            out_shardings=(r, r),
            donate_argnums=(0,),
        )
        self.group_eval_step = jax.jit(
            jax.vmap(eval_fn, in_axes=(0, 0, 0, None)), in_shardings=(r, r, r, b), out_shardings=r
        )

    def hparams(self, config, stage: int = 0) -> dict:
        """``config``'s per-trial values for this run's length (float32 numpy scalars), as
        progressive stage ``stage`` trains them."""
        from .progressive import stage_config

        return hparams(stage_config(config, stage), self.steps_per_epoch, self.total_steps)

    def step(self, state, batch):
        """One train step of one trial (with the teacher, when distilling)."""
        if self.teacher is None or self.teacher.weights is None:
            return self.train_step(state, batch)
        return self.train_step(state, batch, self.teacher_weights)

    def group_step(self, state, batch):
        """One train step of a vmapped group (state with a leading trial axis)."""
        if self.teacher is None or self.teacher.weights is None:
            return self.group_train_step(state, batch)
        return self.group_train_step(state, batch, self.teacher_weights)

    def init_state(self, config) -> TrainState:
        """A fresh state for ``config``'s seed and hyperparameters (same model and group keys)."""
        return self._init(np.int32(config.seed), self.hparams(config))

    def put_batch(self, batch: dict) -> dict:
        """Process-local numpy batch -> global arrays sharded over the ``data`` axis."""
        return {
            k: jax.make_array_from_process_local_data(self.batch_sharding, np.asarray(v))
            for k, v in batch.items()
        }


def print_once():
    """A logger that prints each distinct line once (K trials, one message)."""
    import sys

    seen = set()

    def say(msg):
        if msg not in seen and jax.process_index() == 0:
            seen.add(msg)
            print(msg, file=sys.stderr, flush=True)

    return say


def build(
    config,
    *,
    num_classes: int,
    steps_per_epoch: int = 100,
    total_steps: int = 100,
    devices=None,
    teacher=None,
) -> Run:
    """Validate ``config`` and build model, optimizer, state and jitted steps (no data).
    ``teacher``: an :class:`edgejax.distill.Teacher` (default: loaded from ``config.distill``
    when it names one)."""
    config = resolve_dtype(validate(config), print_once())
    if teacher is None and config.distill.teacher:
        teacher = _load_teacher(config, num_classes, None)
    return Run(
        config,
        num_classes=num_classes,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        devices=devices,
        teacher=teacher,
    )


def _load_teacher(config, num_classes: int, class_names):
    from edgejax.distill import load_teacher

    dtype = jnp.bfloat16 if config.dtype == "bfloat16" else None
    return load_teacher(config, num_classes=num_classes, class_names=class_names, dtype=dtype)


class _Preemption:
    """SIGTERM sets a flag; the loop saves and exits at the next step boundary."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def _score(metrics: dict, which: str) -> float:
    keys = [k for k in (which, f"ema_{which}") if k in metrics]
    vals = [metrics[k] for k in keys]
    return -min(vals) if which == "loss" else max(vals)


def _slice(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


class _Trial:
    """One trial's host side: its config, workdir, logger, best checkpoint and bookkeeping."""

    def __init__(
        self, index, config, workdir, *, spe, total, start, is_main, progress, ckpt: Checkpointer
    ):
        self.index, self.config, self.workdir = index, config, workdir
        self.ckpt = ckpt
        self.ema = config.ema.decay > 0
        self.status = "running"
        self.failed_step = None
        self.best = {"score": -math.inf, "top1": None, "step": None, "epoch": None}
        self.last_eval: dict = {}
        self.window: list[dict] = []
        self.logger = MetricLogger(
            workdir,
            total_steps=total,
            start_step=start,
            global_batch_size=int(config.global_batch_size),
            tensorboard=config.log.tensorboard,
            progress=progress,
            active=is_main,
        )

    def record(self) -> dict:
        return {
            "status": self.status,
            "failed_step": self.failed_step,
            "best": self.best,
            "last_eval": self.last_eval,
        }

    def load(self, rec: dict) -> None:
        self.status, self.failed_step = rec["status"], rec.get("failed_step")
        self.best.update(rec.get("best", {}))
        if self.best["score"] is None:
            self.best["score"] = -math.inf
        self.last_eval = rec.get("last_eval", {})


def _sums_to_metrics(host: dict, ema: bool) -> dict:
    result = {}
    for p in ("", "ema_") if ema else ("",):
        n = max(host[f"{p}count"], 1.0)
        result[f"{p}top1"] = 100.0 * host[f"{p}top1"] / n
        result[f"{p}top5"] = 100.0 * host[f"{p}top5"] / n
        result[f"{p}loss"] = host[f"{p}loss"] / n
    result["count"] = int(host["count"])
    return result


class _Group:
    """The device side of K trials: their states (a list, one per trial, or one state with a
    leading trial axis), advanced together on each shared batch.

    ``mode`` "sequential": one compiled step, called once per trial on the shared batch (the
    states stay separate); "vmap": one call of the ``vmap``-ed step for all. ``members`` lists
    the trials held (frozen ones are dropped when the group is rebuilt).
    """

    def __init__(self, r: Run, mode: str, members: list[int], states):
        self.r, self.mode, self.members = r, mode, list(members)
        if mode == "vmap":
            self.state = self._place(states if isinstance(states, TrainState) else _stack(states))
        else:
            self.states = [
                self._place(s)
                for s in (
                    states
                    if isinstance(states, (list, tuple))
                    else [_slice(states, i) for i in range(len(members))]
                )
            ]

    def _place(self, tree):
        # Every leaf laid out as the step's outputs are (replicated on the mesh): an array
        # placed otherwise (a slice, a stack, a fresh hyperparameter) is another input type to
        # jit, and the step would compile a second time at its second call.
        return jax.device_put(tree, self.r.replicated)

    def step(self, batch, running: set[int]):
        """Advance every running member on ``batch``; -> {trial: metrics (device arrays)}."""
        if self.mode == "vmap":
            self.state, m = self.r.group_step(self.state, batch)
            return {k: _slice(m, i) for i, k in enumerate(self.members) if k in running}
        out = {}
        for i, k in enumerate(self.members):
            if k in running:
                self.states[i], out[k] = self.r.step(self.states[i], batch)
        return out

    def trial_state(self, k: int) -> TrainState:
        i = self.members.index(k)
        return _slice(self.state, i) if self.mode == "vmap" else self.states[i]

    def stacked(self) -> TrainState:
        return self.state if self.mode == "vmap" else _stack(self.states)

    def step_count(self) -> int:
        s = self.state.step[0] if self.mode == "vmap" else self.states[0].step
        return int(_host(s))

    def freeze(self, k: int) -> None:
        """Stop trial ``k`` (a pruner's decision): its state is no longer updated."""
        if self.mode == "vmap":
            i = self.members.index(k)
            self.state = self.state.replace(active=self._place(self.state.active.at[i].set(False)))

    def rebuild(self, keep: list[int]) -> None:
        """Hold only the trials ``keep`` (a vmapped group recompiles once for the new size)."""
        idx = [self.members.index(k) for k in keep]
        if self.mode == "vmap":
            self.state = self._place(jax.tree.map(lambda x: x[np.asarray(idx)], self.state))
        else:
            self.states = [self.states[i] for i in idx]
        self.members = list(keep)

    def set_hparams(self, hps: list[dict]) -> None:
        """Per-trial hyperparameters from the configs (after a restore: configs win)."""
        fresh = [self._place({k: jnp.asarray(v) for k, v in hp.items()}) for hp in hps]
        if self.mode == "vmap":
            self.state = self.state.replace(hparams=self._place(_stack(fresh)))
        else:
            self.states = [s.replace(hparams=h) for s, h in zip(self.states, fresh)]

    def evaluate(self, loader, trials: dict[int, "_Trial"], running: set[int]) -> dict:
        """One pass over ``loader`` for every running member -> {trial: metrics}."""
        r = self.r
        ks = [k for k in self.members if k in running]
        ema = r.features.ema
        totals: dict = {}
        for batch in loader:
            if self.mode == "vmap":
                st = self.state
                out = {"": r.group_eval_step(st.params, st.batch_stats, st.model_state, batch)}
                if ema:
                    out["ema_"] = r.group_eval_step(
                        st.ema_params, st.ema_batch_stats, st.model_state, batch
                    )
                out = {f"{p}{k}": v for p, sums in out.items() for k, v in sums.items()}
            else:
                per = {}
                for k in ks:
                    st = self.trial_state(k)
                    o = {"": r.eval_step(st.params, st.batch_stats, st.model_state, batch)}
                    if trials[k].ema:
                        o["ema_"] = r.eval_step(
                            st.ema_params, st.ema_batch_stats, st.model_state, batch
                        )
                    per[k] = {f"{p}{n}": v for p, sums in o.items() for n, v in sums.items()}
                out = per
            totals = out if not totals else jax.tree.map(jnp.add, totals, out)
        host = _host(totals)
        result = {}
        for k in ks:
            if self.mode == "vmap":
                i = self.members.index(k)
                h = {n: float(v[i]) for n, v in host.items()}
            else:
                h = {n: float(v) for n, v in host[k].items()}
            result[k] = _sums_to_metrics(h, trials[k].ema)
        return result


def _resolve_mode(mode: str, k: int) -> str:
    if mode not in ("auto", "vmap", "sequential"):
        raise ValueError(f"mode must be 'auto', 'vmap' or 'sequential', got {mode!r}")
    if k == 1:
        return "sequential"
    if mode == "auto":
        # XLA:CPU lowers convolutions vmapped over their weights to grouped convolutions and
        # runs those several times slower than one call per trial (benchmarks/trial_groups.py).
        return "sequential" if jax.default_backend() == "cpu" else "vmap"
    return mode


def run(config, workdir: str, *, report_fn: Callable[[int, dict], bool] | None = None) -> dict:
    """Train (or resume) the run described by ``config`` in ``workdir``.

    ``report_fn(epoch, metrics) -> bool`` is called after every evaluation (metrics: top1, top5,
    loss and their ``ema_`` versions, step, epoch); returning True (or raising ``Pruned``) stops
    the run with status "pruned". Returns a summary dict: status ("completed" | "preempted" |
    "pruned"), step, epoch, best_top1, best_epoch, best_step, last eval metrics, timings.
    Raises ``NonFiniteLossError`` naming the step when the loss stops being finite (the last
    checkpoint, saved before, stays intact), ``ConfigError`` for bad configs, unknown model names
    and missing datasets, before anything compiles.
    """
    fn = None if report_fn is None else (lambda k, epoch, metrics: report_fn(epoch, metrics))
    return _train([config], [workdir], report_fn=fn, mode="sequential", group_dir=None)[0]


def run_group(
    configs,
    workdirs,
    *,
    report_fn: Callable[[int, int, dict], bool] | None = None,
    mode: str = "auto",
    group_dir: str | None = None,
) -> list[dict]:
    """Train (or resume) K trials of one model, input size, batch size and optimizer kind at once.

    The trials share one input pipeline (each batch is decoded once, from the first trial's data
    seed) and one compiled step; each keeps its own parameters, optimizer state, EMA, RNG
    (its ``seed`` sets its initialisation and its on-device augmentation) and hyperparameters
    (:mod:`edgejax.train.hparams`). Each trial writes its own ``workdirs[k]`` (``config.json``,
    ``metrics.jsonl``, ``summary.json``, ``best/``); the group's checkpoints (all trials, a
    leading trial axis) go to ``group_dir`` (default: beside the first workdir).

    ``mode``: "vmap" (one call advances all trials), "sequential" (the same compiled step called
    once per trial on the shared batch) or "auto" (sequential on the CPU backend, where vmapped
    convolutions run as slow grouped convolutions; vmap elsewhere).
    ``report_fn(trial, epoch, metrics) -> bool``: after every evaluation, per trial; True (or
    ``Pruned``) stops that trial ("pruned"). A trial whose loss stops being finite is frozen and
    recorded "failed" with its step; the others go on. When half the trials held are stopped,
    the group is rebuilt without them at the evaluation boundary.
    Returns one summary per trial (as :func:`run`'s, plus ``trial`` and ``failed_step``).
    """
    configs, workdirs = list(configs), [os.path.abspath(w) for w in workdirs]
    if len(configs) != len(workdirs):
        raise ValueError(f"{len(configs)} configs but {len(workdirs)} workdirs")
    if len(set(workdirs)) != len(workdirs):
        raise ValueError("every trial of a group needs its own workdir")
    if group_dir is None:
        names = "+".join(os.path.basename(w) for w in workdirs)
        if len(names) > 80:
            import hashlib

            names = hashlib.sha1(names.encode()).hexdigest()[:12]
        group_dir = os.path.join(os.path.dirname(workdirs[0]), f"group_{names}")
    group_dir = os.path.abspath(os.fspath(group_dir))
    return _train(configs, workdirs, report_fn=report_fn, mode=mode, group_dir=group_dir)


def _train(configs, workdirs, *, report_fn, mode: str, group_dir: str | None) -> list[dict]:
    from edgejax import data
    import edgejax

    configs = [validate(c) for c in configs]
    check_group(configs)
    say = print_once()
    configs = [resolve_dtype(c, say) for c in configs]
    config = configs[0]
    solo = group_dir is None
    try:  # unknown model names fail here, with the closest registered names
        edgejax.model_info(config.model.name)
    except ValueError as e:
        raise ConfigError(f"config.model.name: {e}") from None
    dataset = resolve_dataset(config.data.dataset)
    train_src, train_info = data.build_source(dataset, config.data.train_split)
    eval_src, _ = data.build_source(dataset, config.data.eval_split)
    num_classes = int(train_info["num_classes"])
    gbs = int(config.global_batch_size)
    final_size = config.data.image_size or edgejax.model_info(config.model.name)["input_size"][1]
    plan = make_plan(config, len(train_src), final_size)
    spe, total = plan.steps_per_epoch, plan.total_steps
    eval_at = plan.eval_steps(config.eval.every_epochs, config.eval.every_steps)
    ckpt_at = int(config.checkpoint.every_steps) or eval_at

    if plan.progressive:  # before anything compiles
        for st in plan.stages:
            _check_batch(st.batch_size, config)
            _check_size(st, config.model.name, num_classes)

    def due(step: int, at) -> bool:
        return step == total or (step % at == 0 if isinstance(at, int) else step in at)

    K = len(configs)
    mode = _resolve_mode(mode, K)

    is_main = jax.process_index() == 0
    workdirs = [os.path.abspath(w) for w in workdirs]
    for w in workdirs:
        _check_writable(w)
    if solo:
        _check_workdir(config, workdirs[0], list(train_info["class_names"]))
    if is_main:
        for c, w in zip(configs, workdirs):
            os.makedirs(w, exist_ok=True)
            _write_config(c, w)
            # the names behind the label indices, for edgejax.predict and reports
            with open(os.path.join(w, "classes.json"), "w") as f:
                json.dump({"class_names": list(train_info["class_names"])}, f)
        if not solo:
            os.makedirs(group_dir, exist_ok=True)

    teacher = cache = None
    if config.distill.cache:
        from edgejax.distill.cache import DistillCache

        if K > 1:
            raise ConfigError(
                "config distill.cache: a cache holds one run's inputs and targets; train its "
                "run alone (or distil a group online, without distill.cache)"
            )
        cache = DistillCache(config.distill.cache, config, plan, list(train_info["class_names"]))
        teacher = cache.teacher()
        say(
            f"edgejax.train: distilling from the targets of {teacher.definition.name} in {cache.path}"
        )
    elif config.distill.teacher:
        teacher = _load_teacher(config, num_classes, list(train_info["class_names"]))
        say(f"edgejax.train: distilling from {teacher.describe()}")
    r = Run(
        config,
        num_classes=num_classes,
        steps_per_epoch=spe,
        total_steps=total,
        features=Features.of(configs),
        teacher=teacher,
    )
    opts = dict(keep=config.checkpoint.keep, async_save=config.checkpoint.async_save)
    if solo:
        ckpt = Checkpointer(workdirs[0], keep_best=config.checkpoint.keep_best, **opts)
        best_ckpts = [ckpt]
    else:
        ckpt = Checkpointer(group_dir, keep_best=False, **opts)
        best_ckpts = [
            Checkpointer(w, latest=False, keep_best=c.checkpoint.keep_best, **opts)
            for c, w in zip(configs, workdirs)
        ]

    members = list(range(K))
    records = None
    had_checkpoints = ckpt.latest_step() is not None
    while True:  # the newest readable checkpoint; unreadable ones are moved aside
        step0 = ckpt.latest_step()
        members, records = list(range(K)), None
        try:
            if step0 is not None:
                meta0 = ckpt.read_meta(step0)
                if not solo:
                    members = list(meta0.get("members", members))
                    records = meta0.get("trials")
                    if records is not None and len(records) != K:
                        raise ConfigError(
                            f"{group_dir} holds a group of {len(records)} "
                            f"trials, not {K}: pass another group_dir"
                        )
            # Run built trial 0's state already; the others start from their own seeds.
            states = [r.state if k == 0 else r.init_state(configs[k]) for k in members]
            if step0 is not None:
                like = states[0] if solo else _stack(states)
                restored, meta0 = ckpt.restore(like, step0)
                states = [restored] if solo else [_slice(restored, i) for i in range(len(members))]
            break
        except ConfigError:
            raise
        except Exception as e:  # orbax / TensorStore: missing, truncated or torn files
            if step0 is None:
                raise
            from .checkpoint import describe_error

            if re.search(r"shape.*(not compatible|mismatch)|structure", str(e), re.I | re.S):
                raise ConfigError(  # a readable checkpoint of another config: left in place
                    f"checkpoint step {step0} in {ckpt.dir} does not fit this config "
                    f"({describe_error(e)}): give another --workdir"
                ) from None
            ckpt.set_aside(step0, describe_error(e))
    if had_checkpoints and ckpt.latest_step() is None:
        raise ConfigError(
            f"no readable checkpoint is left in {ckpt.dir} (the unreadable ones are in "
            f"{ckpt.dir}.damaged): run the command again to start this run afresh, or give "
            f"another --workdir"
        )
    group = _Group(r, mode, members, states)
    start = group.step_count() if members else 0
    stage = plan.stage_at(start)
    group.set_hparams([r.hparams(configs[k], stage.index) for k in members])

    progress_here = solo or K == 1
    trials = {
        k: _Trial(
            k,
            configs[k],
            workdirs[k],
            spe=spe,
            total=total,
            start=start,
            is_main=is_main,
            progress=bool(configs[k].log.progress and progress_here),
            ckpt=best_ckpts[k],
        )
        for k in range(K)
    }
    if ckpt.latest_step() is not None:
        if solo:
            trials[0].load(
                {
                    "status": "running",
                    "best": meta0.get("best", {}),
                    "last_eval": meta0.get("last_eval", {}),
                }
            )
        elif records is not None:
            for k, rec in enumerate(records):
                trials[k].load(rec)
    # A group's own progress bar and log (mean loss over the running trials).
    glog = (
        trials[0].logger
        if solo
        else MetricLogger(
            group_dir,
            total_steps=total,
            start_step=start,
            global_batch_size=gbs * K,
            tensorboard=False,
            progress=config.log.progress,
            active=is_main,
        )
    )
    running = {k for k in members if trials[k].status in ("running", "preempted")}
    for k in running:
        trials[k].status = "running"
    if start:
        glog.write(
            f"edgejax.train: resuming {group_dir or workdirs[0]} at step {start} "
            f"(epoch {plan.epoch_at(start):.2f})"
        )
    d = config.data
    if plan.progressive:
        glog.write(
            "edgejax.train: progressive, "
            + "; ".join(st.describe(len(plan.stages)) for st in plan.stages)
        )
    train_loader = train_batches(
        config, plan, train_src, start, interpolation=r.interpolation, sharding=r.batch_sharding
    )

    def set_batch(batch: int):  # the img/s of the progress bars
        for t in trials.values():
            t.logger.batch = batch
        glog.batch = batch * (1 if solo else K)

    set_batch(stage.batch_size)
    eval_bs = int(config.eval.batch_size) or gbs
    eval_bs = int(math.ceil(eval_bs / jax.device_count()) * jax.device_count())
    eval_loader = data.make_eval_loader(
        eval_src,
        global_batch_size=eval_bs,
        image_size=r.eval_image_size,
        crop_pct=r.crop_pct,
        interpolation=r.interpolation,
        workers=d.workers,
        sharding=r.batch_sharding,
    )

    def meta(step, t: _Trial | None = None):
        m = {
            "step": step,
            "epoch": plan.epoch_at(step),
            "data_position": plan.samples_at(step),
            "global_batch_size": gbs,
            "seed": int(config.seed),
            "data_seed": data_seed(config),
        }
        if solo or t is not None:
            t = t or trials[0]
            m.update(best=t.best, last_eval=t.last_eval)
        if not solo:
            m.update(
                members=group.members, mode=mode, trials=[trials[k].record() for k in range(K)]
            )
        return m

    def save(step):
        if group.members:
            ckpt.save(group.trial_state(0) if solo else group.stacked(), meta(step))

    pending = None
    mismatched = [0]
    step = start
    train_skips_said = 0
    t_start = time.perf_counter()
    compiled_at = None

    def fail(k: int, s: int, host: dict):
        t = trials[k]
        msg = f"non-finite loss at step {s} (loss={host['loss']}, grad_norm={host['grad_norm']})"
        if solo:
            ckpt.wait()
            raise NonFiniteLossError(
                f"{msg}; stopping. The last good checkpoint is step "
                f"{ckpt.latest_step()} in {ckpt.dir}"
            )
        t.status, t.failed_step = "failed", s
        running.discard(k)
        glog.write(f"edgejax.train: trial {k} ({t.workdir}): {msg}; frozen, the others go on")

    def flush():
        """Fetch the last step's metrics; freeze trials whose loss is not finite."""
        nonlocal pending
        if pending is None:
            return
        s, ms = pending
        pending = None
        host_all = _host(ms)
        losses = []
        for k, m in host_all.items():
            if k not in running:
                continue
            host = {n: float(v) for n, v in m.items()}
            if host.get("cache_mismatch"):
                mismatched[0] += int(host["cache_mismatch"])
                if mismatched[0] == int(host["cache_mismatch"]):  # the first: said once
                    glog.write(
                        f"edgejax.train: step {s}: {int(host['cache_mismatch'])} input(s) differ "
                        f"from those the teacher saw when {config.distill.cache} was written "
                        f"(another data or XLA version?): their cached targets belong to other "
                        f"inputs; the count goes to summary.json"
                    )
            if not (math.isfinite(host["loss"]) and math.isfinite(host["grad_norm"])):
                fail(k, s, host)
                continue
            trials[k].window.append(host)
            losses.append(host)
        if losses:
            glog.progress(
                s,
                losses[0]
                if solo
                else {"loss": float(np.mean([h["loss"] for h in losses])), "lr": losses[0]["lr"]},
            )

    def stop_trial(k: int, status: str):
        running.discard(k)
        trials[k].status = status
        group.freeze(k)

    try:
        with _Preemption() as pre:
            it = iter(train_loader)
            while step < total and running:
                st = plan.stage_at(step)
                if st.index != stage.index:  # a new progressive stage: its ramped values
                    stage = st
                    group.set_hparams([r.hparams(configs[k], st.index) for k in group.members])
                    set_batch(st.batch_size)
                    glog.write(f"edgejax.train: {st.describe(len(plan.stages))}")
                if pre.requested or ckpt.manager.reached_preemption(step):
                    flush()
                    save(step)
                    ckpt.wait()
                    for k in running:
                        trials[k].status = "preempted"
                    glog.write(f"edgejax.train: SIGTERM: saved step {step}, exiting")
                    break
                try:
                    batch = next(it)
                except data.DataWorkerError as e:  # the state at `step` is whole: keep it
                    flush()
                    save(step)
                    ckpt.wait()
                    raise data.DataWorkerError(
                        f"{e}. Saved step {step} in {ckpt.dir}: run the same command again to "
                        f"resume"
                    ) from None
                if cache is not None:
                    batch = {**batch, **r.put_batch(cache.batch(step, _process_rows(batch)))}
                metrics = group.step(batch, running)
                flush()  # the previous step's metrics, while this one runs
                step += 1
                pending = (step, metrics)
                if compiled_at is None:
                    flush()
                    compiled_at = time.perf_counter() - t_start
                    glog.reset_rate(step)
                boundary_eval = due(step, eval_at)
                boundary_ckpt = due(step, ckpt_at)
                if step % config.log.every_steps == 0 or boundary_eval or boundary_ckpt:
                    flush()
                    for t in trials.values():
                        if t.window:
                            avg = {n: float(np.mean([w[n] for w in t.window])) for n in t.window[0]}
                            avg["lr"] = t.window[-1]["lr"]
                            avg["epoch"] = plan.epoch_at(step)
                            t.logger.log("train", step, avg)
                            t.window.clear()
                if boundary_eval and running:
                    eval_skipped = eval_loader.stats["skipped"]
                    results = group.evaluate(eval_loader, trials, running)
                    eval_skipped = eval_loader.stats["skipped"] - eval_skipped
                    epoch = plan.epoch_at(step)
                    improved = []
                    new_skips = train_loader.stats["skipped"] - train_skips_said
                    if new_skips or eval_skipped:
                        train_skips_said += new_skips
                        glog.write(
                            f"edgejax.train: unreadable records skipped: {new_skips} in "
                            f"training since the last evaluation (each replaced by another "
                            f"record), {eval_skipped} in this evaluation (not scored)"
                        )
                    for k, res in results.items():
                        t = trials[k]
                        res.update(step=step, epoch=epoch)
                        if eval_skipped:
                            res["skipped"] = eval_skipped
                        t.last_eval = res
                        t.logger.log("eval", step, res)
                        ema_txt = f", EMA top-1 {res['ema_top1']:.2f}" if "ema_top1" in res else ""
                        who = "" if solo else f"trial {k}: "
                        glog.write(
                            f"{who}step {step} epoch {epoch:.2f}: top-1 {res['top1']:.2f} "
                            f"top-5 {res['top5']:.2f} loss {res['loss']:.4f}{ema_txt}"
                        )
                        score = _score(res, t.config.eval.best_metric)
                        if score > t.best["score"]:
                            t.best.update(
                                score=score,
                                step=step,
                                epoch=epoch,
                                top1=max(res["top1"], res.get("ema_top1", -1.0)),
                            )
                            improved.append(k)
                    for k in list(results):
                        if report_fn is None:
                            continue
                        try:
                            stop = report_fn(k, int(round(epoch)), dict(results[k]))
                        except Pruned:
                            stop = True
                        if stop:
                            stop_trial(k, "pruned")
                    if boundary_ckpt:
                        save(step)
                    for k in improved:
                        trials[k].ckpt.save_best(group.trial_state(k), meta(step, trials[k]))
                    held_stopped = [k for k in group.members if k not in running]
                    if held_stopped and 2 * len(held_stopped) >= len(group.members):
                        group.rebuild([k for k in group.members if k in running])
                    glog.reset_rate(step)
                elif boundary_ckpt:
                    save(step)
            flush()
    finally:
        ckpt.wait()
        for c in best_ckpts:
            c.wait()
        ckpt.close()
        if not solo:
            for c in best_ckpts:
                c.close()
        elapsed = time.perf_counter() - t_start
        for t in trials.values():
            if t.logger is not glog:
                t.logger.close()
        glog.close()
    num_params = int(sum(x.size for x in jax.tree.leaves(r.state.params)))
    summaries = []
    for k, t in trials.items():
        if t.status == "running":
            t.status = "completed"
        best = t.best
        summary = {
            "status": t.status,
            "step": t.failed_step or step,
            "epoch": plan.epoch_at(t.failed_step or step),
            "total_steps": total,
            "steps_per_epoch": spe,
            "best_top1": best["top1"],
            "best_epoch": best["epoch"],
            "best_step": best["step"],
            "last_eval": t.last_eval,
            "workdir": t.workdir,
            "model": config.model.name,
            "num_params": num_params,
            "time_s": round(elapsed, 2),
            "compile_s": round(compiled_at or 0.0, 2),
            # compiled train programs: one per batch shape (per progressive stage)
            "train_programs": (
                r.group_train_step if mode == "vmap" else r.train_step
            )._cache_size(),
            # records that could not be read or decoded (this process, since it started)
            "skipped_records": {
                "train": train_loader.stats["skipped"],
                "eval": eval_loader.stats["skipped"],
            },
        }
        if plan.progressive:
            summary["stages"] = plan.summary()
            summary["eval_image_size"] = r.eval_image_size
        if teacher is not None:
            summary["teacher"] = {"model": teacher.definition.name, "weights": teacher.source}
        if cache is not None:
            summary["cache_mismatch"] = mismatched[0]
        if not solo:
            summary.update(
                trial=k,
                failed_step=t.failed_step,
                group_dir=group_dir,
                group_size=K,
                group_mode=mode,
            )
        summaries.append(summary)
        if is_main:
            with open(os.path.join(t.workdir, "summary.json"), "w") as f:
                json.dump(summary, f, indent=2)
            top = "n/a" if best["top1"] is None else f"{best['top1']:.2f}"
            who = "" if solo else f"trial {k} "
            print(
                f"edgejax.train: {who}{t.status} {config.model.name} step {summary['step']}/"
                f"{total} in {elapsed:.0f}s; best top-1 {top} (epoch {best['epoch']})",
                flush=True,
            )
    return summaries


def _process_rows(batch) -> slice | None:
    """This process's rows of the global batch (None on one process)."""
    if jax.process_count() == 1:
        return None
    n = batch["label"].shape[0] // jax.process_count()
    return slice(jax.process_index() * n, (jax.process_index() + 1) * n)


def train_batches(config, plan, train_src, start: int, *, interpolation: str, sharding=None):
    """The run's train batches from global step ``start`` to its end, stage after stage (one
    loader each, at its image size and batch size): the stream every run of ``config`` reads."""
    from edgejax import data

    d = config.data

    def stage_loader(st, step):
        return data.make_train_loader(
            train_src,
            global_batch_size=st.batch_size,
            image_size=st.image_size,
            seed=data_seed(config),
            start_step=st.loader_step(step),
            workers=d.workers,
            scale=tuple(d.scale),
            ratio=tuple(d.ratio),
            hflip=d.hflip,
            interpolation=interpolation,
            sharding=sharding,
        )

    return _StagedLoader(plan, stage_loader, start)


class _StagedLoader:
    """The train batches of every stage from ``start`` on, one loader per stage (each at its
    stage's image size and batch size); ``stats`` add up over them."""

    def __init__(self, plan, make, start: int):
        self.plan, self.make, self.start = plan, make, start
        self._done: dict = {}
        self._current = None

    @property
    def stats(self) -> dict:
        out = dict(self._done)
        for k, v in (self._current.stats if self._current is not None else {}).items():
            out[k] = out.get(k, 0) + v
        return out if out else {"skipped": 0}

    def __iter__(self):
        step = self.start
        for st in self.plan.stages:
            if step >= st.end_step:
                continue
            self._current = self.make(st, step)
            it = iter(self._current)
            try:
                for _ in range(st.end_step - step):
                    yield next(it)
                    step += 1
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
                for k, v in self._current.stats.items():
                    self._done[k] = self._done.get(k, 0) + v
                self._current = None


def _check_size(st, name: str, num_classes: int) -> None:
    import edgejax

    model = nnx.eval_shape(lambda: edgejax.create_model(name, num_classes=num_classes, rngs=0))
    lo, div = int(getattr(model, "min_size", 1)), int(getattr(model, "size_divisor", 1))
    if st.image_size < lo or (div > 1 and st.image_size % div):
        need = f"at least {lo} px" + (f" and a multiple of {div}" if div > 1 else "")
        raise ConfigError(
            f"progressive stage {st.index + 1} trains at {st.image_size} px, but {name} takes "
            f"{need}: raise progressive.start_size (or set progressive.size_multiple)"
        )


def _check_batch(batch: int, config) -> None:
    n = jax.device_count()
    if batch % n or (batch // config.optimizer.grad_accum_steps) % n:
        raise ConfigError(
            f"progressive batch size {batch} (and its micro-batch, / grad_accum_steps) must be "
            f"divisible by the {n} devices"
        )


# Keys whose change leaves a run's saved state unable to fit the new config: another model, or
# an optimizer / EMA whose state has another structure. (key, what makes two values differ.)
_STATE_KEYS = {
    "model.name": lambda v: v,
    "optimizer.name": lambda v: v,
    "optimizer.grad_accum_steps": lambda v: int(v or 1) > 1,
    "optimizer.clip_grad_norm": lambda v: bool(v),
    "ema.decay": lambda v: bool(v),
    "distill.teacher": lambda v: bool(v),  # a distilled run's state holds its two values
}


def _check_writable(workdir: str) -> None:
    """Before anything compiles: the workdir can be created and written."""
    probe = os.path.join(workdir, f".edgejax-write-probe-{os.getpid()}")
    try:
        os.makedirs(workdir, exist_ok=True)
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ConfigError(
            f"workdir {workdir} is not writable ({e.strerror or e}): give another --workdir"
        ) from None


def _has_checkpoint(workdir: str) -> bool:
    d = os.path.join(workdir, "checkpoints")
    return os.path.isdir(d) and any(n.isdigit() for n in os.listdir(d))


def _check_workdir(config, workdir: str, class_names: list[str]) -> None:
    """A workdir holds one run. Re-running it with another config: one line listing the keys
    that changed (more epochs is a normal resume); a change its checkpoints cannot be restored
    into (another model, class count, optimizer or EMA state): a ConfigError naming the keys,
    before anything compiles."""
    from .config import _flat

    path = os.path.join(workdir, "config.json")
    if not (os.path.exists(path) and _has_checkpoint(workdir)):
        return
    try:
        with open(path) as f:
            old = _flat(json.load(f))
    except (OSError, ValueError):
        return  # a torn config.json: the checkpoints decide
    new = _flat(json.loads(config.to_json_best_effort()))
    changed = {
        k: (old.get(k), new.get(k))
        for k in sorted(old.keys() | new.keys())
        if old.get(k) != new.get(k)
    }
    bad = [
        k for k, f in _STATE_KEYS.items() if k in changed and f(changed[k][0]) != f(changed[k][1])
    ]
    classes_path = os.path.join(workdir, "classes.json")
    old_classes = None
    if os.path.exists(classes_path):
        try:
            with open(classes_path) as f:
                old_classes = json.load(f)["class_names"]
        except (OSError, ValueError, KeyError):
            pass
    what = [f"{k} {changed[k][0]!r} -> {changed[k][1]!r}" for k in bad]
    if old_classes is not None and len(old_classes) != len(class_names):
        what.append(f"classes {len(old_classes)} -> {len(class_names)}")
    if what:
        raise ConfigError(
            f"{workdir} holds a run whose checkpoints cannot be restored into this config "
            f"({'; '.join(what)}): give another --workdir, or remove {workdir} to start over"
        )
    if old_classes is not None and len(old_classes) == len(class_names):
        from edgejax.data.sources import class_difference

        differ = class_difference(old_classes, class_names)
        if differ:
            print(
                f"edgejax.train: {workdir} was trained on other class names than the data has "
                f"(index: run / data): {differ}; resuming, its labels now mean the data's",
                flush=True,
            )
    if changed:
        print(
            f"edgejax.train: resuming {workdir} with a changed config: "
            + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()),
            flush=True,
        )


def _write_config(config, workdir: str) -> None:
    path = os.path.join(workdir, "config.json")
    new = json.loads(config.to_json_best_effort())
    if os.path.exists(path):
        try:
            with open(path) as f:
                old = json.load(f)
        except (OSError, ValueError):
            old = None
        if old != new:
            os.replace(path, os.path.join(workdir, f"config.{int(time.time())}.json"))
    with open(path, "w") as f:
        json.dump(new, f, indent=2, sort_keys=True)
