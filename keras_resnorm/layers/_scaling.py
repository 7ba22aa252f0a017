"""The constants of the residual branch scalings: DeepNorm's alpha and beta
(Wang et al., 2022) and LayerScale's initial value by depth (Touvron et al.,
2021). Public through `keras_resnorm.deepnorm_constants` and
`keras_resnorm.layerscale_init_for_depth`."""

from keras_resnorm.layers._base import check_int


def deepnorm_constants(encoder_layers=0, decoder_layers=0, part="encoder"):
    """DeepNorm's residual weight alpha and init gain beta (Wang et al., 2022).

    The values of the DeepNet paper's Table 1, for `N` encoder layers and
    `M` decoder layers:

    ```
    encoder-only:  alpha = (2N) ** (1/4),               beta = (8N) ** (-1/4)
    decoder-only:  alpha = (2M) ** (1/4),               beta = (8M) ** (-1/4)
    enc-dec, encoder part: alpha = 0.81 (N^4 M) ** (1/16), beta = 0.87 (N^4 M) ** (-1/16)
    enc-dec, decoder part: alpha = (3M) ** (1/4),       beta = (12M) ** (-1/4)
    ```

    Args:
        encoder_layers: number of encoder layers `N`. Defaults to `0`.
        decoder_layers: number of decoder layers `M`. Defaults to `0`.
        part: `"encoder"` or `"decoder"`, which part of an encoder-decoder
            the constants are for; ignored when one count is 0. Defaults to
            `"encoder"`.

    Returns:
        `(alpha, beta)` as floats.

    Example:

    >>> from keras_resnorm import deepnorm_constants
    >>> [round(v, 4) for v in deepnorm_constants(encoder_layers=6)]
    [1.8612, 0.3799]
    """
    n, m = encoder_layers, decoder_layers
    check_int("encoder_layers", n, 0)
    check_int("decoder_layers", m, 0)
    if n == 0 and m == 0:
        raise ValueError(
            "At least one of encoder_layers and decoder_layers must be "
            "positive. Received: encoder_layers=0, decoder_layers=0"
        )
    if m == 0 or n == 0:
        depth = n or m
        return (2 * depth) ** 0.25, (8 * depth) ** -0.25
    if part == "encoder":
        return 0.81 * (n**4 * m) ** (1 / 16), 0.87 * (n**4 * m) ** (-1 / 16)
    if part == "decoder":
        return (3 * m) ** 0.25, (12 * m) ** -0.25
    raise ValueError(
        f"part must be one of ('encoder', 'decoder'). Received: part={part!r}"
    )


def layerscale_init_for_depth(depth):
    """LayerScale's initial value by network depth, as in CaiT (Touvron 2021).

    0.1 up to depth 18 (and when the depth is unknown), 1e-5 up to depth 24,
    1e-6 beyond.
    """
    if depth is None or depth <= 18:
        return 0.1
    return 1e-5 if depth <= 24 else 1e-6
