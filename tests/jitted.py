"""Whole-model forwards for the family tests, compiled once per model structure.

Eager nnx calls dispatch op by op and compile each primitive on its own: tens of seconds per
forward of a whole model on a 2-core CPU. ``nnx.jit`` compiles the forward once and carries the
module's state (dropout rng counts) back like an eager call.
"""

from flax import nnx

fwd = nnx.jit(lambda model, x: model(x))
features = nnx.jit(lambda model, x: model.forward_features(x))
