"""Knowledge distillation: a teacher that runs inside the student's train step.

``config.distill`` names the teacher (any registered model) and its weights (a training run of
``edgejax.train`` or timm weights); :func:`load_teacher` builds it once, the train step runs it in
eval mode on the same augmented batch as the student, in the run's compute dtype, with the
teacher's own normalisation and input size (resized on the device), and mixes
:func:`distill_loss` into the loss. :mod:`edgejax.distill.cache` writes a teacher's sparse
targets once, for runs that read them instead of running it. See docs/training.md.
"""

from .teacher import (
    Teacher,
    TeacherDef,
    distill_loss,
    load_teacher,
    random_teacher,
    teacher_logits,
)

__all__ = [
    "Teacher",
    "TeacherDef",
    "load_teacher",
    "random_teacher",
    "teacher_logits",
    "distill_loss",
]
