import math

import numpy as np
import pytest

from keras_resnorm import ScaleNormalization
from layer_check import check_layer


@pytest.mark.parametrize("options", [{}, {"axis": [1, 2]},
                                     {"scale_initializer": "ones"}])
def test_generic_layer_check(options):
    check_layer(lambda dtype=None: ScaleNormalization(dtype=dtype, **options),
                (4, 5, 6), trainable_weights=1, mask_tail=2,
                float32_weights=("scale",))


def test_scale_starts_at_sqrt_d_and_rows_have_unit_rms():
    layer = ScaleNormalization()
    x = np.random.default_rng(0).normal(size=(3, 16)).astype("float32") * 9
    y = np.asarray(layer(x))
    assert layer.g.numpy() == pytest.approx(math.sqrt(16))
    np.testing.assert_allclose(np.sqrt((y**2).mean(-1)), 1.0, rtol=1e-5)


def test_zero_row_gives_zeros():
    y = ScaleNormalization()(np.zeros((2, 4), "float32"))
    np.testing.assert_array_equal(np.asarray(y), np.zeros((2, 4)))


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"Received: epsilon='x'"):
        ScaleNormalization(epsilon="x")
