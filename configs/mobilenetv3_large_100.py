"""MobileNetV3-Large 1.0: ``mobilenetv3_large_100`` (5,483,032 parameters, 1000 classes), on ImageNet-1k.

Command (one host, all its accelerators)::

    EDGEJAX_IMAGENET=/data/imagenet python -m edgejax.train \
        --config configs/mobilenetv3_large_100.py:baseline   # writes runs/mobilenetv3_large_100_baseline (--workdir DIR to choose)
    # the study's best stack: --config configs/mobilenetv3_large_100.py:optimized
    # the authors' recipe:    --config configs/mobilenetv3_large_100.py:reference
    # override anything:      --config.global_batch_size=256 --config.optimizer.lr=0.05

Data: ImageNet-1k train / val (1,281,167 / 50,000 images): an ImageFolder tree
(``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``), a directory prepared as ArrayRecord by
``edgejax.data`` (recommended: re-encoded to short side 256), or ``tfds:imagenet2012``; given by
``--config.data.dataset=...`` or ``$EDGEJAX_IMAGENET``. Without one the run stops at once and
says how to point it at ImageNet.

Recipes (``edgejax.train.recipes``, all with ``dtype = "auto"``: bfloat16 on GPU / TPU,
float32 on a CPU): ``baseline`` = the study's (SGD 0.9, lr 0.1 per 512 scaled
linearly, cosine, 5 warmup epochs, crop + flip only, 300 epochs, batch 512, 224 px);
``optimized`` = RandAugment + Mixup + CutMix + label smoothing + EMA with
SGD (Nesterov); ``reference`` =
the authors' recipe (porting-spec.md §4).

Expected top-1 (ImageNet-1k val, timm reference weights): mobilenetv3_large_100.ra_in1k 75.784; paper 75.2. The study reports higher
numbers on its own 90k-image subset; those are not comparable (porting-spec.md §5).
"""

from edgejax.train.recipes import paper_config


def get_config(arg=None):
    return paper_config("mobilenetv3_large_100", arg)
