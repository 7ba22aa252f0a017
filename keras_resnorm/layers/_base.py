"""Private helpers shared by the normalization layers."""

import inspect

import keras
from keras import constraints, initializers, regularizers

# Argument checks live in one place for the layers, ops and NER configs.
from keras_resnorm._checks import (  # noqa: F401  (imported from here)
    check_choice,
    check_fused,
    check_int,
    check_non_negative,
    check_number,
    check_positive,
    check_rate,
)


def accepts_argument(layer, argument):
    """Whether `layer.call` takes `argument` (or any keyword)."""
    try:
        parameters = inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return False
    return argument in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def check_floating_input(layer, inputs):
    """Raise a TypeError naming the layer when `inputs` is not floating."""
    dtype = keras.backend.standardize_dtype(inputs.dtype)
    if "float" not in dtype:
        raise TypeError(
            f"{type(layer).__name__} '{layer.name}' expects floating-point "
            f"inputs. Received: inputs.dtype={dtype}"
        )


def check_axis(axis):
    ok = isinstance(axis, int) and not isinstance(axis, bool)
    if isinstance(axis, (list, tuple)) and axis:
        ok = all(isinstance(a, int) and not isinstance(a, bool) for a in axis)
    if not ok:
        raise TypeError(
            "axis must be an int or a non-empty list of ints. "
            f"Received: axis={axis!r}"
        )
    return list(axis) if isinstance(axis, (list, tuple)) else axis


class NormalizationBase(keras.layers.Layer):
    """Axis handling, float32 weights and masking for the norm layers.

    Subclasses call `_add_norm_weight` in `build` and implement `call`.
    """

    def __init__(self, axis=-1, epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.axis = check_axis(axis)
        self.epsilon = float(check_non_negative("epsilon", epsilon))
        self.supports_masking = True

    def _resolve_axes(self, input_shape, check_known=True):
        rank = len(input_shape)
        axes = [self.axis] if isinstance(self.axis, int) else self.axis
        for a in axes:
            if not -rank <= a < rank:
                raise ValueError(
                    f"axis {a} is out of bounds for inputs of rank {rank} "
                    f"(shape {tuple(input_shape)}). Received: axis={self.axis}"
                )
        resolved = sorted(a % rank for a in axes)
        if len(set(resolved)) != len(resolved):
            raise ValueError(
                f"axis names the same dimension twice. Received: axis={self.axis}"
            )
        for a in resolved:
            if check_known and input_shape[a] is None:
                raise ValueError(
                    f"The normalized dimension {a} must be known when the "
                    f"layer is built. Received: input_shape={tuple(input_shape)}"
                )
        return resolved

    def build(self, input_shape):
        axes = self._resolve_axes(input_shape)
        self._built_input_shape = tuple(input_shape)
        self._param_shape = tuple(input_shape[a] for a in axes)

    def axes_for(self, inputs):
        """The normalized axes of `inputs`, resolved for its own rank.

        `axis` keeps its sign, as in Keras: `-1` is the last axis of every
        input, a non-negative axis counts from the front. A layer built at
        one rank and called at another normalizes the right dimensions, or
        raises a ValueError naming both shapes when the normalized sizes
        differ from the built ones (the weights could not apply).
        """
        shape = tuple(inputs.shape)
        axes = self._resolve_axes(shape, check_known=False)
        sizes = tuple(shape[a] for a in axes)
        expected = getattr(self, "_param_shape", None)
        if expected is not None and any(
                s is not None and s != e for s, e in zip(sizes, expected)):
            raise ValueError(
                f"{type(self).__name__} '{self.name}' was built for inputs "
                f"of shape {self._built_input_shape}, normalizing sizes "
                f"{expected} over axis={self.axis}; the inputs have sizes "
                f"{sizes} there. Received: inputs.shape={shape}"
            )
        return axes

    def _add_norm_weight(self, name, initializer, regularizer=None,
                         constraint=None, shape=None):
        # Norm weights stay float32 under every dtype policy (autocast off).
        return self.add_weight(
            name=name,
            shape=self._param_shape if shape is None else shape,
            initializer=initializer,
            regularizer=regularizer,
            constraint=constraint,
            dtype="float32",
            autocast=False,
        )

    def compute_output_shape(self, input_shape):
        self._resolve_axes(input_shape)
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"axis": self.axis, "epsilon": self.epsilon})
        return config


class GainNormalization(NormalizationBase):
    """The shared LayerNorm / RMSNorm layer: RMSNorm is this path with
    `use_mean = False` and no offset (Zhang & Sennrich 2019)."""

    use_mean = True
    # The gain's weight and attribute name: `gamma` as in Keras's
    # LayerNormalization, `scale` as in Keras's RMSNormalization.
    gain_name = "gamma"

    def __init__(self, *, axis, epsilon, center, scale, unit_offset,
                 beta_initializer, gamma_initializer, beta_regularizer,
                 gamma_regularizer, beta_constraint, gamma_constraint, fused,
                 rms_scaling=False, **kwargs):
        super().__init__(axis=axis, epsilon=epsilon, **kwargs)
        self.center = bool(center)
        self.learns_gain = bool(scale)
        if self.gain_name != "scale":
            # Keras's LayerNormalization keeps its `scale` flag by that name;
            # on RMSNormalization, as in Keras, `scale` is the weight.
            self.scale = self.learns_gain
        self.unit_offset = bool(unit_offset)
        self.rms_scaling = bool(rms_scaling)
        self.fused = check_fused(fused)
        if self.rms_scaling and self.fused is True:
            raise ValueError(
                "fused=True has no kernel for rms_scaling=True; pass "
                "fused='auto' or False. Received: fused=True"
            )
        if gamma_initializer is None:
            gamma_initializer = "zeros" if unit_offset else "ones"
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)

    def build(self, input_shape):
        super().build(input_shape)
        gain = None
        self.beta = None
        # As in Keras: rms_scaling=True always has a gain and never an offset.
        if self.learns_gain or self.rms_scaling:
            gain = self._add_norm_weight(
                self.gain_name, self.gamma_initializer, self.gamma_regularizer,
                self.gamma_constraint,
            )
        setattr(self, self.gain_name, gain)
        if self.center and not self.rms_scaling:
            self.beta = self._add_norm_weight(
                "beta", self.beta_initializer, self.beta_regularizer,
                self.beta_constraint,
            )

    @property
    def gain(self):
        """The gain weight (`gamma`, or `scale` on RMSNormalization), or
        `None` when the layer learns none or is not built."""
        value = getattr(self, self.gain_name, None)
        return value if isinstance(value, keras.Variable) else None

    def call(self, inputs):
        from keras_resnorm import ops as rn_ops

        check_floating_input(self, inputs)
        axes = self.axes_for(inputs)
        if self.rms_scaling:
            return rn_ops.std_scale(inputs, self.gain, axis=axes,
                                    epsilon=self.epsilon,
                                    unit_offset=self.unit_offset,
                                    dtype=self.compute_dtype)
        common = dict(axis=axes, epsilon=self.epsilon,
                      unit_offset=self.unit_offset, dtype=self.compute_dtype,
                      fused=self.fused)
        if self.use_mean:
            return rn_ops.layer_norm(inputs, self.gain, self.beta, **common)
        return rn_ops.rms_norm(inputs, self.gain, **common)

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.learns_gain,
                       "unit_offset": self.unit_offset,
                       "fused": self.fused})
        config.update(serialize_weight_options(
            gamma_initializer=self.gamma_initializer,
            gamma_regularizer=self.gamma_regularizer,
            gamma_constraint=self.gamma_constraint))
        if self.use_mean:
            config["center"] = self.center
            config["rms_scaling"] = self.rms_scaling
            config.update(serialize_weight_options(
                beta_initializer=self.beta_initializer,
                beta_regularizer=self.beta_regularizer,
                beta_constraint=self.beta_constraint))
        return config


def serialize_weight_options(**items):
    """Serialize initializer/regularizer/constraint attributes by name."""
    out = {}
    for key, value in items.items():
        if key.endswith("initializer"):
            out[key] = initializers.serialize(value)
        elif key.endswith("regularizer"):
            out[key] = regularizers.serialize(value)
        else:
            out[key] = constraints.serialize(value)
    return out
