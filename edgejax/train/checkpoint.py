"""Checkpoints with orbax ``CheckpointManager``.

``<workdir>/checkpoints/<step>/``: the whole ``TrainState`` (params, batch stats, optimizer state,
EMA, step, RNG; the data position is the step: the loader resumes statelessly at it) plus a JSON
``meta`` item (epoch, data position, metrics). The last ``keep`` are kept. Saves are asynchronous:
the device-to-host copy happens inside ``save`` (so the next step may donate the state) and the
write runs in the background; orbax commits a step atomically, so a process killed mid-write leaves
the previous checkpoint as the latest.

``<workdir>/best/<step>/``: the weights only (params, batch stats, EMA), of the best evaluation.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from .state import TrainState

__all__ = ["Checkpointer", "CheckpointWriteError", "load_weights", "load_model"]


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (disk full, read-only or unwritable directory)."""


_WRITE_FAILURES = (
    "RESOURCE_EXHAUSTED",
    "No space left",
    "os_error_code='28'",
    "Read-only file system",
    "Permission denied",
    "PERMISSION_DENIED",
)


class _OrbaxNoise(logging.Filter):
    """orbax logs a failed background save several times over, with tracebacks, from each of
    its threads; the failure reaches the run as one exception, said in one line
    (``CheckpointWriteError``), so its own records below CRITICAL are dropped."""

    def filter(self, record):
        return record.levelno >= logging.CRITICAL or "/orbax/" not in record.pathname


def _install_log_filter() -> None:
    absl = logging.getLogger("absl")
    if not any(isinstance(f, _OrbaxNoise) for f in absl.filters):
        absl.addFilter(_OrbaxNoise())


# ``hparams`` is not saved: it comes from the config at every start (each leaf would be one more
# array file per checkpoint).
_FIELDS = (
    "step",
    "params",
    "batch_stats",
    "model_state",
    "opt_state",
    "ema_params",
    "ema_batch_stats",
    "rng",
    "active",
)


def _as_dict(state: TrainState, fields=_FIELDS) -> dict:
    return {f: getattr(state, f) for f in fields if getattr(state, f) is not None}


def _abstract(tree):
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        tree,
    )


class Checkpointer:
    """The run's two checkpoint managers (latest N, best 1)."""

    def __init__(
        self,
        workdir: str,
        *,
        keep: int = 2,
        keep_best: bool = True,
        async_save: bool = True,
        latest: bool = True,
    ):
        self.dir = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.best_dir = os.path.join(os.path.abspath(workdir), "best")
        # Several processes: save synchronously. Two managers' async saves each end in a
        # cross-process barrier, and a two-process run was seen to hang finalising the best
        # checkpoint while the latest one was also in flight.
        async_save = async_save and jax.process_count() == 1
        _install_log_filter()
        if latest and jax.process_index() == 0:
            _set_aside_partial_saves(self.dir)
        opts = dict(
            enable_async_checkpointing=async_save, create=True, cleanup_tmp_directories=True
        )
        # latest=False: only best/ (a trial of a group, whose latest state is the group's).
        self.manager = (
            ocp.CheckpointManager(
                self.dir,
                options=ocp.CheckpointManagerOptions(max_to_keep=keep, **opts),
                item_names=("state", "meta"),
            )
            if latest
            else None
        )
        self.best = None
        if keep_best:
            self.best = ocp.CheckpointManager(
                self.best_dir,
                options=ocp.CheckpointManagerOptions(max_to_keep=1, **opts),
                item_names=("state", "meta"),
            )

    def latest_step(self) -> int | None:
        return self.manager.latest_step() if self.manager is not None else None

    def set_aside(self, step: int, why: str) -> str:
        """Move checkpoint ``step`` (unreadable) to ``<workdir>/checkpoints.damaged/`` (never
        deleted: the user decides), say so in one line, and forget it; returns where it went."""
        dest = _aside_path(self.dir, str(step))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.replace(os.path.join(self.dir, str(step)), dest)
        self.manager.reload()
        print(
            f"edgejax.train: checkpoint step {step} in {self.dir} is unreadable ({why}); "
            f"moved it to {dest} and resuming from the newest readable one",
            flush=True,
        )
        return dest

    def read_meta(self, step: int | None = None) -> dict:
        """The JSON ``meta`` of the latest (or ``step``'s) checkpoint, without its arrays."""
        step = self.manager.latest_step() if step is None else step
        return dict(
            self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        )

    @contextlib.contextmanager
    def _writing(self, directory: str, step: int | None):
        """A failed write (here or of an earlier asynchronous save) -> one CheckpointWriteError
        naming the directory, the step, the last good step and the free space."""
        try:
            yield
        except Exception as e:
            text = str(e)
            if not (isinstance(e, OSError) or any(m in text for m in _WRITE_FAILURES)):
                raise
            why = (
                "no space left on device"
                if ("RESOURCE_EXHAUSTED" in text or "No space" in text or "'28'" in text)
                else "the directory is not writable"
            )
            try:
                free = f"{shutil.disk_usage(directory).free / 2**20:.1f} MB free"
            except OSError:
                free = "free space unknown"
            import re

            failed = re.search(r"/(\d+)\.orbax-checkpoint-tmp", text)
            step = int(failed.group(1)) if failed else step  # an earlier asynchronous save
            good = [
                st
                for st in (self.manager.all_steps(read=True) if self.manager else [])
                if os.path.isdir(os.path.join(self.dir, str(st)))
            ]
            last = f"step {max(good)} in {self.dir}" if good else "none"
            raise CheckpointWriteError(
                f"could not write a checkpoint{f' of step {step}' if step is not None else ''} "
                f"to {directory}: {why} ({free}). Last good checkpoint: {last}. Free some space "
                f"(or give another --workdir) and run the same command again: it resumes from "
                f"the last good checkpoint"
            ) from None

    def save(self, state: TrainState, meta: dict, *, force: bool = True) -> None:
        step = int(np.asarray(jax.device_get(state.step)).reshape(-1)[0])  # a group: [K] steps
        if step in self.manager.all_steps():
            return
        with self._writing(self.dir, step):
            self.manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(_as_dict(state)), meta=ocp.args.JsonSave(meta)
                ),
                force=force,
            )

    def save_best(self, state: TrainState, meta: dict) -> None:
        if self.best is None:
            return
        step = int(jax.device_get(state.step))
        if step in self.best.all_steps():
            return
        fields = ("step", "params", "batch_stats", "model_state", "ema_params", "ema_batch_stats")
        with self._writing(self.best_dir, step):
            self.best.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(_as_dict(state, fields)),
                    meta=ocp.args.JsonSave(meta),
                ),
                force=True,
            )

    def restore(self, like: TrainState, step: int | None = None) -> tuple[TrainState, dict]:
        """Restore into the shapes, dtypes and shardings of ``like`` (a freshly built state)."""
        step = self.manager.latest_step() if step is None else step
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(_abstract(_as_dict(like))),
                meta=ocp.args.JsonRestore(),
            ),
        )
        return like.replace(**restored["state"]), dict(restored["meta"])

    def best_meta(self) -> dict | None:
        if self.best is None or self.best.latest_step() is None:
            return None
        return dict(
            self.best.restore(
                self.best.latest_step(), args=ocp.args.Composite(meta=ocp.args.JsonRestore())
            )["meta"]
        )

    def wait(self) -> None:
        if self.manager is not None:
            with self._writing(self.dir, None):
                self.manager.wait_until_finished()
        if self.best is not None:
            with self._writing(self.best_dir, None):
                self.best.wait_until_finished()

    def close(self) -> None:
        if self.manager is not None:
            self.manager.close()
        if self.best is not None:
            self.best.close()


def _aside_path(ckpt_dir: str, name: str) -> str:
    base = os.path.join(os.path.dirname(ckpt_dir), os.path.basename(ckpt_dir) + ".damaged", name)
    dest, i = base, 1
    while os.path.exists(dest):
        dest, i = f"{base}.{i}", i + 1
    return dest


def _set_aside_partial_saves(ckpt_dir: str) -> None:
    """A save interrupted mid-write leaves ``<step>.orbax-checkpoint-tmp*``: orbax would delete
    it; it is moved aside instead, with one line (the step before it is the latest)."""
    if not os.path.isdir(ckpt_dir):
        return
    for name in sorted(os.listdir(ckpt_dir)):
        if ".orbax-checkpoint-tmp" in name:
            dest = _aside_path(ckpt_dir, name)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.replace(os.path.join(ckpt_dir, name), dest)
            print(
                f"edgejax.train: {name} in {ckpt_dir} is a save that did not finish; moved "
                f"it to {dest}",
                flush=True,
            )


def describe_error(e: BaseException) -> str:
    """One line for an orbax / TensorStore failure (their messages run to many lines)."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:200]}{'...' if len(text) > 200 else ''}"


@contextlib.contextmanager
def _quiet_orbax():
    """Reading a finished run, orbax logs what a reader does not act on (a read-only manager,
    "setting create=False", a metadata file it does not need): hide its INFO / WARNING lines."""
    from absl import logging as absl_logging

    old = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        yield
    finally:
        absl_logging.set_verbosity(old)


def load_weights(path: str, step: int | None = None) -> dict[str, Any]:
    """Read the weights of a run's checkpoint directory (``<workdir>/best`` or
    ``<workdir>/checkpoints``) as numpy pure dicts: params, batch_stats, ema_params, ...

    To use them: ``nnx.replace_by_pure_dict(state, weights["params"])`` on a model's state.
    """
    with _quiet_orbax():
        return _load_weights(path, step)


def _load_weights(path: str, step: int | None) -> dict[str, Any]:
    with ocp.CheckpointManager(
        os.path.abspath(path),
        item_names=("state", "meta"),
        options=ocp.CheckpointManagerOptions(read_only=True),
    ) as mgr:
        step = mgr.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {path}")
    # Restore onto one local device whatever the saving topology (e.g. a run of several
    # processes), from the metadata's shapes and dtypes.
    item = os.path.join(os.path.abspath(path), str(step), "state")
    ckptr = ocp.StandardCheckpointer()
    try:
        tree = ckptr.metadata(item)
        tree = getattr(tree, "item_metadata", tree)
        tree = getattr(tree, "tree", tree)
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree
        )
        return dict(jax.device_get(ckptr.restore(item, target)))
    finally:
        ckptr.close()


def _newest_readable(path: str, dirs: list[str]) -> tuple[dict, str]:
    """The weights of the newest readable step of ``dirs`` (best/ first, then checkpoints/),
    saying in one line each unreadable one it passes over; nothing is moved (a reader)."""
    import logging

    log = logging.getLogger("edgejax")
    tried = []
    for d in dirs:
        steps = (
            sorted((int(n) for n in os.listdir(d) if n.isdigit()), reverse=True)
            if os.path.isdir(d)
            else []
        )
        for step in steps:
            try:
                return load_weights(d, step), d
            except Exception as e:  # orbax / TensorStore: missing, truncated or torn files
                tried.append(f"{os.path.basename(d)}/{step}")
                log.warning(
                    "%s step %d is unreadable (%s); trying an older checkpoint",
                    d,
                    step,
                    describe_error(e),
                )
    if tried:
        raise ValueError(f"no readable checkpoint in {path} (unreadable: {', '.join(tried)})")
    raise FileNotFoundError(f"no checkpoint in {path}")


def load_model(
    path: str,
    model_name: str | None = None,
    *,
    ema: bool | None = None,
    num_classes: int | None = None,
):
    """An eval-mode ``nnx.Module`` from a training run.

    ``path``: a run's workdir (its ``best/`` is used when present, else ``checkpoints/``) or one of
    those directories. The model name and class count come from the run's ``config.json`` and the
    checkpoint unless given. ``ema``: use the EMA weights (default: when the checkpoint has them).
    """
    import json

    import jax.numpy as jnp
    from flax import nnx

    from ..registry import create_model

    path = os.path.abspath(path)
    workdir, dirs = path, [path]
    if os.path.isdir(os.path.join(path, "best")) or os.path.isdir(
        os.path.join(path, "checkpoints")
    ):
        dirs = [
            os.path.join(path, d)
            for d in ("best", "checkpoints")
            if os.path.isdir(os.path.join(path, d))
        ]
    else:
        workdir = os.path.dirname(path)
    cfg_path = os.path.join(workdir, "config.json")
    run_model = None
    if os.path.exists(cfg_path):
        with open(cfg_path) as f:
            run_model = json.load(f)["model"]["name"]
    if model_name is None:
        if run_model is None:
            raise FileNotFoundError(
                f"{path}: no config.json beside the checkpoint; pass model_name"
            )
        model_name = run_model
    elif run_model is not None:
        from ..registry import get_entry

        if get_entry(model_name).name != get_entry(run_model).name:
            # the weights would not fit: say which model the run trained, not which key is missing
            raise ValueError(f"{path} is a run of {run_model}, not {model_name}")
    weights, ckpt = _newest_readable(path, dirs)
    use_ema = weights.get("ema_params") is not None if ema is None else ema
    if use_ema and weights.get("ema_params") is None:
        raise ValueError(f"{ckpt} holds no EMA weights")
    params = weights["ema_params"] if use_ema else weights["params"]
    stats = (weights.get("ema_batch_stats") if use_ema else weights.get("batch_stats")) or {}
    if num_classes is None:  # the width of the classifier named by the model's ``timm_head``
        from ..registry import get_entry

        entry = get_entry(model_name)
        head_path = getattr(
            entry.builder(entry.cfg, num_classes=1, rngs=nnx.Rngs(0), dtype=None),
            "timm_head",
            "head.fc",
        )
        node = params
        for part in head_path.split("."):
            node = (
                node.get(int(part) if part.isdigit() and int(part) in node else part, {})
                if isinstance(node, dict)
                else {}
            )
        kernel = node.get("kernel") if isinstance(node, dict) else None
        num_classes = int(kernel.shape[-1]) if kernel is not None else 0
    model = create_model(model_name, num_classes=num_classes, rngs=0)
    _, p_state, s_state, _ = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    nnx.replace_by_pure_dict(p_state, jax.tree.map(jnp.asarray, params))
    if stats:
        nnx.replace_by_pure_dict(s_state, jax.tree.map(jnp.asarray, stats))
    nnx.update(model, p_state, s_state)
    model.eval()
    return model
