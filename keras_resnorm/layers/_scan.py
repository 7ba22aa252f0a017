"""A scanned stack: one block's body run in a loop over stacked weights.

An unrolled stack of `L` blocks gives the graph (and XLA) `L` copies of the
block. A scanned stack keeps one *template* block and, for each of its
weights, one variable of shape `(L, ...)` holding every depth's copy. A
loop runs the template `L` times; at step `i` the template's weights read
slice `i` of the stacked variables (`keras.StatelessScope` maps each
template variable to its slice), so tracing and compiling see one block
whatever the depth. The same rule serves the gradients: the loop's gradient
writes slice `i` of each stacked variable's gradient.

Randomness: every dropout and drop-path `SeedGenerator` of the template is
mapped at step `i` to a state derived from the owner's own generator, the
depth `i` and the generator's index, so each depth draws its own masks and
one seed reproduces them. Drop path takes its depth's rate as a tensor
(`DropPath._rate_for_call`).

On the TensorFlow backend the loop is a `tf.while_loop` over
`TensorArray`s of the stacked weights (it compiles under XLA and exports
as a plain While op); elsewhere it is `keras.ops.scan`.
"""

import keras
import numpy as np
from keras import ops

from keras_resnorm._keras_workarounds import flatten_layers, seed_generators
from keras_resnorm.layers.drop_path import DropPath


class Untracked:
    """Holds a layer out of Keras's tracking: the template's own variables
    are stand-ins, not weights of the stack."""

    def __init__(self, layer):
        self.layer = layer


class ScannedStack:
    """The stacked weights of `blocks` and a loop that runs them.

    Args:
        owner: the layer that owns the stacked variables (they are made with
            `owner.add_weight`, so they are its weights and are saved).
        blocks: `L` built blocks of one config, in depth order. The last one
            becomes the template; the others only give their initial values
            and are dropped.
        seed_generator: the owner's `SeedGenerator`, or `None` when the
            blocks draw no randomness.
        drop_path: drop-path rate at the last depth; depth `i` uses
            `drop_path * i / max(1, L - 1)`, as the unrolled stack does.
    """

    def __init__(self, owner, blocks, seed_generator=None, drop_path=0.0):
        template = blocks[-1]
        self.depth = len(blocks)
        self._template = Untracked(template)
        self.template_variables = list(template.weights)
        self.stacked = []
        for j, variable in enumerate(self.template_variables):
            values = [np.asarray(block.weights[j]) for block in blocks]
            shapes = {v.shape for v in values}
            if len(shapes) != 1:
                raise ValueError(
                    f"Blocks of one config must have the same weights; "
                    f"'{variable.path}' has shapes {sorted(shapes)}")
            value = np.stack(values)
            self.stacked.append(owner.add_weight(
                name=_stacked_name(template, variable), shape=value.shape,
                dtype=variable.dtype, trainable=variable.trainable,
                autocast=False,
                initializer=lambda shape, dtype=None, v=value:
                    ops.convert_to_tensor(v, dtype=dtype)))
        self.generators = list(seed_generators(template).values())
        self.drop_paths = [layer for layer in flatten_layers(template, True)
                           if isinstance(layer, DropPath)]
        self.seed_generator = seed_generator
        self.drop_path = drop_path

    @property
    def template(self):
        return self._template.layer

    # ------------------------------------------------------------ weights
    def unrolled_values(self):
        """The stacked weights as `L` per-block lists, depth first."""
        values = [np.asarray(v) for v in self.stacked]
        return [[v[i] for v in values] for i in range(self.depth)]

    def assign_unrolled(self, per_block):
        """Set the stacked weights from `L` per-block lists of arrays."""
        for j, variable in enumerate(self.stacked):
            variable.assign(np.stack([np.asarray(b[j]) for b in per_block]))

    # --------------------------------------------------------------- call
    def __call__(self, inputs, training=None, **call_kwargs):
        """`x = block_i(x, training=training, **call_kwargs)` for every i.

        State a block assigns (the moving statistics of a BatchNormalization
        inside it, a counter of the user's own layer: any non-trainable
        weight) is carried: depth `i` reads slice `i` of the stacked
        variable, and what it assigns is written back to slice `i` after
        the loop, as the unrolled stack would."""
        n = self.depth
        base_seed = None
        if training and self.generators:
            base_seed = self.seed_generator.next()
        per_depth = [v.value for v in self.stacked]
        per_depth.append(ops.arange(n, dtype="int32"))
        state = [j for j, v in enumerate(self.template_variables)
                 if not v.trainable]
        assigned = []

        def step(x, slices):
            *weights, index = slices
            mapping = list(zip(self.template_variables, weights))
            if base_seed is not None:
                mapping += self._seed_states(base_seed, index)
            rate = None
            if self.drop_paths:
                rate = ops.cast(index, "float32") * (
                    self.drop_path / max(1, n - 1))
            for layer in self.drop_paths:
                layer._rate_for_call = rate
            try:
                with keras.StatelessScope(state_mapping=mapping) as scope:
                    y = self.template(x, training=training, **call_kwargs)
            finally:
                for layer in self.drop_paths:
                    layer._rate_for_call = None
            updates = []
            for j in state:
                value = scope.get_current_value(self.template_variables[j])
                if value is not weights[j]:
                    assigned.append(j)
                updates.append(ops.cast(value, weights[j].dtype))
            return ops.cast(y, x.dtype), updates

        out, updates = _loop(step, inputs, per_depth, carried=state)
        for j, value in zip(state, updates):
            if j in assigned:
                self.stacked[j].assign(value)
        return out

    def _seed_states(self, base_seed, index):
        # Generator k at depth i counts from `counter * L * G + i * G + k`:
        # distinct for every call, depth and generator under one seed.
        count = len(self.generators)
        dtype = keras.backend.standardize_dtype(base_seed.dtype)
        offset = ops.cast(index * count, dtype)
        states = []
        for k, generator in enumerate(self.generators):
            counter = base_seed[1] * (self.depth * count) + offset + k
            states.append((generator.state,
                           ops.stack([base_seed[0], counter])))
        return states


# Joins the parts of a stacked variable's name. Keras variable names may
# not hold "/", and the PyTorch backend's parameter names may not hold ".".
STACKED_NAME_SEPARATOR = "-"


def _stacked_name(template, variable):
    # The template-relative path, "attention_residual-norm-gamma".
    parts = variable.path.split("/")
    if template.name in parts:
        parts = parts[parts.index(template.name) + 1:]
    return STACKED_NAME_SEPARATOR.join(parts)


def _loop(step, inputs, per_depth, carried=()):
    """`x, u = step(x, [t[i] for t in per_depth])` for `i <
    len(per_depth[0])`, with one traced `step`: the last `x`, and the
    per-step outputs `u` stacked along a new leading axis. `u` has one
    entry for each index in `carried`, of the dtype and shape of that
    entry of `per_depth`'s slices (the blocks' state)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        n = int(per_depth[0].shape[0])
        arrays = [
            tf.TensorArray(t.dtype, size=n, element_shape=t.shape[1:])
            .unstack(t) for t in per_depth
        ]
        written = [tf.TensorArray(per_depth[j].dtype, size=n,
                                  element_shape=per_depth[j].shape[1:])
                   for j in carried]

        def body(i, x, written):
            y, updates = step(x, [a.read(i) for a in arrays])
            written = [w.write(i, u) for w, u in zip(written, updates)]
            return i + 1, tf.ensure_shape(y, x.shape), written

        _, out, written = tf.while_loop(
            lambda i, x, w: i < n, body, (tf.constant(0), inputs, written),
            maximum_iterations=n)
        return out, [w.stack() for w in written]
    out, updates = ops.scan(lambda x, s: step(x, list(s)), inputs, per_depth)
    return out, list(updates or [])
