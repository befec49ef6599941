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

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from .state import TrainState

__all__ = ["Checkpointer"]

_FIELDS = ("step", "params", "batch_stats", "model_state", "opt_state", "ema_params",
           "ema_batch_stats", "rng")


def _as_dict(state: TrainState, fields=_FIELDS) -> dict:
    return {f: getattr(state, f) for f in fields if getattr(state, f) is not None}


def _abstract(tree):
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        tree)


class Checkpointer:
    """The run's two checkpoint managers (latest N, best 1)."""

    def __init__(self, workdir: str, *, keep: int = 2, keep_best: bool = True,
                 async_save: bool = True):
        self.dir = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.best_dir = os.path.join(os.path.abspath(workdir), "best")
        opts = dict(enable_async_checkpointing=async_save, create=True,
                    cleanup_tmp_directories=True)
        self.manager = ocp.CheckpointManager(
            self.dir, options=ocp.CheckpointManagerOptions(max_to_keep=keep, **opts),
            item_names=("state", "meta"))
        self.best = None
        if keep_best:
            self.best = ocp.CheckpointManager(
                self.best_dir, options=ocp.CheckpointManagerOptions(max_to_keep=1, **opts),
                item_names=("state", "meta"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, state: TrainState, meta: dict, *, force: bool = True) -> None:
        step = int(jax.device_get(state.step))
        if step in self.manager.all_steps():
            return
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(_as_dict(state)), meta=ocp.args.JsonSave(meta)),
            force=force)

    def save_best(self, state: TrainState, meta: dict) -> None:
        if self.best is None:
            return
        step = int(jax.device_get(state.step))
        if step in self.best.all_steps():
            return
        fields = ("step", "params", "batch_stats", "model_state", "ema_params", "ema_batch_stats")
        self.best.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(_as_dict(state, fields)), meta=ocp.args.JsonSave(meta)),
            force=True)

    def restore(self, like: TrainState, step: int | None = None) -> tuple[TrainState, dict]:
        """Restore into the shapes, dtypes and shardings of ``like`` (a freshly built state)."""
        step = self.manager.latest_step() if step is None else step
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_abstract(_as_dict(like))), meta=ocp.args.JsonRestore()))
        return like.replace(**restored["state"]), dict(restored["meta"])

    def best_meta(self) -> dict | None:
        if self.best is None or self.best.latest_step() is None:
            return None
        return dict(self.best.restore(self.best.latest_step(), args=ocp.args.Composite(
            meta=ocp.args.JsonRestore()))["meta"])

    def wait(self) -> None:
        self.manager.wait_until_finished()
        if self.best is not None:
            self.best.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
        if self.best is not None:
            self.best.close()


def load_weights(path: str, step: int | None = None) -> dict[str, Any]:
    """Read the weights of a run's checkpoint directory (``<workdir>/best`` or
    ``<workdir>/checkpoints``) as numpy pure dicts: params, batch_stats, ema_params, ...

    To use them: ``nnx.replace_by_pure_dict(state, weights["params"])`` on a model's state.
    """
    with ocp.CheckpointManager(os.path.abspath(path), item_names=("state", "meta"),
                               options=ocp.CheckpointManagerOptions(read_only=True)) as mgr:
        step = mgr.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {path}")
        return dict(mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"])
