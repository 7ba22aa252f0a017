"""What every residual layer shares (`ResidualWrapper`, `HyperConnection`).

- `check_wrapped`: the wrapped layer must be a Keras layer;
- `call_wrapped`: calls it with `training` and `mask` when its `call` takes
  them, and without the mask attached to its input when it neither takes
  nor supports one (otherwise Keras warns that the layer "will destroy the
  mask information", though the wrapper hands the mask on itself);
- `ResidualRecording`: what `ResidualStreamDiagnostics` reads, the RMS of
  the stream the branch reads against the RMS of the branch, per call;
- `serialize_wrapped` / `deserialize_wrapped`: the wrapped layer in
  `get_config` / `from_config`.

The norms come from `normalization.make_norm`, the argument checks from
`keras_resnorm._checks`.
"""

import keras
from keras import ops

from keras_resnorm._keras_workarounds import get_keras_mask, set_keras_mask
from keras_resnorm.layers._base import accepts_argument


def check_wrapped(layer):
    if not isinstance(layer, keras.layers.Layer):
        raise TypeError(
            "layer must be a keras.layers.Layer instance. "
            f"Received: layer={layer!r}")
    return layer


def wrapped_arguments(layer):
    """Which of `training` and `mask` the wrapped layer's `call` takes."""
    return {name for name in ("training", "mask")
            if accepts_argument(layer, name)}


def call_wrapped(layer, takes, inputs, training=None, mask=None):
    """`layer(inputs, ...)` with what it takes of `training` and `mask`."""
    kwargs = {}
    if "training" in takes:
        kwargs["training"] = training
    if "mask" in takes and mask is not None:
        kwargs["mask"] = mask
    attached = None
    if "mask" not in takes and not layer.supports_masking:
        attached = get_keras_mask(inputs)
    if attached is None:
        return layer(inputs, **kwargs)
    # Detached for this call only: `inputs` may be the wrapper's own input,
    # whose mask the caller still reads.
    set_keras_mask(inputs, None)
    try:
        return layer(inputs, **kwargs)
    finally:
        set_keras_mask(inputs, attached)


def rms(x):
    x = ops.cast(x, "float32")
    return ops.sqrt(ops.mean(ops.square(x)))


class ResidualRecording:
    """`start_recording` / `stop_recording` of a residual layer."""

    _records = None

    def start_recording(self):
        """Record, for each eager call from now on, `(RMS(stream),
        RMS(branch))` as floats (`keras_resnorm.callbacks` uses this): the
        stream the branch is added to, and the branch."""
        self._records = []

    def stop_recording(self):
        """Stop recording and return the records, oldest first."""
        records, self._records = self._records or [], None
        return records

    def _record(self, stream, branch):
        if self._records is not None:
            self._records.append((rms(stream), rms(branch)))


def serialize_wrapped(layer):
    return keras.saving.serialize_keras_object(layer)


def deserialize_wrapped(config):
    config = dict(config)
    config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
    return config
