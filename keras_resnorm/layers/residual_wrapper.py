import keras
from keras import ops

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
from keras_resnorm.layers._fusion import FUSED_DEFAULT, add_norm
from keras_resnorm.layers._scaling import (
    deepnorm_constants,
    layerscale_init_for_depth,
)
from keras_resnorm.layers.drop_path import DropPath
from keras_resnorm.layers._norm_registry import check_norm, make_norm

__all__ = [
    "BRANCH_SCALES",
    "PLACEMENTS",
    "PROJECTIONS",
    "ResidualWrapper",
]

# The wrapper's placements (the registry in `keras_resnorm.placements`).
PLACEMENTS = placements.WRAPPER
BRANCH_SCALES = (None, "rezero", "layerscale")
PROJECTIONS = ("auto", True, False)


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
