"""The training loop: ``run(config, workdir, *, report_fn=None) -> summary``.

Everything around the jitted step lives here: data, the mesh and shardings, evaluation cadence,
checkpoints, logging, preemption (SIGTERM) and stopping on a non-finite loss.
"""
from __future__ import annotations

import json
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
from .config import ConfigError, resolve_dataset, validate
from .logging import MetricLogger
from .optim import make_optimizer, make_schedule
from .state import TrainState, init_train_state, split_model
from .step import make_eval_step, make_train_step

__all__ = ["run", "Pruned", "NonFiniteLossError", "build", "Run"]


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


def _compile_cheap(jitted):
    lowered = jitted.lower()
    try:
        return lowered.compile(compiler_options=_CHEAP_COMPILE)
    except Exception:  # an XLA build without these options
        return lowered.compile()


class Run:
    """Everything built from a config before the loop starts (also used by benchmarks / tests).

    Attributes: config, mesh, replicated / batch shardings, model_def, tx, schedule, state,
    train_step / eval_step (jitted), mean, std, image_size, num_classes.
    """

    def __init__(self, config, *, num_classes: int, steps_per_epoch: int, total_steps: int,
                 devices=None):
        import edgejax
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
            raise ConfigError(f"global_batch_size {config.global_batch_size} must be divisible by "
                              f"the {n} devices of the mesh")
        micro = config.global_batch_size // config.optimizer.grad_accum_steps
        if micro % n:
            raise ConfigError(f"micro-batch {micro} (global_batch_size / grad_accum_steps) must be "
                              f"divisible by the {n} devices")

        kwargs = {}
        if config.model.drop_rate:
            kwargs["drop_rate"] = config.model.drop_rate
        if config.model.drop_path_rate:
            kwargs["drop_path_rate"] = config.model.drop_path_rate
        pretrained = config.model.pretrained
        pretrained = True if pretrained == "hub" else (pretrained or None)
        dtype = jnp.bfloat16 if config.dtype == "bfloat16" else None

        def make_model():
            return edgejax.create_model(config.model.name, num_classes=num_classes,
                                        pretrained=pretrained, rngs=int(config.seed), dtype=dtype,
                                        **kwargs)

        seed, ema = int(config.seed), config.ema.decay > 0
        if pretrained:  # file / hub reads cannot be traced: build eagerly, then place
            self.model_def, params, batch_stats, model_state = split_model(make_model())
            self.schedule = make_schedule(config, steps_per_epoch, total_steps)
            self.tx = make_optimizer(config, params, self.schedule)
            params, batch_stats, model_state = _replicate((params, batch_stats, model_state),
                                                          self.replicated)
            init = jax.jit(lambda p, b, m: init_train_state(p, b, m, self.tx, seed=seed, ema=ema),
                           out_shardings=self.replicated)
            self.state: TrainState = init(params, batch_stats, model_state)
        else:
            # Build the model inside one jit: one compilation instead of one per initializer op
            # (minutes on a busy CPU), and the state is born replicated on the mesh.
            self.model_def, abstract_params, _, _ = split_model(nnx.eval_shape(make_model))
            self.schedule = make_schedule(config, steps_per_epoch, total_steps)
            self.tx = make_optimizer(config, abstract_params, self.schedule)

            def init():
                _, p, b, m = split_model(make_model())
                return init_train_state(p, b, m, self.tx, seed=seed, ema=ema)

            self.state = _compile_cheap(jax.jit(init, out_shardings=self.replicated))()

        step_fn = make_train_step(config, self.model_def, self.tx, self.schedule, self.mean,
                                  self.std)
        self.train_step = jax.jit(step_fn, in_shardings=(self.replicated, self.batch_sharding),
                                  out_shardings=(self.replicated, self.replicated),
                                  donate_argnums=(0,))
        eval_fn = make_eval_step(config, self.model_def, self.mean, self.std)
        r = self.replicated
        self.eval_step = jax.jit(eval_fn, in_shardings=(r, r, r, self.batch_sharding),
                                 out_shardings=r)

    def put_batch(self, batch: dict) -> dict:
        """Process-local numpy batch -> global arrays sharded over the ``data`` axis."""
        return {k: jax.make_array_from_process_local_data(self.batch_sharding, np.asarray(v))
                for k, v in batch.items()}


def build(config, *, num_classes: int, steps_per_epoch: int = 100, total_steps: int = 100,
          devices=None) -> Run:
    """Validate ``config`` and build model, optimizer, state and jitted steps (no data)."""
    return Run(validate(config), num_classes=num_classes, steps_per_epoch=steps_per_epoch,
               total_steps=total_steps, devices=devices)


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


def _evaluate(r: Run, state: TrainState, loader) -> dict:
    totals = None
    ema = state.ema_params is not None
    for batch in loader:
        out = {"": r.eval_step(state.params, state.batch_stats, state.model_state, batch)}
        if ema:
            out["ema_"] = r.eval_step(state.ema_params, state.ema_batch_stats, state.model_state,
                                      batch)
        out = {f"{p}{k}": v for p, sums in out.items() for k, v in sums.items()}
        totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
    host = {k: float(v) for k, v in _host(totals).items()}
    result = {}
    for p in ("", "ema_") if ema else ("",):
        n = max(host[f"{p}count"], 1.0)
        result[f"{p}top1"] = 100.0 * host[f"{p}top1"] / n
        result[f"{p}top5"] = 100.0 * host[f"{p}top5"] / n
        result[f"{p}loss"] = host[f"{p}loss"] / n
    result["count"] = int(host["count"])
    return result


def _score(metrics: dict, which: str) -> float:
    keys = [k for k in (which, f"ema_{which}") if k in metrics]
    vals = [metrics[k] for k in keys]
    return -min(vals) if which == "loss" else max(vals)


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
    from edgejax import data
    import edgejax

    config = validate(config)
    try:  # unknown model names fail here, with the closest registered names
        edgejax.model_info(config.model.name)
    except ValueError as e:
        raise ConfigError(f"config.model.name: {e}") from None
    dataset = resolve_dataset(config.data.dataset)
    train_src, train_info = data.build_source(dataset, config.data.train_split)
    eval_src, _ = data.build_source(dataset, config.data.eval_split)
    num_classes = int(train_info["num_classes"])
    gbs = int(config.global_batch_size)
    spe = data.steps_per_epoch(len(train_src), gbs)
    total = int(config.num_steps) if config.num_steps > 0 else int(math.ceil(config.num_epochs * spe))
    if config.eval.every_steps > 0:
        eval_every = int(config.eval.every_steps)
    elif config.eval.every_epochs > 0:
        eval_every = max(int(round(config.eval.every_epochs * spe)), 1)
    else:
        eval_every = total
    ckpt_every = int(config.checkpoint.every_steps) or eval_every

    is_main = jax.process_index() == 0
    workdir = os.path.abspath(workdir)
    if is_main:
        os.makedirs(workdir, exist_ok=True)
        _write_config(config, workdir)

    r = Run(config, num_classes=num_classes, steps_per_epoch=spe, total_steps=total)
    ckpt = Checkpointer(workdir, keep=config.checkpoint.keep, keep_best=config.checkpoint.keep_best,
                        async_save=config.checkpoint.async_save)
    state = r.state
    best = {"score": -math.inf, "top1": None, "step": None, "epoch": None}
    last_eval: dict = {}
    if ckpt.latest_step() is not None:
        state, meta = ckpt.restore(state)
        best.update(meta.get("best", {}))
        last_eval = meta.get("last_eval", {})
        best["score"] = best["score"] if best["score"] is not None else -math.inf
    start = int(_host(state.step))

    logger = MetricLogger(workdir, total_steps=total, start_step=start, global_batch_size=gbs,
                          tensorboard=config.log.tensorboard, progress=config.log.progress,
                          active=is_main)
    if start:
        logger.write(f"edgejax.train: resuming {workdir} at step {start} "
                     f"(epoch {start / spe:.2f})")
    d = config.data
    train_loader = data.make_train_loader(
        train_src, global_batch_size=gbs, image_size=r.image_size, seed=int(config.seed),
        start_step=start, workers=d.workers, scale=tuple(d.scale), ratio=tuple(d.ratio),
        hflip=d.hflip, interpolation=r.interpolation, sharding=r.batch_sharding)
    eval_bs = int(config.eval.batch_size) or gbs
    eval_bs = int(math.ceil(eval_bs / jax.device_count()) * jax.device_count())
    eval_loader = data.make_eval_loader(
        eval_src, global_batch_size=eval_bs, image_size=r.eval_image_size, crop_pct=r.crop_pct,
        interpolation=r.interpolation, workers=d.workers, sharding=r.batch_sharding)

    def meta(step):
        return {"step": step, "epoch": step / spe, "data_position": step * gbs,
                "global_batch_size": gbs, "seed": int(config.seed), "best": best,
                "last_eval": last_eval}

    status = "completed"
    window: list[dict] = []
    pending = None
    step = start
    t_start = time.perf_counter()
    compiled_at = None

    def flush():
        """Fetch the last step's metrics; stop on a non-finite loss."""
        nonlocal pending
        if pending is None:
            return
        s, m = pending
        pending = None
        host = {k: float(v) for k, v in _host(m).items()}
        if not (math.isfinite(host["loss"]) and math.isfinite(host["grad_norm"])):
            ckpt.wait()
            raise NonFiniteLossError(
                f"non-finite loss at step {s} (loss={host['loss']}, grad_norm={host['grad_norm']}); "
                f"stopping. The last good checkpoint is step {ckpt.latest_step()} in {ckpt.dir}")
        window.append(host)
        logger.progress(s, host)

    try:
        with _Preemption() as pre:
            it = iter(train_loader)
            while step < total:
                if pre.requested or ckpt.manager.reached_preemption(step):
                    flush()
                    ckpt.save(state, meta(step))
                    ckpt.wait()
                    status = "preempted"
                    logger.write(f"edgejax.train: SIGTERM: saved step {step}, exiting")
                    break
                batch = next(it)
                state, metrics = r.train_step(state, batch)
                flush()  # the previous step's metrics, while this one runs
                step += 1
                pending = (step, metrics)
                if compiled_at is None:
                    flush()
                    compiled_at = time.perf_counter() - t_start
                    logger.reset_rate(step)
                boundary_eval = step % eval_every == 0 or step == total
                boundary_ckpt = step % ckpt_every == 0 or step == total
                if step % config.log.every_steps == 0 or boundary_eval or boundary_ckpt:
                    flush()
                    if window:
                        avg = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                        avg["lr"] = window[-1]["lr"]
                        avg["epoch"] = step / spe
                        logger.log("train", step, avg)
                        window.clear()
                if boundary_eval:
                    last_eval = _evaluate(r, state, eval_loader)
                    epoch = step / spe
                    last_eval.update(step=step, epoch=epoch)
                    logger.log("eval", step, last_eval)
                    ema_txt = (f", EMA top-1 {last_eval['ema_top1']:.2f}"
                               if "ema_top1" in last_eval else "")
                    logger.write(f"step {step} epoch {epoch:.2f}: top-1 {last_eval['top1']:.2f} "
                                 f"top-5 {last_eval['top5']:.2f} loss {last_eval['loss']:.4f}"
                                 f"{ema_txt}")
                    score = _score(last_eval, config.eval.best_metric)
                    improved = score > best["score"]
                    if improved:
                        best.update(score=score, step=step, epoch=epoch,
                                    top1=max(last_eval["top1"], last_eval.get("ema_top1", -1.0)))
                    if boundary_ckpt:
                        ckpt.save(state, meta(step))
                    if improved:
                        ckpt.save_best(state, meta(step))
                    logger.reset_rate(step)
                    if report_fn is not None:
                        try:
                            stop = report_fn(int(round(epoch)), dict(last_eval))
                        except Pruned:
                            stop = True
                        if stop:
                            status = "pruned"
                            break
                elif boundary_ckpt:
                    ckpt.save(state, meta(step))
            flush()
    finally:
        ckpt.wait()
        ckpt.close()
        elapsed = time.perf_counter() - t_start
        logger.close()
    summary = {
        "status": status, "step": step, "epoch": step / spe, "total_steps": total,
        "steps_per_epoch": spe, "best_top1": best["top1"], "best_epoch": best["epoch"],
        "best_step": best["step"], "last_eval": last_eval, "workdir": workdir,
        "model": config.model.name, "num_params": int(sum(
            x.size for x in jax.tree.leaves(state.params))),
        "time_s": round(elapsed, 2), "compile_s": round(compiled_at or 0.0, 2),
    }
    if is_main:
        with open(os.path.join(workdir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
        top = "n/a" if best["top1"] is None else f"{best['top1']:.2f}"
        print(f"edgejax.train: {status} {config.model.name} step {step}/{total} in "
              f"{elapsed:.0f}s; best top-1 {top} (epoch {best['epoch']})", flush=True)
    return summary


def _write_config(config, workdir: str) -> None:
    path = os.path.join(workdir, "config.json")
    new = json.loads(config.to_json_best_effort())
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        if old != new:
            os.replace(path, os.path.join(workdir, f"config.{int(time.time())}.json"))
    with open(path, "w") as f:
        json.dump(new, f, indent=2, sort_keys=True)
