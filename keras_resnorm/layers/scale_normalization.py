import math

import keras
from keras import initializers

from keras_resnorm import ops as rn_ops
from keras_resnorm.layers._base import (
    NormalizationBase,
    check_floating_input,
    serialize_weight_options,
)

__all__ = ["ScaleNormalization"]


@keras.saving.register_keras_serializable(package="keras_resnorm")
class ScaleNormalization(NormalizationBase):
    """ScaleNorm (Nguyen & Salazar, 2019): one learned scalar times x / ||x||.

    Each row is projected onto the sphere of radius `g`, a single learned
    scalar initialized to `sqrt(d)` (`d` = number of normalized elements),
    so the initial output has unit root mean square. The norm is computed in
    float32 and clipped below at `epsilon`, so all-zero rows give zeros.
    Masks pass through unchanged.

    ```
    y = g * x / max(||x||_2, epsilon),   g initialized to sqrt(d)
    ```

    Args:
        axis: int or list of ints, the axes to normalize over. Defaults to
            `-1`.
        epsilon: lower bound for the norm. Defaults to `1e-5`.
        scale_initializer: initializer for the scalar `g`. Defaults to
            `None`, meaning the constant `sqrt(d)`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: floating-point tensor of any rank.

    Input shape:
        Any; the normalized dimensions must be known.

    Output shape:
        Same as the input, in the layer's compute dtype.

    Example:

    >>> import numpy as np
    >>> from keras_resnorm import ScaleNormalization
    >>> y = ScaleNormalization()(np.array([[3.0, 4.0]]))
    >>> np.round(np.asarray(y, "float64"), 4).tolist()
    [[0.8485, 1.1314]]

    Reference:
        Nguyen & Salazar, "Transformers without Tears: Improving the
        Normalization of Self-Attention", IWSLT 2019,
        https://arxiv.org/abs/1910.05895
    """

    def __init__(self, axis=-1, epsilon=1e-5, scale_initializer=None,
                 **kwargs):
        super().__init__(axis=axis, epsilon=epsilon, **kwargs)
        self.scale_initializer = (
            None if scale_initializer is None
            else initializers.get(scale_initializer)
        )

    def build(self, input_shape):
        super().build(input_shape)
        initializer = self.scale_initializer
        if initializer is None:
            initializer = initializers.Constant(
                math.sqrt(math.prod(self._param_shape))
            )
        self.g = self._add_norm_weight("scale", initializer, shape=())

    def call(self, inputs):
        check_floating_input(self, inputs)
        return rn_ops.scale_norm(
            inputs, self.g, axis=self.axes_for(inputs), epsilon=self.epsilon,
            dtype=self.compute_dtype,
        )

    def get_config(self):
        config = super().get_config()
        if self.scale_initializer is None:
            config["scale_initializer"] = None
        else:
            config.update(
                serialize_weight_options(
                    scale_initializer=self.scale_initializer
                )
            )
        return config
