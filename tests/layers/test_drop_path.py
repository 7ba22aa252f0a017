import numpy as np
import pytest

from keras_resnorm import DropPath
from layer_check import check_layer


def test_generic_layer_check():
    check_layer(lambda dtype=None: DropPath(0.3, seed=1, dtype=dtype),
                (4, 5, 6), trainable_weights=0, seed_generators=1,
                mask_tail=2, fit=False)


def test_drops_whole_examples_and_keeps_expectation():
    x = np.ones((4000, 3, 2), "float32")
    y = np.asarray(DropPath(0.25, seed=3)(x, training=True))
    per_example = y.reshape(4000, -1)
    # Each example is either all zeros or all 1 / 0.75.
    assert set(np.unique(per_example.min(1))) <= {0.0, np.float32(1 / 0.75)}
    np.testing.assert_array_equal(per_example.min(1), per_example.max(1))
    assert abs(y.mean() - 1.0) < 0.05
    assert 0.2 < (per_example[:, 0] == 0).mean() < 0.3


def test_identity_at_inference():
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    np.testing.assert_array_equal(np.asarray(DropPath(0.9)(x)), x)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_bad_rate(rate):
    with pytest.raises(ValueError, match=rf"Received: rate={rate}"):
        DropPath(rate)
