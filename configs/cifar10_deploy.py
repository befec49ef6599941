"""Small CNNs trained from scratch on a 10,000-image CIFAR-10 subset at 32 px, for measuring what
export and int8 quantisation cost in accuracy (docs/results/quantization.md). The study's
32 px CIFAR-10 setup (``configs/cifar10_study.py``) with more data, a shorter, regularised recipe
and the held-out test images for evaluation.

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

import importlib.util
import os


def _study_config(arg):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cifar10_study.py")
    spec = importlib.util.spec_from_file_location("cifar10_study", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(arg)


def get_config(arg=None):
    c = _study_config("test")
    c.model.name = arg or "mobilenetv3_large_100"
    c.data.dataset = "runs/data/cifar10_10k"
    c.data.scale = (0.35, 1.0)
    c.data.ratio = (3 / 4, 4 / 3)
    c.global_batch_size = 128
    c.num_epochs = 30.0
    c.optimizer.lr = 2e-3
    c.optimizer.lr_base_batch = 128
    c.optimizer.weight_decay = 0.05
    c.schedule.warmup_epochs = 2.0
    c.augment.label_smoothing = 0.1
    c.eval.every_epochs = 5.0
    c.log.every_steps = 20
    return c
