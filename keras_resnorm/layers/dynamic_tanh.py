import keras
from keras import initializers

from keras_resnorm import ops as rn_ops
from keras_resnorm.layers._base import (
    NormalizationBase,
    check_floating_input,
    check_number,
    serialize_weight_options,
)

__all__ = ["DynamicTanh"]


@keras.saving.register_keras_serializable(package="keras_resnorm")
class DynamicTanh(NormalizationBase):
    """Dynamic Tanh (Zhu et al., 2025), a statistics-free norm replacement.

    An element-wise squashing with a learned scalar steepness `alpha`,
    followed by the usual per-channel affine map. It computes no statistics,
    so it costs one pass; the tanh is evaluated in float32 and the output
    cast to the compute dtype. Masks pass through unchanged.

    ```
    y = gamma * tanh(alpha * x) + beta,   alpha scalar, initialized to alpha_init
    ```

    Args:
        axis: int or list of ints, the axes that carry `gamma` and `beta`.
            Defaults to `-1`.
        alpha_init: initial value of `alpha`. Defaults to `0.5`, the paper's
            choice for non-LLM models.
        center: whether to add the learned offset `beta`. Defaults to `True`.
        scale: whether to multiply by the learned `gamma`. Defaults to
            `True`.
        gamma_initializer: initializer for `gamma`. Defaults to `"ones"`.
        beta_initializer: initializer for `beta`. Defaults to `"zeros"`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: floating-point tensor of any rank.

    Input shape:
        Any; the dimensions named by `axis` must be known.

    Output shape:
        Same as the input, in the layer's compute dtype.

    Example:

    >>> import numpy as np
    >>> from keras_resnorm import DynamicTanh
    >>> y = DynamicTanh(alpha_init=1.0)(np.array([[0.0, 100.0]]))
    >>> np.round(np.asarray(y, "float64"), 4).tolist()
    [[0.0, 1.0]]

    Reference:
        Zhu, Chen, He, LeCun & Liu, "Transformers without Normalization",
        CVPR 2025, https://arxiv.org/abs/2503.10622
    """

    def __init__(self, axis=-1, alpha_init=0.5, center=True, scale=True,
                 gamma_initializer="ones", beta_initializer="zeros",
                 **kwargs):
        super().__init__(axis=axis, epsilon=0.0, **kwargs)
        self.alpha_init = check_number("alpha_init", alpha_init)
        self.center = bool(center)
        self.scale = bool(scale)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_initializer = initializers.get(beta_initializer)

    def build(self, input_shape):
        super().build(input_shape)
        self.alpha = self._add_norm_weight(
            "alpha", initializers.Constant(self.alpha_init), shape=()
        )
        self.gamma = None
        self.beta = None
        if self.scale:
            self.gamma = self._add_norm_weight("gamma", self.gamma_initializer)
        if self.center:
            self.beta = self._add_norm_weight("beta", self.beta_initializer)

    def call(self, inputs):
        check_floating_input(self, inputs)
        return rn_ops.dynamic_tanh(
            inputs, self.alpha, self.gamma, self.beta, axis=self.axes_for(inputs),
            dtype=self.compute_dtype,
        )

    def get_config(self):
        config = super().get_config()
        del config["epsilon"]
        config.update(
            {
                "alpha_init": self.alpha_init,
                "center": self.center,
                "scale": self.scale,
                **serialize_weight_options(
                    gamma_initializer=self.gamma_initializer,
                    beta_initializer=self.beta_initializer,
                ),
            }
        )
        return config
