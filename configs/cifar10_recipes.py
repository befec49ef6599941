"""Two training recipes measured on a small CIFAR-10 subset on the CPU: knowledge distillation
(a student alone vs the same student distilled from a stronger teacher) and progressive learning
(a fixed image size vs image size and RandAugment magnitude grown over three stages). The
32 px CIFAR-10 setup of ``configs/cifar10_deploy.py`` on 5,000 training images, evaluated on the
2,000 held-out test images. Results: docs/results/recipes_cpu.md.

Data (symbolic links into an ImageFolder copy of CIFAR-10, see ``tools/make_subset.py``)::

    python tools/make_subset.py ../shared/data/cifar10 runs/data/cifar10_5k \\
        --train 500 --val 50 --test 200 --seed 0

``arg`` is the part of the study:

- ``teacher``: ConvNeXt-Atto, 25 epochs at 32 px, evaluated once at the end (trained first;
  the distilled student reads its final weights from ``runs/recipes/teacher``);
- ``student``: MobileNetV3-Small 1.0, 20 epochs at 32 px;
- ``student_kd``: the same, distilled from the teacher: T = 4, alpha = 0.7 (set once, before
  any run, from common practice for a strong-but-imperfect teacher on a small dataset: a soft
  target at T = 4 carries the teacher's ranking of the wrong classes, and the label loss keeps
  30% of the weight because the teacher is itself far from perfect);
- ``fixed``: MobileNetV3-Small 1.0 at 64 px (CIFAR upsampled), RandAugment (2 ops,
  magnitude 10), 6 epochs;
- ``progressive``: the same with ``progressive.stages = 3``: 32 / 48 / 64 px, RandAugment
  magnitude 5 / 7.5 / 10, two epochs each (EfficientNetV2's recipe: small images with weak
  augmentation first).

::

    python -m edgejax.train --config configs/cifar10_recipes.py:teacher \\
        --workdir runs/recipes/teacher
    python -m edgejax.train --config configs/cifar10_recipes.py:student_kd \\
        --workdir runs/recipes/student_kd_s0 --config.seed=0

Common recipe: AdamW (lr 2e-3 at batch 128, weight decay 0.05), 1 warmup epoch then cosine
decay, random-resized crops (scale 0.35-1) and flips, label smoothing 0.1; ``data.seed`` = -1,
so the data order and augmentation draws follow ``seed``.
"""

import importlib.util
import os


PARTS = ("teacher", "student", "student_kd", "fixed", "progressive")
TEACHER_DIR = "runs/recipes/teacher"


def _deploy_config(arg):
    # the 32 px CIFAR-10 recipe of configs/cifar10_deploy.py, which this study shortens
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cifar10_deploy.py")
    spec = importlib.util.spec_from_file_location("cifar10_deploy", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(arg)


def get_config(arg=None):
    part = arg or "student"
    if part not in PARTS:
        raise ValueError(f"cifar10_recipes.py: arg is one of {', '.join(PARTS)}; got {arg!r}")
    c = _deploy_config(None)
    c.data.dataset = "runs/data/cifar10_5k"
    c.data.seed = -1
    c.schedule.warmup_epochs = 1.0
    c.log.every_steps = 10

    if part == "teacher":
        c.model.name = "convnext_atto"
        c.num_epochs = 25.0
        # evaluated once, at the end: the weights the student reads ("best") are then the final
        # ones, not a checkpoint picked on the test images
        c.eval.every_epochs = 0.0
    elif part in ("student", "student_kd"):
        c.model.name = "mobilenetv3_small_100"
        c.num_epochs = 20.0
        c.eval.every_epochs = 5.0
        if part == "student_kd":
            c.distill.teacher = "convnext_atto"
            c.distill.checkpoint = TEACHER_DIR
            c.distill.temperature = 4.0
            c.distill.alpha = 0.7
    else:
        c.model.name = "mobilenetv3_small_100"
        c.data.image_size = 64
        c.num_epochs = 6.0
        c.eval.every_epochs = 2.0
        c.augment.rand_augment = True
        c.augment.ra_num_ops = 2
        c.augment.ra_magnitude = 10.0
        if part == "progressive":
            c.progressive.stages = 3
            c.progressive.start_size = 32
            c.progressive.start_ra_magnitude = 5.0
    return c
