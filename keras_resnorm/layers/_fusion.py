"""The fused residual add + norm of the pre-norm layers: `add_norm` for one
add, `pre_norm_chain` for a chain of pre-norm (or sandwich) residual steps
(`ResidualWrapper`, `TransformerEncoderBlock`, `TransformerEncoder`, the
NER model)."""

from keras_resnorm import ops as rn_ops
from keras_resnorm.layers.layer_normalization import LayerNormalization
from keras_resnorm.layers.rms_normalization import RMSNormalization

# Every fused= argument defaults to this (see `add_norm`).
FUSED_DEFAULT = "auto"


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
            h, skip, norm.gain, getattr(norm, "beta", None),
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
