"""Model parallelism for our blocks with `keras.distribution` (JAX backend).

`layout_map(device_mesh)` returns a `keras.distribution.LayoutMap` that
shards the attention and feed-forward weights of every `TransformerEncoder`
and `TransformerEncoderBlock` along the mesh's model axis, in the
Megatron-LM split (Shoeybi et al., 2019):

```
query, key, value kernels   (d, heads, key_dim)   split over heads
attention output kernel     (heads, key_dim, d)   split over heads
feed-forward hidden kernel  (d, intermediate)     split over intermediate
feed-forward output kernel  (intermediate, d)     split over intermediate
```

with the biases that go with the split axes split the same way. A scanned
stack (`scan=True`) keeps these weights stacked along a leading depth axis;
its rules split the same feature axes and never the depth axis, which the
loop reads one slice at a time. Everything else (norms, hyper-connection
mixing weights, embeddings and heads of your own) is replicated: add your
own keys to the map for them.

Example (two devices, `XLA_FLAGS=--xla_force_host_platform_device_count=2`
on a CPU):

    mesh = keras.distribution.DeviceMesh(
        (1, 2), ["batch", "model"], keras.distribution.list_devices())
    keras.distribution.set_distribution(keras.distribution.ModelParallel(
        layout_map=layout_map(mesh), batch_dim_name="batch"))
    model = ...  # built after set_distribution, trained with model.fit
"""

import keras

__all__ = ["layout_map"]

# Path patterns of our blocks' weights (`Variable.path`). An unrolled
# stack's weights sit under `.../block_i/...` with "/" between layers; a
# scanned stack names its stacked variables with "-" between them
# (`_scan.STACKED_NAME_SEPARATOR`).
_ATTENTION = r"self_attention{s}attention{s}"
_FEED_FORWARD = r"feed_forward{s}"

# (pattern, layout of the unrolled weight); `None` replicates an axis.
_RULES = (
    (_ATTENTION + r"(query|key|value){s}kernel$", (None, "model", None)),
    (_ATTENTION + r"(query|key|value){s}bias$", ("model", None)),
    (_ATTENTION + r"attention_output{s}kernel$", ("model", None, None)),
    (_FEED_FORWARD + r"hidden{s}kernel$", (None, "model")),
    (_FEED_FORWARD + r"hidden{s}bias$", ("model",)),
    (_FEED_FORWARD + r"output{s}kernel$", ("model", None)),
)


def layout_map(device_mesh, model_axis="model"):
    """A `LayoutMap` on `device_mesh` that shards our blocks' attention and
    feed-forward weights over `model_axis` (the module docstring says how),
    for unrolled and scanned stacks alike.

    Args:
        device_mesh: a `keras.distribution.DeviceMesh`.
        model_axis: the name of the mesh axis to split over. Defaults to
            `"model"`.

    Returns:
        A `keras.distribution.LayoutMap` for `ModelParallel(layout_map=...)`.

    Raises:
        ValueError: naming the axis when the mesh has no axis `model_axis`.
    """
    if model_axis not in device_mesh.axis_names:
        raise ValueError(
            f"model_axis must be one of the mesh's axes "
            f"{tuple(device_mesh.axis_names)}. Received: "
            f"model_axis={model_axis!r}")
    layouts = keras.distribution.LayoutMap(device_mesh)

    def axes(layout):
        return tuple(model_axis if a == "model" else a for a in layout)

    for pattern, layout in _RULES:
        # Keras matches each key as a whole path (`re.fullmatch`).
        # Unrolled: ".../block_0/feed_forward_residual/feed_forward/...".
        layouts[".*/" + pattern.format(s="/")] = axes(layout)
        # Scanned: ".../feed_forward_residual-feed_forward-hidden-kernel",
        # one more (depth) axis in front, never split.
        layouts[".*-" + pattern.format(s="-")] = (None,) + axes(layout)
    return layouts
