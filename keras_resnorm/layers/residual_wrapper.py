import keras
from keras import ops

from keras_resnorm import ops as rn_ops
from keras_resnorm import placements
from keras_resnorm.placements import is_pre_norm
from keras_resnorm.layers._base import (
    check_choice,
    check_floating_input,
    check_fused,
    check_int,
    check_rate,
)
from keras_resnorm.layers._residual_core import (
    ResidualRecording,
    call_wrapped,
    check_wrapped,
    deserialize_wrapped,
    serialize_wrapped,
    wrapped_arguments,
)
from keras_resnorm.layers.drop_path import DropPath
from keras_resnorm.layers.layer_normalization import LayerNormalization
from keras_resnorm.layers.normalization import check_norm, make_norm
from keras_resnorm.layers.rms_normalization import RMSNormalization

# The wrapper's placements (the registry in `keras_resnorm.placements`).
PLACEMENTS = placements.WRAPPER
# Every fused= argument defaults to this (see `add_norm`).
FUSED_DEFAULT = "auto"
BRANCH_SCALES = (None, "rezero", "layerscale")
PROJECTIONS = ("auto", True, False)


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


def add_norm(norm, skip, h, fused=FUSED_DEFAULT):
    """`(norm(skip + h), skip + h)`, with one fused_add_norm where it applies.

    The kernel applies to LayerNormalization and RMSNormalization over the
    last axis (TensorFlow backend) unless `fused` or the norm's own `fused`
    is False; otherwise the sum is computed and normalized as usual.
    """
    if (fused is not False
            and isinstance(norm, (LayerNormalization, RMSNormalization))
            and norm.fused is not False
            and not norm.rms_scaling
            and rn_ops.can_fuse(h, norm.axes_for(h), skip)):
        return rn_ops.fused_add_norm(
            h, skip, norm.gamma, getattr(norm, "beta", None),
            axis=norm.axes_for(h),
            epsilon=norm.epsilon, use_mean=isinstance(norm, LayerNormalization),
            unit_offset=norm.unit_offset, dtype=norm.compute_dtype,
            fused=True if True in (fused, norm.fused) else "auto")
    total = skip + h
    return norm(total), total


def pre_norm_chain(wrappers, final_norm, inputs, mask=None, training=None,
                   fused=FUSED_DEFAULT):
    """Run pre-norm (or sandwich) ResidualWrappers in sequence, fusing each
    residual add with the next wrapper's input norm (or `final_norm`).

    For wrappers `w_1..w_n` with input norms `N_1..N_n`:

    ```
    n = N_1(x)
    for k in 1..n:
        h = branch_k(n)                       # s * N2(F_k(n)), dropout, ...
        n, x = fused_add_norm(h, x, N_{k+1})  # N_{n+1} = final_norm
    return n if final_norm else x
    ```

    which equals calling the wrappers one after the other (then
    `final_norm`), with one pass over each row for every add + norm, as in
    flash-attention's pre-norm path. All wrappers must be built.
    """
    x = inputs
    normed = wrappers[0].norm_layer(x)
    for k, wrapper in enumerate(wrappers):
        skip, h = wrapper.residual_step(x, training=training, mask=mask,
                                        normed=normed)
        following = (wrappers[k + 1].norm_layer if k + 1 < len(wrappers)
                     else final_norm)
        if following is None:
            return skip + h
        normed, x = add_norm(following, skip, h, fused)
    return normed


@keras.saving.register_keras_serializable(package="keras_resnorm")
class ResidualWrapper(ResidualRecording, keras.layers.Layer):
    """Wrap any layer `F` in a residual connection with a chosen norm placement.

    `placement` says where the normalization `N` goes, `branch_scale` how
    the branch is scaled (`s`, 1 by default), and `dropout` / `drop_path`
    regularize the branch. `P` is the projection shortcut, the identity
    unless `F` changes the feature size.

    ```
    post      y = N(P(x) + s * F(x))                 Vaswani et al. 2017
    pre       y = P(x) + s * F(N(x))                 Xiong et al. 2020
    sandwich  y = P(x) + s * N2(F(N1(x)))            Ding et al. 2021 (CogView),
              (alias "peri")                          Kim et al. 2025 (Peri-LN)
    deepnorm  y = N(alpha * P(x) + F(x))             Wang et al. 2022 (DeepNet)
    none      y = P(x) + s * F(x)

    branch_scale=None          s = 1
    branch_scale=0.5 (float)   s = 0.5, constant
    branch_scale="rezero"      s = learned scalar, starts at 0   Bachlechner et al. 2020
    branch_scale="layerscale"  s = learned per-channel vector,   Touvron et al. 2021 (CaiT)
                               starts at layerscale_init (by depth: 0.1 up to
                               depth 18, 1e-5 up to 24, 1e-6 beyond)
    ```

    For `deepnorm`, `alpha` and the initialization gain `beta` come from the
    DeepNet table for an encoder-only or decoder-only stack of `depth`
    layers (`alpha = (2 depth) ** 0.25`, `beta = (8 depth) ** -0.25`) unless
    given (see `deepnorm_constants` for encoder-decoder models). When the
    wrapper builds `F` itself, every weight named `kernel` in `F` is scaled
    by `beta`, except the query and key projections of attention layers, as
    in the paper.

    The projection shortcut `P` is a bias-free `Dense` layer created when
    `F`'s last dimension differs from the input's (`projection="auto"`), or
    always (`True`); with `False` a size change is an error. `F` may not
    change any other dimension.

    `training` and `mask` are passed to `F` when its `call` takes them; the
    input mask is the output mask. Norms, projection and dropout use the
    wrapper's dtype policy; norm statistics are float32.

    Args:
        layer: the `keras.layers.Layer` to wrap (the branch `F`).
        norm: normalization name, one of `"layer"`, `"rms"`, `"scale"`,
            `"dyt"`; or a Keras norm layer (copied for
            each norm the wrapper makes, under the wrapper's dtype policy;
            its own settings apply, `fused` and `norm_kwargs` do not), or a
            callable that returns one. Defaults to `"layer"`.
        placement: one of `"pre"`, `"post"`, `"sandwich"` (or `"peri"`),
            `"deepnorm"`, `"none"`. Defaults to `"pre"`.
        norm_kwargs: dict of keyword arguments for the norm layers. Defaults
            to `None`.
        branch_scale: `None`, `"rezero"`, `"layerscale"` or a float.
            Defaults to `None`.
        layerscale_init: initial LayerScale value; `None` picks it from
            `depth`. Defaults to `None`.
        depth: depth of the stack, for DeepNorm and LayerScale defaults:
            the number of Transformer layers `N` as the DeepNet and CaiT
            papers count them (a layer holds an attention and a
            feed-forward wrapper; `TransformerEncoder` passes its
            `num_layers`). Defaults to `None`.
        deepnorm_alpha: DeepNorm's skip weight; `None` computes it from
            `depth`. Defaults to `None`.
        deepnorm_beta: DeepNorm's initialization gain; `None` computes it
            from `depth`. Defaults to `None`.
        dropout: dropout rate on the branch output. Defaults to `0.0`.
        drop_path: stochastic depth rate for the branch. Defaults to `0.0`.
        projection: `"auto"`, `True` or `False`, see above. Defaults to
            `"auto"`.
        seed: optional int seed for dropout and drop path. Defaults to
            `None`.
        fused: `"auto"`, `True` or `False`. With `"auto"` (or `True`) and a
            LayerNorm or RMSNorm over the last axis, post and deepnorm
            placements compute `N(skip + branch)` with one
            `keras_resnorm.ops.fused_add_norm` pass, and every norm uses the
            fused kernel; pre and sandwich wrappers chained by
            `pre_norm_chain` (as `TransformerEncoderBlock` and
            `TransformerEncoder` do) fuse each add with the next input
            norm. `False` uses the composite reference path. Defaults to
            `"auto"`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: floating-point tensor `(batch, ..., features)`.
        training: bool, whether dropout and drop path are active.
        mask: optional mask, passed to `F` and returned unchanged.

    Input shape:
        `(batch, ..., features)` with `features` known.

    Output shape:
        `(batch, ..., F's output features)`.

    Example:

    >>> import numpy as np, keras
    >>> from keras_resnorm import ResidualWrapper
    >>> block = ResidualWrapper(keras.layers.Dense(64), norm="rms",
    ...                         placement="pre")
    >>> tuple(block(np.zeros((2, 128), "float32")).shape)
    (2, 64)

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017;
        Xiong et al., "On Layer Normalization in the Transformer
        Architecture", 2020; Ding et al., "CogView", 2021;
        Kim et al., "Peri-LN", 2025; Wang et al., "DeepNet: Scaling
        Transformers to 1,000 Layers", 2022; Bachlechner et al., "ReZero is
        All You Need", 2020; Touvron et al., "Going deeper with Image
        Transformers" (CaiT), 2021; Huang et al., "Deep Networks with
        Stochastic Depth", 2016.
    """

    def __init__(
        self,
        layer,
        norm="layer",
        placement="pre",
        norm_kwargs=None,
        branch_scale=None,
        layerscale_init=None,
        depth=None,
        deepnorm_alpha=None,
        deepnorm_beta=None,
        dropout=0.0,
        drop_path=0.0,
        projection="auto",
        seed=None,
        fused=FUSED_DEFAULT,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_wrapped(layer)
        placement = placements.canonical(placement, placements.WRAPPER)
        if norm_kwargs is not None and not isinstance(norm_kwargs, dict):
            raise TypeError(
                f"norm_kwargs must be a dict. Received: norm_kwargs={norm_kwargs!r}"
            )
        norm = check_norm(norm, norm_kwargs)
        if not (
            branch_scale in BRANCH_SCALES
            or (isinstance(branch_scale, (int, float))
                and not isinstance(branch_scale, bool))
        ):
            raise ValueError(
                "branch_scale must be None, 'rezero', 'layerscale' or a "
                f"number. Received: branch_scale={branch_scale!r}"
            )
        if depth is not None:
            check_int("depth", depth, 1)
        if placement == "deepnorm" and depth is None and (
            deepnorm_alpha is None or deepnorm_beta is None
        ):
            raise ValueError(
                "placement='deepnorm' needs depth, or both deepnorm_alpha and "
                f"deepnorm_beta. Received: depth=None, "
                f"deepnorm_alpha={deepnorm_alpha!r}, "
                f"deepnorm_beta={deepnorm_beta!r}"
            )
        check_choice("projection", projection, PROJECTIONS)
        self.layer = layer
        self.norm = norm
        self.placement = placement
        self.norm_kwargs = dict(norm_kwargs or {})
        self.branch_scale = branch_scale
        self.layerscale_init = layerscale_init
        self.depth = depth
        self.dropout = check_rate("dropout", dropout)
        self.drop_path = check_rate("drop_path", drop_path)
        self.projection = projection
        self.seed = seed
        self.fused = check_fused(fused)
        if placement == "deepnorm":
            alpha, beta = (None, None)
            if depth is not None:
                alpha, beta = deepnorm_constants(encoder_layers=depth)
            self.deepnorm_alpha = float(
                alpha if deepnorm_alpha is None else deepnorm_alpha
            )
            self.deepnorm_beta = float(
                beta if deepnorm_beta is None else deepnorm_beta
            )
        else:
            self.deepnorm_alpha = deepnorm_alpha
            self.deepnorm_beta = deepnorm_beta
        self.supports_masking = True
        self._takes = wrapped_arguments(layer)

        def norm_named(name):
            return make_norm(norm, name=name, dtype=self.dtype_policy,
                             norm_kwargs=self.norm_kwargs, fused=self.fused)

        self.norm_layer = None
        self.branch_norm_layer = None
        if placement != "none":
            self.norm_layer = norm_named("norm")
        if placement == "sandwich":
            self.branch_norm_layer = norm_named("branch_norm")
        self.dropout_layer = None
        if self.dropout > 0:
            self.dropout_layer = keras.layers.Dropout(
                self.dropout, seed=seed, dtype=self.dtype_policy,
                name="branch_dropout",
            )
        self.drop_path_layer = None
        if self.drop_path > 0:
            self.drop_path_layer = DropPath(
                self.drop_path, seed=seed, dtype=self.dtype_policy,
                name="drop_path",
            )
        self.projection_layer = None
        self.scale = None

    # ------------------------------------------------------------------ build
    def _branch_output_shape(self, input_shape):
        spec = keras.KerasTensor(tuple(input_shape), dtype=self.compute_dtype)
        out = self.layer(spec)
        if not isinstance(out, keras.KerasTensor):
            raise ValueError(
                f"The wrapped layer '{self.layer.name}' must return a single "
                f"tensor. Received: output={out!r}"
            )
        out_shape = tuple(out.shape)
        in_shape = tuple(input_shape)
        same_rank = len(out_shape) == len(in_shape)
        leading_ok = same_rank and all(
            a is None or b is None or a == b
            for a, b in zip(in_shape[:-1], out_shape[:-1])
        )
        if not leading_ok:
            raise ValueError(
                f"Cannot add the output of '{self.layer.name}' to its input: "
                "only the last dimension may change. Received: input shape "
                f"{in_shape}, layer output shape {out_shape}"
            )
        if out_shape[-1] != in_shape[-1] and self.projection is False:
            raise ValueError(
                f"'{self.layer.name}' changes the feature size from "
                f"{in_shape[-1]} to {out_shape[-1]}, which needs a projection "
                f"shortcut. Received: projection=False, input shape "
                f"{in_shape}, layer output shape {out_shape}"
            )
        return out_shape

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if input_shape[-1] is None:
            raise ValueError(
                "The last dimension of the inputs must be known. "
                f"Received: input_shape={input_shape}"
            )
        layer_was_built = self.layer.built
        out_shape = self._branch_output_shape(input_shape)
        self._output_shape = input_shape[:-1] + out_shape[-1:]
        features = out_shape[-1]
        if self.norm_layer is not None:
            # Pre and sandwich normalize the input; post and deepnorm the
            # sum, which has the branch's feature size.
            pre = is_pre_norm(self.placement)
            self.norm_layer.build(input_shape if pre else self._output_shape)
        if self.branch_norm_layer is not None:
            self.branch_norm_layer.build(out_shape)
        if self.projection is True or features != input_shape[-1]:
            self.projection_layer = keras.layers.Dense(
                features, use_bias=False, dtype=self.dtype_policy,
                name="projection",
            )
            self.projection_layer.build(input_shape)
        if self.branch_scale == "rezero":
            self.scale = self.add_weight(
                name="rezero_alpha", shape=(), initializer="zeros",
                dtype="float32", autocast=False,
            )
        elif self.branch_scale == "layerscale":
            init = self.layerscale_init
            if init is None:
                init = layerscale_init_for_depth(self.depth)
            self.scale = self.add_weight(
                name="layerscale_gamma", shape=(features,),
                initializer=keras.initializers.Constant(init),
                dtype="float32", autocast=False,
            )
        if self.placement == "deepnorm" and not layer_was_built:
            self._apply_deepnorm_init()

    def _apply_deepnorm_init(self):
        for variable in self.layer.trainable_weights:
            parts = variable.path.split("/")
            if parts[-1] != "kernel" or {"query", "key"} & set(parts):
                continue
            variable.assign(variable * self.deepnorm_beta)

    # ------------------------------------------------------------------- call
    def call(self, inputs, training=None, mask=None):
        check_floating_input(self, inputs)
        skip, h = self.residual_step(inputs, training=training, mask=mask)
        if self.placement in ("post", "deepnorm"):
            return add_norm(self.norm_layer, skip, h, self.fused)[0]
        return skip + h

    def residual_step(self, inputs, training=None, mask=None, normed=None):
        """The two paths of one residual step, before they are added.

        Returns `(skip, branch)`: `skip` is `P(x)` (times `alpha` for
        deepnorm) and `branch` is `s * F(N(x))` with the branch norm,
        dropout and drop path, in `skip`'s dtype. The output is
        `skip + branch` for pre, sandwich and none, and
        `N(skip + branch)` for post and deepnorm. A caller that has already
        computed the input norm `N(x)` of a pre or sandwich wrapper passes
        it as `normed` (as `pre_norm_chain` does, fusing it with the
        previous add). The wrapper must be built.
        """
        skip = inputs if self.projection_layer is None \
            else self.projection_layer(inputs)
        h = inputs
        if is_pre_norm(self.placement):
            h = self.norm_layer(inputs) if normed is None else normed
        h = self._branch(h, training, mask, skip.dtype)
        if self.placement == "deepnorm":
            skip = skip * ops.cast(self.deepnorm_alpha, skip.dtype)
        self._record(skip, h)
        return skip, h

    def _branch(self, h, training, mask, dtype):
        """F on its (already normalized) input, then N2, dropout, s, drop path."""
        h = call_wrapped(self.layer, self._takes, h, training, mask)
        if self.branch_norm_layer is not None:
            h = self.branch_norm_layer(h)
        h = ops.cast(h, dtype)
        if self.dropout_layer is not None:
            h = self.dropout_layer(h, training=training)
        if self.scale is not None:
            h = h * ops.cast(self.scale, h.dtype)
        elif self.branch_scale not in BRANCH_SCALES:
            h = h * ops.cast(self.branch_scale, h.dtype)
        if self.drop_path_layer is not None:
            h = self.drop_path_layer(h, training=training)
        return h

    def compute_output_shape(self, input_shape):
        if self.built:
            return tuple(input_shape[:-1]) + self._output_shape[-1:]
        return tuple(input_shape[:-1]) + self._branch_output_shape(
            input_shape
        )[-1:]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "layer": serialize_wrapped(self.layer),
                "norm": self.norm,
                "placement": self.placement,
                "norm_kwargs": self.norm_kwargs,
                "branch_scale": self.branch_scale,
                "layerscale_init": self.layerscale_init,
                "depth": self.depth,
                "deepnorm_alpha": self.deepnorm_alpha,
                "deepnorm_beta": self.deepnorm_beta,
                "dropout": self.dropout,
                "drop_path": self.drop_path,
                "projection": self.projection,
                "seed": self.seed,
                "fused": self.fused,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**deserialize_wrapped(config))
