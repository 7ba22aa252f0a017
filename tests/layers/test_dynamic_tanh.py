import numpy as np
import pytest

from keras_resnorm import DynamicTanh
from layer_check import check_layer


@pytest.mark.parametrize("options,n_weights", [
    ({}, 3), ({"center": False}, 2), ({"scale": False, "center": False}, 1),
    ({"alpha_init": 2.0, "axis": [1, 2]}, 3),
])
def test_generic_layer_check(options, n_weights):
    check_layer(lambda dtype=None: DynamicTanh(dtype=dtype, **options),
                (4, 5, 6), trainable_weights=n_weights, mask_tail=2,
                float32_weights=("alpha", "gamma", "beta"))


def test_formula_with_set_weights():
    layer = DynamicTanh(alpha_init=0.5)
    x = np.random.default_rng(0).normal(size=(2, 3)).astype("float32") * 4
    layer.build(x.shape)
    assert layer.alpha.numpy() == 0.5
    gamma, beta = np.array([1.0, 2.0, -1.0]), np.array([0.5, 0.0, 1.0])
    layer.set_weights([np.float32(0.3), gamma, beta])
    np.testing.assert_allclose(np.asarray(layer(x)),
                               gamma * np.tanh(0.3 * x) + beta, rtol=1e-6)


def test_float16_large_inputs_saturate_finitely():
    y = DynamicTanh(dtype="mixed_float16")(np.array([[6e4, -6e4, 0.0]],
                                                    "float16"))
    np.testing.assert_allclose(np.asarray(y, "float32"), [[1.0, -1.0, 0.0]])


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"Received: alpha_init='big'"):
        DynamicTanh(alpha_init="big")
