"""Look up a normalization layer by its short name, or copy one a user
gave (the one norm factory of the residual layers)."""

import inspect
import types

import keras

from keras_resnorm._keras_workarounds import (
    from_standalone_config,
    standalone_config,
)
from keras_resnorm.layers.dynamic_tanh import DynamicTanh
from keras_resnorm.layers.layer_normalization import LayerNormalization
from keras_resnorm.layers.rms_normalization import RMSNormalization
from keras_resnorm.layers.scale_normalization import ScaleNormalization

# The norms by short name, read-only: a norm of the user's own goes to
# `norm=` as a layer instance or class, not into this table.
NORMALIZATIONS = types.MappingProxyType({
    "layer": LayerNormalization,
    "rms": RMSNormalization,
    "scale": ScaleNormalization,
    "dyt": DynamicTanh,
})


def check_norm_name(name, argument="norm"):
    if name not in NORMALIZATIONS:
        raise ValueError(
            f"{argument} must be one of {tuple(NORMALIZATIONS)}. "
            f"Received: {argument}={name!r}"
        )
    return name


# The norms that take `fused=` (the others have no fused kernel).
FUSABLE = ("layer", "rms")

# What the residual layers set on every norm they make; `norm_kwargs` may
# not set them too.
SET_BY_THE_LAYER = ("name", "dtype")

# The classes of norm layers a user gave that Keras's registry does not
# know (`keras.saving.register_keras_serializable` was not applied), by the
# name their configs carry: the copies `make_norm` makes in this process
# find them here. A `.keras` file of such a model loads, as any Keras model
# with an unregistered layer does, with `custom_objects` or after the class
# is registered.
_UNREGISTERED = {}


def _remember_class(norm, config):
    name = config.get("registered_name") or config.get("class_name")
    if keras.saving.get_registered_object(name) is None:
        _UNREGISTERED[name] = type(norm)


def _check_norm_kwargs(name, norm_kwargs, argument):
    if norm_kwargs is None:
        return
    if not isinstance(norm_kwargs, dict):
        raise TypeError(
            f"norm_kwargs must be a dict of the norm's arguments. Received: "
            f"norm_kwargs={norm_kwargs!r}")
    clash = sorted(k for k in norm_kwargs if k in SET_BY_THE_LAYER)
    if clash:
        raise ValueError(
            f"norm_kwargs may not set {clash}: the residual layer names its "
            "norms and gives them its own dtype policy (set `dtype` on the "
            f"residual layer). Received: norm_kwargs={norm_kwargs!r}")
    # The norm's own arguments and the base layer's (`trainable`, ...).
    takes = set(inspect.signature(NORMALIZATIONS[name].__init__).parameters)
    takes |= set(inspect.signature(keras.layers.Layer.__init__).parameters)
    takes -= {"self", "kwargs"}
    unknown = sorted(k for k in norm_kwargs if k not in takes)
    if unknown:
        raise ValueError(
            f"norm_kwargs has arguments that {argument}={name!r} "
            f"({NORMALIZATIONS[name].__name__}) does not take: {unknown}. "
            f"Received: norm_kwargs={norm_kwargs!r}")


def check_norm(norm, norm_kwargs=None, argument="norm"):
    """`norm=` of the residual layers, in the form they store and serialize:
    a short name (`"layer"`, `"rms"`, `"scale"`, `"dyt"`), or the serialized
    config of a norm layer the user gave. That may be a Keras layer instance
    (`keras.layers.LayerNormalization(epsilon=1e-5)`), a callable that
    returns one (called once here; a layer class, for example), or such a
    config (what `get_config` wrote). A given layer is a template: each norm
    made from it is a fresh copy (`make_norm`), so the instance itself is
    never called and shares no weights, even while Keras loads a model
    (see `_keras_workarounds.standalone_config`)."""
    if isinstance(norm, str):
        check_norm_name(norm, argument)
        _check_norm_kwargs(norm, norm_kwargs, argument)
        return norm
    given = norm
    if isinstance(norm, dict):
        with keras.saving.custom_object_scope(_UNREGISTERED):
            norm = from_standalone_config(norm)
    elif callable(norm) and not isinstance(norm, keras.layers.Layer):
        norm = norm()
    if not isinstance(norm, keras.layers.Layer):
        raise TypeError(
            f"{argument} must be one of {tuple(NORMALIZATIONS)}, a Keras "
            "layer, or a callable that returns one. Received: "
            f"{argument}={given!r}")
    if norm_kwargs:
        raise ValueError(
            f"norm_kwargs applies to a {argument} given by name; set the "
            f"arguments on the layer instead. Received: {argument}="
            f"{type(norm).__name__}, norm_kwargs={norm_kwargs!r}")
    config = standalone_config(norm)
    _remember_class(norm, config)
    return config


def make_norm(norm, *, name, dtype=None, norm_kwargs=None, fused=None):
    """The norm a residual layer makes. `norm` is what `check_norm` returns:
    by short name, the layer with `norm_kwargs`, and `fused` (when given)
    reaches the norms that take it unless `norm_kwargs` sets it; by config,
    a fresh copy of the user's layer (its own settings, `fused` included)
    named `name` under `dtype`. The one factory of `ResidualWrapper`,
    `HyperConnection` and `TransformerEncoder`, so `fused=False` means the
    same in each."""
    if isinstance(norm, dict):
        config = dict(norm)
        config["config"] = dict(config["config"], name=name)
        if dtype is not None:
            config["config"]["dtype"] = keras.dtype_policies.serialize(
                keras.dtype_policies.get(dtype))
        with keras.saving.custom_object_scope(_UNREGISTERED):
            return from_standalone_config(config)
    kwargs = dict(norm_kwargs or {})
    if fused is not None and norm in FUSABLE:
        kwargs.setdefault("fused", fused)
    return normalization(norm, name=name, dtype=dtype, **kwargs)


def normalization(norm, /, **kwargs):
    """Create a normalization layer from its short name.

    `norm` names the layer: `"layer"` (LayerNormalization), `"rms"` (RMSNormalization),
    `"scale"` (ScaleNormalization), `"dyt"` (DynamicTanh); an unknown name
    raises a ValueError listing these. Keyword arguments (`name=` too) go to
    the layer's constructor.

    Example:

    >>> import keras_resnorm
    >>> type(keras_resnorm.normalization("rms", epsilon=1e-5)).__name__
    'RMSNormalization'
    """
    return NORMALIZATIONS[check_norm_name(norm)](**kwargs)
