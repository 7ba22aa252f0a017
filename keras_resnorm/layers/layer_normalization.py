import warnings

import keras

from keras_resnorm.layers._base import GainNormalization

__all__ = ["LayerNormalization"]


@keras.saving.register_keras_serializable(package="keras_resnorm")
class LayerNormalization(GainNormalization):
    """Layer normalization (Ba et al., 2016), a drop-in for Keras's layer.

    Takes the same arguments, defaults and weights as
    `keras.layers.LayerNormalization` and gives the same outputs, with the
    statistics always computed in float32 (two-pass, so constant rows and
    float16 rows of magnitude up to 6e4 stay finite). Two additions:
    `center=False` gives the bias-free form, and `unit_offset=True` stores
    the gain as `gamma - 1` so that weight decay pulls the effective gain
    toward 1 instead of 0.

    ```
    mu  = mean(x, axis)
    var = mean((x - mu) ** 2, axis)
    y   = (x - mu) / sqrt(var + epsilon) * g + beta
    g   = gamma            (unit_offset=False)
    g   = 1 + gamma        (unit_offset=True)

    rms_scaling=True (Keras's definition, kept for drop-in parity):
    y   = x / sqrt(var + epsilon) * g        (x not centered, no beta)
    ```

    `rms_scaling=True` is not Zhang & Sennrich's RMSNorm, which divides by
    `sqrt(mean(x ** 2) + epsilon)`: the two agree only on rows of mean zero.
    As in Keras it warns, always creates `gamma` (even with `scale=False`)
    and never `beta`; use `RMSNormalization` for RMSNorm.

    Masks pass through unchanged; masked positions are normalized like any
    other row, since each row's statistics use that row alone.

    Args:
        axis: int or list of ints, the axes to normalize over. Defaults to
            `-1`.
        epsilon: small float added to the variance. Defaults to `1e-3`.
        center: whether to add the learned offset `beta`; `False` is the
            bias-free form. Defaults to `True`.
        scale: whether to multiply by the learned gain. Defaults to `True`.
        unit_offset: whether the gain is stored as `gamma - 1`. Defaults to
            `False`.
        beta_initializer: initializer for `beta`. Defaults to `"zeros"`.
        gamma_initializer: initializer for `gamma`. Defaults to `"ones"`,
            or `"zeros"` when `unit_offset=True` (an effective gain of 1).
        beta_regularizer: optional regularizer for `beta`. Defaults to
            `None`.
        gamma_regularizer: optional regularizer for `gamma`. Defaults to
            `None`.
        beta_constraint: optional constraint for `beta`. Defaults to `None`.
        gamma_constraint: optional constraint for `gamma`. Defaults to
            `None`.
        fused: `"auto"`, `True` or `False`: whether to use the hand-written
            fused kernel with a custom gradient (`keras_resnorm.ops`);
            `"auto"` uses it for last-axis normalization on TensorFlow.
            Defaults to `"auto"`.
        rms_scaling: Keras's argument of the same name and meaning (see
            above); it has no fused kernel. Defaults to `False`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: floating-point tensor of any rank.

    Input shape:
        Any; the normalized dimensions must be known.

    Output shape:
        Same as the input, in the layer's compute dtype.

    Example:

    >>> import numpy as np
    >>> from keras_resnorm import LayerNormalization
    >>> layer = LayerNormalization(epsilon=1e-6)
    >>> y = layer(np.array([[1.0, 2.0, 3.0, 4.0]]))
    >>> np.round(np.asarray(y, "float64"), 3).tolist()
    [[-1.342, -0.447, 0.447, 1.342]]

    Reference:
        Ba, Kiros & Hinton, "Layer Normalization", 2016,
        https://arxiv.org/abs/1607.06450
    """

    def __init__(
        self,
        axis=-1,
        epsilon=1e-3,
        center=True,
        scale=True,
        unit_offset=False,
        beta_initializer="zeros",
        gamma_initializer=None,
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        fused="auto",
        rms_scaling=False,
        **kwargs,
    ):
        if rms_scaling:
            warnings.warn(
                "rms_scaling=True divides by the standard deviation, as "
                "Keras's LayerNormalization does, not by the root mean "
                "square; for RMSNorm use keras_resnorm.RMSNormalization.",
                stacklevel=2,
            )
        super().__init__(
            axis=axis, epsilon=epsilon, center=center, scale=scale,
            unit_offset=unit_offset, beta_initializer=beta_initializer,
            gamma_initializer=gamma_initializer,
            beta_regularizer=beta_regularizer,
            gamma_regularizer=gamma_regularizer,
            beta_constraint=beta_constraint,
            gamma_constraint=gamma_constraint, fused=fused,
            rms_scaling=rms_scaling, **kwargs,
        )
