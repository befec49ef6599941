"""The CIFAR-10 tuning study's baseline: MobileNetV3-Small 1.0 from scratch on a 1,000-image
CIFAR-10 subset at 32 px, a regime where a plain recipe overfits and regularisation matters.

Data (symbolic links into an ImageFolder copy of CIFAR-10, see ``tools/make_subset.py``)::

    python tools/make_subset.py ../shared/data/cifar10 runs/data/cifar10_1k \\
        --train 100 --val 100 --test 200 --seed 0

``train`` (1,000) and ``val`` (1,000) are disjoint draws from CIFAR-10's training images; ``test``
(2,000) from its test images. Sweeps tune on ``val``; only the final retrains read ``test``
(``arg`` = ``test``). Command::

    python -m edgejax.train --config configs/cifar10_study.py --workdir runs/cifar10_baseline

Baseline recipe: AdamW (lr 3e-3 at batch 64, scaled linearly with the batch size, weight decay
0.01), cosine decay, no warmup, horizontal flips and no other augmentation (the whole image,
resized, is the crop), 60 epochs. Results: docs/results/cifar10_study/README.md.
"""

from edgejax.train.config import base_config


def get_config(arg=None):
    if arg not in (None, "", "val", "test"):
        raise ValueError(f"cifar10_study.py: arg is the evaluation split, val or test; got {arg!r}")
    c = base_config()
    c.model.name = "mobilenetv3_small_100"
    c.data.dataset = "runs/data/cifar10_1k"
    c.data.eval_split = arg or "val"
    c.data.image_size = 32
    c.data.crop_pct = 1.0
    c.data.scale = (1.0, 1.0)
    c.data.ratio = (1.0, 1.0)
    c.data.interpolation = "bilinear"
    c.global_batch_size = 64
    c.num_epochs = 60.0
    c.optimizer.name = "adamw"
    c.optimizer.lr = 3e-3
    c.optimizer.lr_base_batch = 64
    c.optimizer.weight_decay = 0.01
    c.schedule.name = "cosine"
    c.eval.every_epochs = 4.0
    c.eval.batch_size = 500
    c.checkpoint.keep = 1
    c.log.every_steps = 16
    c.log.tensorboard = False
    return c
