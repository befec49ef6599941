"""ConvNeXt-T: ``convnext_tiny`` (28,589,128 parameters, 1000 classes), on ImageNet-1k.

Command (one host, all its accelerators)::

    EDGEJAX_IMAGENET=/data/imagenet python -m edgejax.train \
        --config configs/convnext_tiny.py:baseline   # writes runs/convnext_tiny_baseline (--workdir DIR to choose)
    # the study's best stack: --config configs/convnext_tiny.py:optimized
    # the authors' recipe:    --config configs/convnext_tiny.py:reference
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

Expected top-1 (ImageNet-1k val, timm reference weights): convnext_tiny.fb_in1k 82.066 (82.694 @288); paper 82.1. The study reports higher
numbers on its own 90k-image subset; those are not comparable (porting-spec.md §5).
"""

from edgejax.train.recipes import paper_config


def get_config(arg=None):
    return paper_config("convnext_tiny", arg)
