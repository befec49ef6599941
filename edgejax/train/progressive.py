"""The run's plan: its stages, steps and epochs (progressive learning, EfficientNetV2 §4).

A run without ``config.progressive`` is one stage: one image size and batch size, ``num_epochs``
(or ``num_steps``) long, its batches the train loader's stream from step 0. With
``progressive.stages = N >= 2`` the run's whole epochs are cut into N stages of (nearly) equal
length; stage i trains at an image size growing linearly from ``progressive.start_size`` to the
final one (``data.image_size``), optionally at its own batch size, and with RandAugment magnitude,
Mixup / CutMix alpha and dropout ramped linearly from their ``start_*`` values to the config's.

The sizes and batch sizes are shapes: each stage is one compiled train program. The ramped
values are per-trial hyperparameters (:mod:`edgejax.train.hparams`), set in the state at each
stage's first step, so they cost no compilation. Every epoch reads one fresh permutation of the
data whatever the stage's batch size, so stage i's step s is batch ``e_i * spe_i + s`` of a
loader at that stage's batch size: resuming mid-stage reads exactly the batches that were next.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import ml_collections

__all__ = ["Stage", "Plan", "make_plan", "stage_config"]


@dataclass(frozen=True)
class Stage:
    """One stage: epochs [first_epoch, end_epoch), steps [start_step, end_step)."""

    index: int
    first_epoch: int
    end_epoch: int
    start_step: int
    end_step: int
    image_size: int
    batch_size: int
    steps_per_epoch: int

    def loader_step(self, step: int) -> int:
        """The batch index of global ``step`` in a loader of this stage's batch size."""
        return self.first_epoch * self.steps_per_epoch + (step - self.start_step)

    def describe(self, n: int) -> str:
        return (
            f"stage {self.index + 1}/{n}: epochs {self.first_epoch}-{self.end_epoch}, "
            f"{self.image_size} px, batch {self.batch_size}, steps {self.start_step}-{self.end_step}"
        )


class Plan:
    """The stages of a run and the step <-> epoch arithmetic over them."""

    def __init__(self, stages: list[Stage], *, progressive: bool):
        self.stages = stages
        self.progressive = progressive
        self.total_steps = stages[-1].end_step

    @property
    def steps_per_epoch(self):
        """Steps per epoch (an int for one stage; for progressive runs the mean over the run,
        which converts warmup / decay epochs to steps)."""
        if not self.progressive:
            return self.stages[0].steps_per_epoch
        return self.total_steps / self.stages[-1].end_epoch

    def stage_at(self, step: int) -> Stage:
        for st in self.stages:
            if step < st.end_step:
                return st
        return self.stages[-1]

    def epoch_at(self, step: int) -> float:
        st = self.stage_at(step)
        return st.first_epoch + (step - st.start_step) / st.steps_per_epoch

    def samples_at(self, step: int) -> int:
        """Training samples drawn before ``step``."""
        return sum(
            max(0, min(step, st.end_step) - st.start_step) * st.batch_size for st in self.stages
        )

    def step_at_epoch(self, epoch: float) -> int:
        """The first step at or after ``epoch`` (whole or fractional)."""
        for st in self.stages:
            if epoch < st.end_epoch:
                return st.start_step + int(round((epoch - st.first_epoch) * st.steps_per_epoch))
        return self.total_steps

    def eval_steps(self, every_epochs: float, every_steps: int) -> set[int] | int:
        """Where to evaluate: an int ``n`` (every n-th step) or, for progressive runs with
        ``every_epochs``, the set of steps at those epoch marks; the last step always."""
        if every_steps > 0:
            return int(every_steps)
        if every_epochs <= 0:
            return self.total_steps
        if not self.progressive:
            return max(int(round(every_epochs * self.stages[0].steps_per_epoch)), 1)
        marks = set()
        j = 1
        while j * every_epochs < self.stages[-1].end_epoch:
            marks.add(max(self.step_at_epoch(j * every_epochs), 1))
            j += 1
        return marks | {self.total_steps}

    def summary(self) -> list[dict]:
        return [
            dict(
                epochs=[st.first_epoch, st.end_epoch],
                steps=[st.start_step, st.end_step],
                image_size=st.image_size,
                batch_size=st.batch_size,
            )
            for st in self.stages
        ]


def _round_to(x: float, multiple: int) -> int:
    return max(multiple, int(round(x / multiple)) * multiple)


def make_plan(config, num_records: int, image_size: int) -> Plan:
    """The stages of ``config``'s run over ``num_records`` training records, ``image_size`` the
    final (or only) size."""
    from edgejax.data import steps_per_epoch

    p = config.progressive
    gbs = int(config.global_batch_size)
    if p.stages <= 1:
        spe = steps_per_epoch(num_records, gbs)
        total = (
            int(config.num_steps)
            if config.num_steps > 0
            else int(math.ceil(config.num_epochs * spe))
        )
        epochs = int(math.ceil(total / spe))
        return Plan([Stage(0, 0, epochs, 0, total, image_size, gbs, spe)], progressive=False)
    n, epochs = int(p.stages), int(config.num_epochs)
    bounds = [int(round(i * epochs / n)) for i in range(n + 1)]
    stages, step = [], 0
    for i in range(n):
        t = i / (n - 1)
        size = p.start_size + (image_size - p.start_size) * t
        size = image_size if i == n - 1 else min(_round_to(size, p.size_multiple), image_size)
        batch = int(p.batch_sizes[i]) if p.batch_sizes else gbs
        spe = steps_per_epoch(num_records, batch)
        length = (bounds[i + 1] - bounds[i]) * spe
        stages.append(Stage(i, bounds[i], bounds[i + 1], step, step + length, size, batch, spe))
        step += length
    return Plan(stages, progressive=True)


# The values ramped over the stages: (start key under config.progressive, the config's key).
RAMPED = (
    ("start_ra_magnitude", "augment.ra_magnitude"),
    ("start_mixup_alpha", "augment.mixup_alpha"),
    ("start_cutmix_alpha", "augment.cutmix_alpha"),
    ("start_drop_rate", "model.drop_rate"),
)


def stage_config(config, index: int):
    """``config`` with its ramped values as stage ``index`` trains them (``config`` itself for a
    run without stages): linear from ``progressive.start_*`` at the first stage to the config's
    own value at the last."""
    p = config.progressive
    if p.stages <= 1 or not any(p[start] >= 0 for start, _ in RAMPED):
        return config
    t = index / (p.stages - 1)
    c = ml_collections.ConfigDict(config.to_dict())
    for start, key in RAMPED:
        if p[start] < 0:
            continue
        group, leaf = key.split(".")
        final = float(config[group][leaf])
        c[group][leaf] = float(p[start]) + (final - float(p[start])) * t
    c.lock()
    return c
