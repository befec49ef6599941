"""edgejax: lightweight image classifiers in pure JAX (Flax NNX), numerically identical to timm.

import edgejax
model = edgejax.create_model("repvgg_a2", num_classes=10)
logits = model(images_nhwc_normalised)
"""

from .registry import count_params, create_model, list_models, model_info
from . import convert
from .layers import depthwise_impl, set_depthwise_impl

__version__ = "0.1.0"


def reparameterize(model):
    """Fuse a model for deployment (RepVGG branches into one 3x3 conv, BatchNorm into convs).

    Returns a new model in eval mode whose outputs equal the original's; see ``edgejax.deploy``.
    """
    from .deploy import fuse

    return fuse(model)


__all__ = [
    "create_model",
    "list_models",
    "model_info",
    "count_params",
    "convert",
    "reparameterize",
    "depthwise_impl",
    "set_depthwise_impl",
    "__version__",
]
