import keras

from keras_resnorm.layers._base import GainNormalization

__all__ = ["RMSNormalization"]


@keras.saving.register_keras_serializable(package="keras_resnorm")
class RMSNormalization(GainNormalization):
    """Root-mean-square normalization (Zhang & Sennrich, 2019).

    LayerNorm without the centering: each row is divided by its root mean
    square, then multiplied by a learned gain. The statistic is computed in
    float32 under every dtype policy. Unlike `keras.layers.RMSNormalization`
    this layer keeps the Keras mask: masks pass through unchanged, and masked
    positions are normalized like any other row.

    ```
    rms = sqrt(mean(x ** 2, axis) + epsilon)
    y   = x / rms * g
    g   = scale            (unit_offset=False)
    g   = 1 + scale        (unit_offset=True, as in Gemma)
    ```

    As in Keras, the gain weight is `layer.scale` (named `"scale"`); the
    `scale=` argument says whether there is one (`scale=False`: no weight,
    `layer.scale` is `None`). `layer.gamma` is kept as another name of the
    same weight for code written against keras_resnorm 0.1.

    Args:
        axis: int or list of ints, the axes to normalize over. Defaults to
            `-1`.
        epsilon: small float added to the mean square. Defaults to `1e-6`.
        scale: whether to learn the gain; `False` gives a parameter-free
            layer. Defaults to `True`.
        unit_offset: whether the gain is stored as `scale - 1`. Defaults to
            `False`.
        gamma_initializer: initializer for the gain `scale`. Defaults to
            `"ones"`, or `"zeros"` when `unit_offset=True`.
        gamma_regularizer: optional regularizer for the gain. Defaults to
            `None`.
        gamma_constraint: optional constraint for the gain. Defaults to
            `None`.
        fused: `"auto"`, `True` or `False`, as in `LayerNormalization`.
            Defaults to `"auto"`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: floating-point tensor of any rank.

    Input shape:
        Any; the normalized dimensions must be known.

    Output shape:
        Same as the input, in the layer's compute dtype.

    Example:

    >>> import numpy as np
    >>> from keras_resnorm import RMSNormalization
    >>> y = RMSNormalization(epsilon=0.0)(np.array([[3.0, 4.0]]))
    >>> np.round(np.asarray(y, "float64"), 4).tolist()
    [[0.8485, 1.1314]]

    Reference:
        Zhang & Sennrich, "Root Mean Square Layer Normalization", NeurIPS
        2019, https://arxiv.org/abs/1910.07467
    """

    use_mean = False
    gain_name = "scale"

    def __init__(
        self,
        axis=-1,
        epsilon=1e-6,
        scale=True,
        unit_offset=False,
        gamma_initializer=None,
        gamma_regularizer=None,
        gamma_constraint=None,
        fused="auto",
        **kwargs,
    ):
        super().__init__(
            axis=axis, epsilon=epsilon, center=False, scale=scale,
            unit_offset=unit_offset, beta_initializer="zeros",
            gamma_initializer=gamma_initializer, beta_regularizer=None,
            gamma_regularizer=gamma_regularizer, beta_constraint=None,
            gamma_constraint=gamma_constraint, fused=fused, **kwargs,
        )

    @property
    def gamma(self):
        """The gain weight `scale` under its keras_resnorm 0.1 name."""
        return self.gain
