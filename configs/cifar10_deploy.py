"""Small CNNs trained from scratch on a 10,000-image CIFAR-10 subset at 32 px, for measuring what
export and int8 quantisation cost in accuracy (docs/results/quantization.md).

Data (symbolic links into an ImageFolder copy of CIFAR-10, see ``tools/make_subset.py``)::

    python tools/make_subset.py ../shared/data/cifar10 runs/data/cifar10_10k \\
        --train 1000 --val 100 --test 200 --seed 0

``arg`` is the model (default mobilenetv3_large_100)::

    python -m edgejax.train --config configs/cifar10_deploy.py:repvgg_a0 \\
        --workdir runs/deploy/repvgg_a0

Recipe: AdamW (lr 2e-3 at batch 128, weight decay 0.05), 2 warmup epochs then cosine decay,
random-resized crops (scale 0.35-1) and flips, label smoothing 0.1, 30 epochs; evaluated on the
2,000 held-out test images.
"""
from edgejax.train.config import base_config


def get_config(arg=None):
    c = base_config()
    c.model.name = arg or "mobilenetv3_large_100"
    c.data.dataset = "runs/data/cifar10_10k"
    c.data.eval_split = "test"
    c.data.image_size = 32
    c.data.crop_pct = 1.0
    c.data.scale = (0.35, 1.0)
    c.data.interpolation = "bilinear"
    c.global_batch_size = 128
    c.num_epochs = 30.0
    c.optimizer.name = "adamw"
    c.optimizer.lr = 2e-3
    c.optimizer.lr_base_batch = 128
    c.optimizer.weight_decay = 0.05
    c.schedule.name = "cosine"
    c.schedule.warmup_epochs = 2.0
    c.augment.label_smoothing = 0.1
    c.eval.every_epochs = 5.0
    c.eval.batch_size = 500
    c.checkpoint.keep = 1
    c.log.every_steps = 20
    c.log.tensorboard = False
    return c
