"""Print the README's model table: name, params, GMACs at the default size, timm top-1.

    python tools/model_table.py [PATTERN ...] > table.md

GMACs come from XLA's cost analysis of the lowered eval forward at the default input size
(flops / 2, batch 1); parameters from the built model (1000-class head).
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
from flax import nnx

import edgejax


def gmacs(name: str) -> float:
    info = edgejax.model_info(name)
    model = edgejax.create_model(name)
    edgejax.set_depthwise_impl(model, "conv")  # one grouped conv per depthwise conv, as on GPU
    graphdef, state = nnx.split(model)
    _, h, w = info["input_size"]
    x = jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32)
    lowered = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x)).lower(state, x)
    cost = lowered.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"]) / 2e9


def main(patterns: list[str]) -> None:
    names = sorted({n for p in (patterns or ["*"]) for n in edgejax.list_models(p)})
    print("| model | family | params | GMACs @ size | timm top-1 (weights) |")
    print("|---|---|---:|---:|---:|")
    for name in names:
        info = edgejax.model_info(name)
        size = info["input_size"][-1]
        top1 = f"{info['top1']:.3f}" if info.get("top1") else "—"
        print(
            f"| `{name}` | {info['family']} | {info['num_params']:,} | "
            f"{gmacs(name):.2f} @ {size} | {top1} |",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
