"""The teacher: how it is loaded, how it sees the student's batch, and the distillation loss."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "Teacher",
    "TeacherDef",
    "load_teacher",
    "random_teacher",
    "teacher_logits",
    "distill_loss",
]


@dataclass(frozen=True)
class TeacherDef:
    """The static half of a teacher (it shapes the compiled step): the model's graph, its input
    size and normalisation, and whether the targets are hard (argmax) or soft."""

    name: str
    mdef: Any  # edgejax.train.state.ModelDef
    image_size: int
    mean: tuple
    std: tuple
    hard: bool


@dataclass
class Teacher:
    """A teacher ready for the train step: ``definition`` (static) and ``weights`` (params,
    batch_stats, model_state as pure dicts: an argument of the step, held once per group)."""

    definition: TeacherDef
    weights: tuple
    source: str = ""

    def describe(self) -> str:
        d = self.definition
        kind = "hard" if d.hard else "soft"
        return f"teacher {d.name} ({self.source}) at {d.image_size} px, {kind} targets"


def _err(msg: str):
    from edgejax.train.config import ConfigError

    return ConfigError(f"config distill: {msg}")


def load_teacher(config, *, num_classes: int, class_names=None, dtype=None, say=print) -> Teacher:
    """The teacher ``config.distill`` describes, in eval mode, for a student with
    ``num_classes`` outputs. Raises ``ConfigError`` naming what is wrong: an unknown model, a
    missing run or file, a run of another model, a head of another width."""
    import edgejax
    from edgejax.train.state import split_model

    d = config.distill
    try:
        info = edgejax.model_info(d.teacher)
    except ValueError as e:
        raise _err(f"teacher: {e}") from None
    size, mean, std = info["input_size"][1], info["mean"], info["std"]
    if d.checkpoint:
        from edgejax.train.checkpoint import load_model

        run = os.path.abspath(d.checkpoint)
        if not os.path.isdir(run):
            raise _err(f"checkpoint {run} is not a directory (a training run's workdir)")
        cfg = {}
        if os.path.exists(os.path.join(run, "config.json")):
            with open(os.path.join(run, "config.json")) as f:
                cfg = json.load(f)
        trained = cfg.get("model", {}).get("name", d.teacher)
        if trained != d.teacher:
            raise _err(f"checkpoint {run} is a run of {trained!r}, not of teacher {d.teacher!r}")
        try:
            model = load_model(run, d.teacher)
        except (FileNotFoundError, ValueError) as e:
            raise _err(f"checkpoint {run}: {e}") from None
        data = cfg.get("data", {})
        size = int(data.get("image_size") or size)
        mean, std = tuple(data.get("mean") or mean), tuple(data.get("std") or std)
        source = run
        path = os.path.join(run, "classes.json")
        if class_names is not None and os.path.exists(path):
            from edgejax.data.sources import class_difference

            with open(path) as f:
                theirs = json.load(f).get("class_names", [])
            differ = len(theirs) == len(class_names) and class_difference(theirs, class_names)
            if differ:
                say(
                    f"edgejax.train: the teacher {run} was trained on other class names than "
                    f"the data has (index: teacher / data): {differ}"
                )
    else:
        pretrained = True if d.pretrained == "hub" else d.pretrained
        if pretrained is not True and not os.path.isfile(pretrained):
            raise _err(f"pretrained file {pretrained} does not exist")
        model = edgejax.create_model(d.teacher, pretrained=pretrained, rngs=0)
        source = "timm weights from the Hub" if pretrained is True else pretrained
    width = int(getattr(model, "num_classes", 0))
    if width != num_classes:
        raise _err(
            f"teacher {d.teacher} ({source}) has a {width}-class head, the student "
            f"{num_classes} classes: a teacher must predict the student's classes"
        )
    size = int(d.image_size or size)
    mean = tuple(float(v) for v in (d.mean or mean))
    std = tuple(float(v) for v in (d.std or std))
    mdef, params, batch_stats, model_state = split_model(model)
    if dtype is not None:  # the run's compute dtype: the same graph built for it
        from flax import nnx

        abstract = nnx.eval_shape(
            lambda: edgejax.create_model(d.teacher, num_classes=width, rngs=0, dtype=dtype)
        )
        mdef = split_model(abstract)[0]
    definition = TeacherDef(d.teacher, mdef, size, mean, std, bool(d.hard))
    return Teacher(definition, (params, batch_stats, model_state), source)


def random_teacher(
    name: str, num_classes: int, *, image_size: int | None = None, dtype=None, seed: int = 0
) -> Teacher:
    """A randomly initialised teacher (for benchmarks and tests: its cost, not its knowledge),
    at ``image_size`` (default: its model's input size) with its model's statistics."""
    import edgejax
    from edgejax.train.state import split_model

    info = edgejax.model_info(name)
    model = edgejax.create_model(name, num_classes=num_classes, rngs=seed, dtype=dtype)
    mdef, params, batch_stats, model_state = split_model(model)
    definition = TeacherDef(
        name,
        mdef,
        int(image_size or info["input_size"][1]),
        tuple(float(v) for v in info["mean"]),
        tuple(float(v) for v in info["std"]),
        False,
    )
    return Teacher(definition, (params, batch_stats, model_state), "random weights")


def teacher_logits(tdef: TeacherDef, weights, x, mean, std):
    """float32 logits [B, C] of the teacher for the student's input ``x`` (normalised with the
    student's ``mean`` / ``std``, any float dtype): renormalised with the teacher's own
    statistics and resized to its input size (bilinear, antialiased) when they differ. No
    gradient flows into the teacher."""
    from edgejax.train.state import merge

    dtype = x.dtype
    xt = x.astype(jnp.float32)
    if tuple(mean) != tuple(tdef.mean) or tuple(std) != tuple(tdef.std):
        # student: (p - m_s) / s_s; teacher: (p - m_t) / s_t = x * s_s / s_t + (m_s - m_t) / s_t
        ms, ss = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
        mt, st = jnp.asarray(tdef.mean, jnp.float32), jnp.asarray(tdef.std, jnp.float32)
        xt = xt * (ss / st) + (ms - mt) / st
    b, h, w, c = xt.shape
    if (h, w) != (tdef.image_size, tdef.image_size):
        xt = jax.image.resize(
            xt, (b, tdef.image_size, tdef.image_size, c), "bilinear", antialias=True
        )
    params, batch_stats, model_state = weights
    model = merge(tdef.mdef, params, batch_stats, model_state, train=False)
    return jax.lax.stop_gradient(model(xt.astype(dtype)).astype(jnp.float32))


def distill_loss(logits, t_logits, temperature, *, hard: bool, probs: bool = False):
    """Mean distillation loss over the batch: with ``hard``, the cross entropy against the
    teacher's argmax; else ``T^2 * KL(softmax(t / T) || softmax(s / T))`` (Hinton et al.; the
    T^2 keeps its gradients' scale independent of T). ``probs``: ``t_logits`` holds the
    teacher's probabilities at temperature T instead of its logits (a sparse cache's)."""
    logits = logits.astype(jnp.float32)
    if hard:
        labels = jnp.argmax(t_logits, axis=-1)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    t = jnp.asarray(temperature, jnp.float32)
    log_s = jax.nn.log_softmax(logits / t, axis=-1)
    if probs:
        p_t = t_logits.astype(jnp.float32)
        kl = jnp.sum(jax.scipy.special.xlogy(p_t, p_t) - p_t * log_s, axis=-1)
    else:
        log_t = jax.nn.log_softmax(t_logits / t, axis=-1)
        kl = jnp.sum(jnp.exp(log_t) * (log_t - log_s), axis=-1)
    return t * t * jnp.mean(kl)
