"""Keras on JAX, on one GPU: our layers checked on the device, norm
bandwidth, a training step against keras-hub's encoder, and compile time
against depth.

    python -m benchmarks.gpu_jax            # about 6 minutes on one H100/H200
    python -m benchmarks.gpu_jax --quick    # toy sizes on the CPU, under a minute

Keras runs on its JAX backend, where every `jax.jit` is XLA, and TensorFlow
is never imported (an import of it fails in this process), so this runs
where only JAX with CUDA is installed; docs/speed.md says which wheels to
bring. Five sections, in this order:

1. correctness: LayerNorm and RMSNorm against float64 references in float32
   and under `mixed_bfloat16`; ours against `keras.layers.LayerNormalization`
   and `RMSNormalization` (outputs and input gradients); a scanned encoder
   against the unrolled one with the same weights.
2. bandwidth: forward, and forward plus backward, of ours, Keras's and
   Flax's LayerNorm (Flax when installed) and ours and Keras's RMSNorm,
   bfloat16 and float32, against `y = -x` on the same array in the same run
   (one read and one write, as a norm's forward needs: the memory limit).
3. train step: pre- and post-norm encoders of our blocks, unrolled and
   scanned, against keras-hub's `TransformerEncoder` stack of the same
   sizes, under `mixed_bfloat16` and float32: compile time, step time,
   tokens/s and model FLOPs utilization against a bfloat16 matrix product
   measured in the same run. One step is a forward, a backward and an SGD
   update (`jit`, weights donated) of a mean-squared loss.
4. depth: trace and compile time and step time of a pre-norm encoder at
   each depth, scanned against unrolled.
5. placements: every placement, norm and branch scale forward and backward
   under `jit`, gradients finite (rows of the correctness table). Last,
   so that one slow compile costs no measurement.

Timings are medians of interleaved repetitions; each repetition runs a
function enough times back to back (dispatch is asynchronous) to last
`--min-sample-ms`, then waits for the device. Writes
`<out>/gpu-jax-<tag>.json`, `.md` and `.png`; JSON and markdown are
rewritten after each section, so a run stopped early keeps what it
measured, and a section past the `--budget-s` deadline is recorded as
skipped. `--quick` results are toy sizes on whatever device there is:
never GPU numbers.
"""

import argparse
import datetime
import importlib.machinery
import json
import math
import os
import platform
import re
import statistics
import sys
import time

import numpy as np

from benchmarks import common

# The placements' jit checks run last: on an H200 one compile (mHC's,
# before its Sinkhorn iterations became a loop) ran for minutes.
SECTIONS = ("correctness", "bandwidth", "train", "depth", "placements")

SIZES = {
    "full": {
        "check": {"rows": 4096, "dim": 1024, "d": 64, "heads": 4,
                  "length": 32, "batch": 4},
        "shapes": [(16384, 1024), (65536, 1024), (16384, 4096),
                   (8192, 8192)],
        "train": {"d": 1024, "heads": 16, "ff": 4096, "blocks": 8,
                  "length": 512, "batch": 32},
        "depth": {"d": 256, "heads": 4, "ff": 1024, "length": 128,
                  "batch": 8, "depths": (6, 12, 24, 48)},
        "matmul": 8192,
        "check_policies": ("float32", "mixed_bfloat16"),
        "check_each": None,
        "train_policies": ("mixed_bfloat16", "float32"),
        "train_placements": ("pre", "post"),
    },
    "quick": {
        "check": {"rows": 64, "dim": 32, "d": 16, "heads": 2,
                  "length": 8, "batch": 2},
        "shapes": [(256, 64), (128, 256)],
        "train": {"d": 32, "heads": 4, "ff": 64, "blocks": 2,
                  "length": 16, "batch": 4},
        "depth": {"d": 16, "heads": 2, "ff": 32, "length": 8,
                  "batch": 2, "depths": (2, 4)},
        "matmul": 256,
        "check_policies": ("mixed_bfloat16",),
        "check_each": 1,
        "train_policies": ("mixed_bfloat16",),
        "train_placements": ("pre",),
    },
}

# Largest error allowed against the float64 reference, as
# max |y - ref| / (1 + |ref|): float32 rounding, and bfloat16's 8 bits.
TOLERANCE = {"float32": 1e-4, "mixed_bfloat16": 2e-2}
# Ours against Keras's, both float32 (outputs and input gradients).
AGREEMENT = 1e-4
EPSILON = {"layer": 1e-5, "rms": 1e-6}


class _NoTensorFlow:
    """Makes any import of TensorFlow fail, so nothing here can lean on
    it unseen. (A spec whose loading fails, not an error from `find_spec`:
    some libraries ask `find_spec` whether TensorFlow exists.)"""

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        raise ImportError("benchmarks.gpu_jax runs without TensorFlow")

    def exec_module(self, module):
        raise ImportError("benchmarks.gpu_jax runs without TensorFlow")


def _use_jax():
    """Keras on JAX with TensorFlow unimportable; before Keras loads."""
    if "keras" in sys.modules and sys.modules["keras"].backend.backend() != "jax":
        raise SystemExit("benchmarks.gpu_jax needs Keras's JAX backend; "
                         "Keras was already loaded with another")
    os.environ["KERAS_BACKEND"] = "jax"
    if not any(isinstance(f, _NoTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoTensorFlow())


def machine(note):
    import jax
    import keras

    device = jax.devices()[0]
    versions = {"jax": jax.__version__, "keras": keras.__version__}
    for name in ("keras_hub", "flax"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    return {
        "platform": device.platform,
        "device": getattr(device, "device_kind", str(device)),
        "device_count": jax.device_count(),
        "cpu": common.cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        **versions,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"),
        "also_running": note,
    }


class Clock:
    """The run's deadline: work past it is recorded as skipped."""

    def __init__(self, budget_s):
        self.start = time.perf_counter()
        self.budget_s = budget_s

    def left(self):
        return self.budget_s - (time.perf_counter() - self.start)

    def elapsed(self):
        return time.perf_counter() - self.start


def _run(fn, args, times):
    out = None
    for _ in range(times):
        out = fn(*args)
    import jax
    jax.block_until_ready(out)
    return out


def interleaved(fns, repeats, min_sample_s):
    """Median seconds per call of each `name: (fn, args)`, measured in
    interleaved repetitions. A stateful function returns its next args
    (see `Stepper`)."""
    times = {}
    for name, (fn, args) in fns.items():
        _run(fn, args, 2)  # compile (if not yet) and warm up
        start = time.perf_counter()
        _run(fn, args, 1)
        once = time.perf_counter() - start
        times[name] = max(1, min(2000, math.ceil(min_sample_s / max(once,
                                                                    1e-7))))
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, (fn, args) in fns.items():
            start = time.perf_counter()
            _run(fn, args, times[name])
            samples[name].append((time.perf_counter() - start) / times[name])
    return {name: statistics.median(s) for name, s in samples.items()}


def _relative_error(y, reference):
    y = np.asarray(y, dtype="float64")
    return float(np.max(np.abs(y - reference) / (1.0 + np.abs(reference))))


def _norm_layer(impl, kind, dtype, dim, rng):
    """`(params, apply)` of one norm with random affine weights, `apply`
    a pure function of (params, x)."""
    import jax.numpy as jnp
    import keras

    import keras_resnorm as kr

    if impl == "flax":
        import flax.linen as nn

        module = nn.LayerNorm(epsilon=EPSILON[kind], dtype=dtype,
                              param_dtype=jnp.float32)
        params = module.init(_key(), jnp.zeros((1, dim), dtype))
        params = _randomize(params, rng)
        return params, module.apply
    layer = {
        ("ours", "layer"): kr.LayerNormalization,
        ("ours", "rms"): kr.RMSNormalization,
        ("keras", "layer"): keras.layers.LayerNormalization,
        ("keras", "rms"): keras.layers.RMSNormalization,
    }[impl, kind](epsilon=EPSILON[kind], dtype=dtype)
    layer.build((None, dim))
    for variable in layer.trainable_variables:
        variable.assign(rng.normal(1.0 if "gamma" in variable.path
                                   or "scale" in variable.path else 0.0,
                                   0.2, variable.shape))
    params = [v.value for v in layer.trainable_variables]

    def apply(params, x):
        return layer.stateless_call(params, [], x)[0]

    return params, apply


def _key():
    import jax
    return jax.random.key(0)


def _randomize(params, rng):
    import jax
    import jax.numpy as jnp

    def one(path, leaf):
        mean = 1.0 if "scale" in jax.tree_util.keystr(path) else 0.0
        return jnp.asarray(rng.normal(mean, 0.2, leaf.shape), leaf.dtype)

    return jax.tree_util.tree_map_with_path(one, params)


def _forward_backward(apply):
    """The gradients of <apply(params, x), ct> with respect to params and
    x: a norm's backward pass (reads x and ct, writes dx)."""
    import jax
    import jax.numpy as jnp

    def inner(params, x, cotangent):
        y = apply(params, x).astype("float32")
        return jnp.sum(y * cotangent.astype("float32"))

    return jax.grad(inner, argnums=(0, 1))


# ---------------------------------------------------------------- section 1


def correctness(sizes, rng):
    import jax

    import keras_resnorm as kr

    rows, dim = sizes["check"]["rows"], sizes["check"]["dim"]
    x = (rng.normal(size=(rows, dim)) * 3 + 1).astype("float32")
    cotangent = rng.normal(size=(rows, dim)).astype("float32")
    checks = []

    def reference(kind, x64):
        if kind == "layer":
            mean = x64.mean(-1, keepdims=True)
            var = ((x64 - mean) ** 2).mean(-1, keepdims=True)
            return (x64 - mean) / np.sqrt(var + EPSILON[kind])
        return x64 / np.sqrt((x64 ** 2).mean(-1, keepdims=True)
                             + EPSILON[kind])

    for kind in ("layer", "rms"):
        for policy in ("float32", "mixed_bfloat16"):
            layer = (kr.LayerNormalization if kind == "layer" else
                     kr.RMSNormalization)(epsilon=EPSILON[kind], dtype=policy)
            y = jax.jit(lambda x, layer=layer: layer(x))(x)
            seen = np.asarray(x.astype(layer.compute_dtype)
                              if policy != "float32" else x, "float64")
            error = _relative_error(np.asarray(y, "float32"),
                                    reference(kind, seen))
            checks.append({"check": f"{kind} norm vs float64 reference",
                           "policy": policy, "error": error,
                           "tolerance": TOLERANCE[policy],
                           "passed": error <= TOLERANCE[policy]})
        errors = {}
        applies = {}
        for impl in ("ours", "keras"):
            params, apply = _norm_layer(impl, kind, "float32", dim,
                                        np.random.default_rng(1))
            applies[impl] = (params, apply)
        outs = {impl: jax.jit(apply)(params, x)
                for impl, (params, apply) in applies.items()}
        grads = {impl: jax.jit(_forward_backward(apply))(
                     params, x, cotangent)[1]
                 for impl, (params, apply) in applies.items()}
        errors["outputs"] = _relative_error(outs["ours"],
                                            np.asarray(outs["keras"], "float64"))
        errors["input gradients"] = _relative_error(
            grads["ours"], np.asarray(grads["keras"], "float64"))
        for what, error in errors.items():
            checks.append({"check": f"ours vs keras {kind} norm: {what}",
                           "policy": "float32", "error": error,
                           "tolerance": AGREEMENT,
                           "passed": error <= AGREEMENT})

    c = sizes["check"]
    sample = rng.normal(size=(c["batch"], c["length"], c["d"])).astype(
        "float32")
    options = dict(num_layers=3, num_heads=c["heads"],
                   intermediate_dim=2 * c["d"], seed=0)
    unrolled = kr.TransformerEncoder(**options)
    scanned = kr.TransformerEncoder(scan=True, **options)
    unrolled(sample), scanned(sample)
    scanned.set_unrolled_weights(unrolled.get_weights())
    # Full float32 matrix products: a GPU's default for float32 may be
    # TF32, whose rounding would differ between the two graphs' fusions.
    with jax.default_matmul_precision("float32"):
        error = _relative_error(
            jax.jit(lambda x: scanned(x))(sample),
            np.asarray(jax.jit(lambda x: unrolled(x))(sample), "float64"))
    checks.append({"check": "scanned vs unrolled encoder (3 blocks)",
                   "policy": "float32", "error": error,
                   "tolerance": AGREEMENT, "passed": error <= AGREEMENT})

    return checks


def placements_check(sizes, rng, checks, save):
    """Every placement, norm and branch scale forward and backward under
    jit, gradients finite; each result saved as it comes (one slow
    compile must not cost the rest)."""
    import keras

    import keras_resnorm as kr
    from keras_resnorm import placements

    c = sizes["check"]
    sample = rng.normal(size=(c["batch"], c["length"], c["d"])).astype(
        "float32")
    kinds = [[{"placement": p} for p in placements.ENCODER],
             [{"norm": n} for n in kr.NORMALIZATIONS if n != "layer"],
             [{"branch_scale": s} for s in ("rezero", "layerscale")],
             [{"scan": True, "placement": p} for p in ("post", "mhc")]]
    # Quick mode runs the first of each kind: the code path, not the list
    # (tests/test_other_backends.py runs every one on JAX).
    variants = [v for kind in kinds for v in kind[:sizes["check_each"]]]
    for policy in sizes["check_policies"]:
        for variant in variants:
            label = ", ".join(f"{k}={v}" for k, v in variant.items())
            print(f"  {policy}: {label}", flush=True)
            start = time.perf_counter()
            encoder = kr.TransformerEncoder(
                1 if "scan" not in variant else 2, c["heads"], 2 * c["d"],
                seed=0, dtype=policy, **variant)
            encoder(sample[:1])
            loss, finite = _finite_step(encoder, sample)
            checks.append({"check": f"jit forward+backward: {label}",
                           "policy": policy, "error": loss,
                           "tolerance": "finite", "passed": finite,
                           "seconds": time.perf_counter() - start})
            save()
    keras.config.set_dtype_policy("float32")
    return checks


def _finite_step(layer, x):
    """Loss and whether it and every gradient are finite, under jit."""
    import jax
    import jax.numpy as jnp

    trainable = [v.value for v in layer.trainable_variables]
    frozen = [v.value for v in layer.non_trainable_variables]

    def loss(trainable, x):
        y, _ = layer.stateless_call(trainable, frozen, x, training=True)
        return jnp.mean(jnp.square(y.astype("float32")))

    value, grads = jax.jit(jax.value_and_grad(loss))(trainable, x)
    finite = bool(np.isfinite(float(value))) and all(
        bool(jnp.all(jnp.isfinite(g))) for g in grads)
    return float(value), finite


# ---------------------------------------------------------------- section 2


def bandwidth(sizes, args, clock, rng, part, save):
    import jax
    import jax.numpy as jnp

    try:
        import flax.linen  # noqa: F401
        has_flax = True
    except ImportError:
        has_flax = False
    part["flax"] = has_flax
    rows = part.setdefault("rows", [])
    for dtype in ("bfloat16", "float32"):
        for shape in sizes["shapes"]:
            label = f"{shape[0]}x{shape[1]}"
            print(f"  {label} {dtype}", flush=True)
            if clock.left() <= 0:
                rows.append({"shape": label, "dtype": dtype,
                             "skipped": "time budget"})
                continue
            # Drawn on the device: NumPy takes seconds at these sizes.
            key_x, key_c = jax.random.split(jax.random.key(len(rows)))
            x = (jax.random.normal(key_x, shape, jnp.float32) * 3
                 + 1).astype(dtype)
            cotangent = jax.random.normal(key_c, shape, dtype)
            impls = [("layer", "ours"), ("layer", "keras")]
            if has_flax:
                impls.append(("layer", "flax"))
            impls += [("rms", "ours"), ("rms", "keras")]
            forward = {"copy": (jax.jit(lambda x: -x), (x,))}
            backward = {}
            for kind, impl in impls:
                params, apply = _norm_layer(impl, kind, dtype, shape[1], rng)
                forward[kind, impl] = (jax.jit(apply), (params, x))
                backward[kind, impl] = (jax.jit(_forward_backward(apply)),
                                        (params, x, cotangent))
            fwd = interleaved(forward, args.repeats, args.min_sample_ms / 1e3)
            bwd = interleaved(backward, args.repeats, args.min_sample_ms / 1e3)
            nbytes = 2 * x.size * x.dtype.itemsize
            rows.append({"shape": label, "dtype": dtype,
                         "copy_ms": fwd["copy"] * 1e3,
                         "copy_GBps": nbytes / fwd["copy"] / 1e9})
            for kind, impl in impls:
                rows.append({
                    "shape": label, "dtype": dtype, "norm": kind,
                    "impl": impl,
                    "forward_ms": fwd[kind, impl] * 1e3,
                    "forward_GBps": nbytes / fwd[kind, impl] / 1e9,
                    "forward_of_copy": fwd["copy"] / fwd[kind, impl],
                    "forward_backward_ms": bwd[kind, impl] * 1e3,
                })
            del x, cotangent, forward, backward
            save()
    return part


# ---------------------------------------------------------------- section 3


def matmul_peak(n, args):
    """bfloat16 FLOP/s of an n x n x n matrix product, measured here."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(1), (n, n), jnp.bfloat16)
    b = jax.random.normal(jax.random.key(2), (n, n), jnp.bfloat16)
    seconds = interleaved({"matmul": (jax.jit(jnp.matmul), (a, b))},
                          args.repeats, args.min_sample_ms / 1e3)["matmul"]
    return 2 * n ** 3 / seconds


def build_encoder(kind, placement, t, scan=False, depth=None):
    """A functional model: (batch, length, d) -> the stack's output."""
    import keras
    import keras_hub

    import keras_resnorm as kr

    depth = depth or t["blocks"]
    inputs = keras.Input((t["length"], t["d"]))
    if kind == "keras-hub":
        h = inputs
        for i in range(depth):
            h = keras_hub.layers.TransformerEncoder(
                t["ff"], t["heads"], activation="gelu",
                layer_norm_epsilon=1e-5,
                normalize_first=placement == "pre", name=f"block_{i}")(h)
        if placement == "pre":
            h = keras.layers.LayerNormalization(epsilon=1e-5,
                                                name="final_norm")(h)
        return keras.Model(inputs, h)
    encoder = kr.TransformerEncoder(
        depth, t["heads"], t["ff"], placement=placement, activation="gelu",
        norm_kwargs={"epsilon": 1e-5}, scan=scan, seed=0)
    # A scanned stack builds eagerly (its stacked weights come from the
    # blocks' NumPy values), so it sees one concrete batch first.
    encoder(np.zeros((1, t["length"], t["d"]), "float32"))
    return keras.Model(inputs, encoder(inputs))


class Stepper:
    """A jitted SGD step of one model that carries its own weights, so
    `interleaved` can call it like a pure function."""

    def __init__(self, model, x, y, learning_rate=1e-4):
        import jax
        import jax.numpy as jnp

        def loss_fn(trainable, frozen, x, y):
            out, frozen = model.stateless_call(trainable, frozen, x,
                                               training=True)
            return jnp.mean(jnp.square(out.astype("float32") - y)), frozen

        def step(trainable, frozen, x, y):
            (loss, frozen), grads = jax.value_and_grad(
                loss_fn, has_aux=True)(trainable, frozen, x, y)
            trainable = [v - learning_rate * g.astype(v.dtype)
                         for v, g in zip(trainable, grads)]
            return trainable, frozen, loss

        self.state = ([v.value for v in model.trainable_variables],
                      [v.value for v in model.non_trainable_variables])
        self.x, self.y = x, y
        start = time.perf_counter()
        lowered = jax.jit(step, donate_argnums=(0, 1)).lower(
            *self.state, x, y)
        self.trace_s = time.perf_counter() - start
        start = time.perf_counter()
        self.compiled = lowered.compile()
        self.compile_s = time.perf_counter() - start
        self.params = model.count_params()

    def __call__(self):
        trainable, frozen, loss = self.compiled(*self.state, self.x, self.y)
        self.state = (trainable, frozen)
        return loss


def train_flops(t, depth=None):
    """Model FLOPs of one training step (3x the forward's matrix
    products: QKV and output projections, feed-forward, scores and
    values), the usual MFU count."""
    depth = depth or t["blocks"]
    d, ff, length = t["d"], t["ff"], t["length"]
    per_token = 2 * (4 * d * d + 2 * d * ff) + 2 * 2 * length * d
    return 3 * per_token * depth * t["batch"] * length


def train(sizes, args, clock, peak, part, save):
    import jax.numpy as jnp
    import keras

    t = sizes["train"]
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(t["batch"], t["length"], t["d"])),
                    jnp.float32)
    y = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
    flops = train_flops(t)
    part["flops_per_step"] = flops
    rows = part.setdefault("rows", [])
    for policy in sizes["train_policies"]:
        for placement in sizes["train_placements"]:
            variants = {"keras-hub TransformerEncoder": ("keras-hub", False),
                        "ours, unrolled": ("ours", False),
                        "ours, scanned": ("ours", True)}
            if clock.left() <= 0:
                rows += [{"policy": policy, "placement": placement,
                          "model": name, "skipped": "time budget"}
                         for name in variants]
                continue
            print(f"  {policy} {placement}-norm", flush=True)
            steppers = {}
            for name, (kind, scan) in variants.items():
                keras.config.set_dtype_policy(policy)
                keras.utils.set_random_seed(0)
                model = build_encoder(kind, placement, t, scan=scan)
                keras.config.set_dtype_policy("float32")
                steppers[name] = Stepper(model, x, y)
            seconds = interleaved({n: (s, ()) for n, s in steppers.items()},
                                  args.repeats, args.min_sample_ms / 1e3)
            hub = seconds["keras-hub TransformerEncoder"]
            for name, stepper in steppers.items():
                rows.append({
                    "policy": policy, "placement": placement, "model": name,
                    "params": stepper.params,
                    "trace_s": stepper.trace_s,
                    "compile_s": stepper.compile_s,
                    "step_ms": seconds[name] * 1e3,
                    "tokens_per_s": t["batch"] * t["length"] / seconds[name],
                    "mfu": flops / seconds[name] / peak,
                    "speed_vs_keras_hub": hub / seconds[name],
                })
            del steppers
            save()
    return part


# ---------------------------------------------------------------- section 4


def depth(sizes, args, clock, part, save):
    import jax.numpy as jnp
    import keras

    t = dict(sizes["depth"], blocks=None)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(t["batch"], t["length"], t["d"])),
                    jnp.float32)
    y = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
    part["sizes"] = {k: v for k, v in t.items() if k != "blocks"}
    rows = part.setdefault("rows", [])
    for layers in t["depths"]:
        if clock.left() <= 0:
            rows += [{"depth": layers, "scan": scan, "skipped": "time budget"}
                     for scan in (False, True)]
            continue
        print(f"  depth {layers}", flush=True)
        steppers = {}
        for scan in (False, True):
            keras.config.set_dtype_policy("mixed_bfloat16")
            keras.utils.set_random_seed(0)
            start = time.perf_counter()
            model = build_encoder("ours", "pre", t, scan=scan, depth=layers)
            built = time.perf_counter() - start
            keras.config.set_dtype_policy("float32")
            steppers[scan] = (Stepper(model, x, y), built)
        seconds = interleaved({s: (st, ()) for s, (st, _) in steppers.items()},
                              args.repeats, args.min_sample_ms / 1e3)
        for scan, (stepper, built) in steppers.items():
            rows.append({"depth": layers, "scan": scan, "build_s": built,
                         "trace_s": stepper.trace_s,
                         "compile_s": stepper.compile_s,
                         "step_ms": seconds[scan] * 1e3})
        del steppers
        save()
    return part


# ----------------------------------------------------------------- results


def targets(results):
    """The issue's targets, measured: (target, value, met)."""
    out = []
    bw = results.get("bandwidth", {}).get("rows", [])
    for kind in ("layer", "rms"):
        for row in bw:
            if (row.get("impl") == "ours" and row.get("norm") == kind
                    and row["dtype"] == "bfloat16"
                    and row["shape"] == "16384x4096"):
                out.append((f"ours {kind} forward >= 85% of copy, "
                            "16384x4096 bf16",
                            f"{row['forward_of_copy']:.0%}",
                            row["forward_of_copy"] >= 0.85))
        slower = []
        for row in bw:
            if row.get("impl") == "ours" and row.get("norm") == kind:
                peers = [r for r in bw if r.get("norm") == kind
                         and r["shape"] == row["shape"]
                         and r["dtype"] == row["dtype"]
                         and r.get("impl") not in (None, "ours")]
                for peer in peers:
                    ratio = peer["forward_ms"] / row["forward_ms"]
                    if ratio < 1.0:
                        slower.append(f"{peer['impl']} {row['shape']} "
                                      f"{row['dtype']} {ratio:.2f}x")
        if bw:
            out.append((f"ours {kind} forward no slower than peers, every "
                        "shape", "; ".join(slower) or "never slower",
                        not slower))
    for row in results.get("train", {}).get("rows", []):
        if row.get("model", "").startswith("ours") and "step_ms" in row:
            out.append((f"train step vs keras-hub ({row['model']}, "
                        f"{row['placement']}, {row['policy']}) >= 1.0",
                        f"{row['speed_vs_keras_hub']:.2f}x, MFU "
                        f"{row['mfu']:.0%}",
                        row["speed_vs_keras_hub"] >= 1.0))
    compiles = {row["depth"]: row["trace_s"] + row["compile_s"]
                for row in results.get("depth", {}).get("rows", [])
                if row.get("scan") and "compile_s" in row}
    if len(compiles) >= 2:
        low, high = min(compiles), max(compiles)
        ratio = compiles[high] / compiles[low]
        out.append((f"scanned trace+compile at depth {high} <= 2x depth "
                    f"{low}", f"{ratio:.2f}x", ratio <= 2.0))
    return out


def markdown(results, argv):
    m = results["machine"]
    lines = [f"# Keras on JAX: {m['device']}" + (
                 " (quick mode: toy sizes, not a measurement)"
                 if results["quick"] else ""),
             "",
             f"Command: `{common.command('benchmarks.gpu_jax', argv)}`",
             "",
             f"Machine: {m['device']} ({m['platform']}, {m['device_count']} "
             f"device(s)), host {m['cpu']}, {m['cores']} cores; Python "
             f"{m['python']}, JAX {m['jax']}, Keras {m['keras']}, keras-hub "
             f"{m['keras_hub']}, Flax {m['flax']}; {m['date']}. Also "
             f"running: {m['also_running']}. TensorFlow imported: "
             f"{results.get('tensorflow_imported')}.",
             ""]
    if results.get("targets"):
        lines += ["## Targets", "", common.markdown_table(
            [{"target": t, "measured": v, "met": "yes" if ok else "NO"}
             for t, v, ok in results["targets"]],
            ["target", "measured", "met"]), ""]
    if "correctness" in results:
        checks = results["correctness"]
        failed = [c for c in checks if not c["passed"]]
        lines += ["## 1. Correctness on the device", "",
                  f"{len(checks) - len(failed)} of {len(checks)} checks "
                  "passed (error: max |y - ref| / (1 + |ref|); for the "
                  "jit rows, the loss).", "",
                  common.markdown_table(
                      [dict(c, passed="yes" if c["passed"] else "NO")
                       for c in checks],
                      ["check", "policy", "error", "tolerance", "passed"]),
                  ""]
    if "bandwidth" in results:
        lines += ["## 2. Norm bandwidth", "",
                  "Forward as a fraction of `y = -x` on the same array "
                  "(one read, one write: the memory limit), and forward "
                  "plus backward (reads x and the cotangent, writes dx and "
                  "the weight gradients). Flax installed: "
                  f"{results['bandwidth']['flax']}.", "",
                  common.markdown_table(
                      results["bandwidth"]["rows"],
                      ["shape", "dtype", "norm", "impl", "copy_ms",
                       "copy_GBps", "forward_ms", "forward_GBps",
                       "forward_of_copy", "forward_backward_ms", "skipped"]),
                  ""]
    if "train" in results:
        lines += ["## 3. Training step", "",
                  f"Sizes {results['sizes']['train']}; model FLOPs a step "
                  f"{results['train']['flops_per_step']:.3g}; bfloat16 "
                  f"matrix product here {results['matmul_flops']:.3g} "
                  "FLOP/s (the MFU denominator, float32 rows too).", "",
                  common.markdown_table(
                      results["train"]["rows"],
                      ["policy", "placement", "model", "params", "trace_s",
                       "compile_s", "step_ms", "tokens_per_s", "mfu",
                       "speed_vs_keras_hub", "skipped"]), ""]
    if "depth" in results:
        lines += ["## 4. Compile time against depth", "",
                  f"Pre-norm encoder of our blocks, mixed_bfloat16, sizes "
                  f"{results['depth']['sizes']}; trace is `jit(...).lower`, "
                  "compile is XLA's.", "",
                  common.markdown_table(
                      results["depth"]["rows"],
                      ["depth", "scan", "build_s", "trace_s", "compile_s",
                       "step_ms", "skipped"]), ""]
    lines += [f"Wall time {results['wall_s']:.0f} s; sections skipped for "
              f"time: {results['skipped_sections'] or 'none'}."]
    return "\n".join(lines)


def plot(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    bw = [r for r in results.get("bandwidth", {}).get("rows", [])
          if "forward_of_copy" in r]
    labels = sorted({(r["shape"], r["dtype"]) for r in bw})
    impls = sorted({(r["norm"], r["impl"]) for r in bw})
    width = 0.8 / max(1, len(impls))
    for j, impl in enumerate(impls):
        values = [next((r["forward_of_copy"] for r in bw
                        if (r["shape"], r["dtype"]) == label
                        and (r["norm"], r["impl"]) == impl), 0)
                  for label in labels]
        axes[0].bar(np.arange(len(labels)) + j * width, values, width,
                    label=" ".join(impl))
    axes[0].set_xticks(np.arange(len(labels)) + 0.4 - width / 2)
    axes[0].set_xticklabels([f"{s}\n{d}" for s, d in labels], fontsize=7)
    axes[0].axhline(0.85, color="gray", linestyle=":")
    axes[0].set_ylabel("forward / copy bandwidth")
    axes[0].set_title("norm forward")
    if impls:
        axes[0].legend(fontsize=7)
    train_rows = [r for r in results.get("train", {}).get("rows", [])
                  if "tokens_per_s" in r]
    names = [f"{r['model']}\n{r['placement']} {r['policy']}"
             for r in train_rows]
    axes[1].barh(np.arange(len(names)),
                 [r["tokens_per_s"] for r in train_rows])
    axes[1].set_yticks(np.arange(len(names)))
    axes[1].set_yticklabels(names, fontsize=6)
    axes[1].set_xlabel("training tokens/s")
    axes[1].set_title("training step")
    for scan in (False, True):
        rows = [r for r in results.get("depth", {}).get("rows", [])
                if r.get("scan") == scan and "compile_s" in r]
        if rows:
            axes[2].plot([r["depth"] for r in rows],
                         [r["trace_s"] + r["compile_s"] for r in rows], "o-",
                         label="scanned" if scan else "unrolled")
    axes[2].set_xlabel("depth")
    axes[2].set_ylabel("trace + compile (s)")
    axes[2].set_title("compile time against depth")
    if axes[2].lines:
        axes[2].legend()
    fig.suptitle(f"{results['machine']['device']}"
                 + (" (quick: toy sizes)" if results["quick"] else ""))
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=90)
    plt.close(fig)
    os.replace(path + ".tmp.png", path)
    return True


def write(base, results, argv):
    text = {".json": json.dumps(results, indent=2, default=float),
            ".md": markdown(results, argv).rstrip() + "\n"}
    for suffix, content in text.items():
        with open(base + suffix + ".tmp", "w") as f:
            f.write(content)
        os.replace(base + suffix + ".tmp", base + suffix)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="toy sizes, every section, under a minute on "
                             "the CPU: a check that the benchmark runs")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS,
                        default=list(SECTIONS))
    parser.add_argument("--out", default=common.RESULTS,
                        help="folder for the results (default: %(default)s)")
    parser.add_argument("--tag", default=None,
                        help="file-name tag (default: the device's kind, or "
                             "quick-<platform>)")
    parser.add_argument("--budget-s", type=float, default=300.0,
                        help="sections past this many seconds are skipped "
                             "(default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="interleaved repetitions (default 7, quick 3)")
    parser.add_argument("--min-sample-ms", type=float, default=None,
                        help="shortest timed sample (default 20, quick 2)")
    parser.add_argument("--note", default="nothing else",
                        help="what else ran on the machine, for the results")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.min_sample_ms is None:
        args.min_sample_ms = 2.0 if args.quick else 20.0
    _use_jax()
    import jax
    import keras

    if keras.backend.backend() != "jax":
        raise SystemExit("benchmarks.gpu_jax needs KERAS_BACKEND=jax; Keras "
                         f"runs on {keras.backend.backend()}")
    clock = Clock(args.budget_s)
    sizes = SIZES["quick" if args.quick else "full"]
    info = machine(args.note)
    tag = args.tag or (f"quick-{info['platform']}" if args.quick else
                       re.sub(r"^nvidia-", "", re.sub(
                           r"[^a-z0-9]+", "-", info["device"].lower())))
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, f"gpu-jax-{tag}")
    results = {"machine": info, "quick": args.quick,
               "sizes": {k: v for k, v in sizes.items()},
               "repeats": args.repeats, "min_sample_ms": args.min_sample_ms,
               "budget_s": args.budget_s, "skipped_sections": [],
               "wall_s": 0.0, "section_s": {}}
    rng = np.random.default_rng(0)
    print(f"benchmarks.gpu_jax on {info['device']} ({info['platform']}); "
          f"JAX {info['jax']}, Keras {info['keras']}", flush=True)

    def save():
        results["wall_s"] = clock.elapsed()
        results["tensorflow_imported"] = "tensorflow" in sys.modules
        results["targets"] = [list(t) for t in targets(results)]
        write(base, results, argv)

    for section in SECTIONS:
        if section not in args.sections:
            continue
        if clock.left() <= 0:
            results["skipped_sections"].append(section)
            continue
        start = time.perf_counter()
        print(f"[{clock.elapsed():6.1f} s] {section} ...", flush=True)
        if section == "correctness":
            results[section] = correctness(sizes, rng)
        elif section == "placements":
            placements_check(sizes, rng,
                             results.setdefault("correctness", []), save)
        elif section == "train":
            results["matmul_flops"] = matmul_peak(sizes["matmul"], args)
            train(sizes, args, clock, results["matmul_flops"],
                  results.setdefault(section, {}), save)
        else:
            function = bandwidth if section == "bandwidth" else depth
            extra = (rng,) if section == "bandwidth" else ()
            function(sizes, args, clock, *extra,
                     results.setdefault(section, {}), save)
        results["section_s"][section] = time.perf_counter() - start
        save()
    results["plot"] = plot(results, base + ".png")
    write(base, results, argv)
    print(markdown(results, argv))
    print(f"wrote {base}.json, .md" + (", .png" if results["plot"] else ""))
    del jax
    failed = [c["check"] for c in results.get("correctness", [])
              if not c["passed"]]
    if failed:
        print("FAILED checks: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
