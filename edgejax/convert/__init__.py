"""timm weights -> edgejax: ``from_timm(name, state_dict)``, ``to_timm(model)``, pretrained loading."""

from .timm import StateDictMismatchError, from_timm, load_state_dict, timm_key_map, to_timm
from .pretrained import hub_filename, load_pretrained, read_safetensors

__all__ = [
    "StateDictMismatchError",
    "from_timm",
    "load_state_dict",
    "timm_key_map",
    "to_timm",
    "hub_filename",
    "load_pretrained",
    "read_safetensors",
]
