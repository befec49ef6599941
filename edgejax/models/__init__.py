"""Model families. Importing this package registers every variant with ``edgejax.registry``."""

from . import convnext, efficientnet, mobilenetv3, mobilevit, repvgg, tiny_vit  # noqa: F401
from .base import Classifier

__all__ = ["Classifier"]
