"""The residual placements: one registry of names, aliases and what each
placement does, read by the layers, the NER model and command line, and the
benchmarks.

```
name       where the norm sits                          widens the stream
pre        y = x + F(N(x))                                  no
post       y = N(x + F(x))                                  no
sandwich   y = x + N2(F(N1(x)))     (alias "peri")          no
deepnorm   y = N(alpha * x + F(x))                          no
none       y = x + F(x)                                     no
hyper      n streams mixed by learned weights (HC)          yes
mhc        hyper with doubly stochastic mixing (mHC)        yes
```

`pre` and `sandwich` normalize the block's input and leave the stream
unnormalized, so a stack of them ends with a final norm; so do the widened
placements, whose stream is averaged and normalized after the stack.

Command-line shortcuts name a placement with a branch scale: `rezero` is
`none` with ReZero's learned scalar, `layerscale` is `pre` with LayerScale
(see `ResidualWrapper`'s `branch_scale`).
"""

from keras_resnorm._checks import check_choice

__all__ = [
    "ALIASES",
    "ENCODER",
    "NORMALIZES_INPUT",
    "SHORTCUTS",
    "STREAM",
    "WRAPPER",
    "canonical",
    "is_pre_norm",
    "names",
    "needs_final_norm",
    "widens_stream",
]

# The placements of one residual step (`ResidualWrapper`).
WRAPPER = ("pre", "post", "sandwich", "deepnorm", "none")
# The placements that widen the stream to n copies (`HyperConnection`).
STREAM = ("hyper", "mhc")
# What `TransformerEncoder` and the NER model take.
ENCODER = WRAPPER + STREAM
ALIASES = {"peri": "sandwich"}
# Placements that normalize the input of each step.
NORMALIZES_INPUT = ("pre", "sandwich")
SHORTCUTS = {
    "rezero": {"placement": "none", "branch_scale": "rezero"},
    "layerscale": {"placement": "pre", "branch_scale": "layerscale"},
}


def names(allowed=ENCODER):
    """`allowed` with the aliases that resolve into it, for messages and
    choices."""
    return tuple(allowed) + tuple(
        alias for alias, name in ALIASES.items() if name in allowed)


def canonical(placement, allowed=ENCODER, argument="placement",
              error=ValueError):
    """The placement `placement` names (an alias resolved), checked
    against `allowed`; the error lists every name `allowed` accepts."""
    name = ALIASES.get(placement, placement) \
        if isinstance(placement, str) else placement
    if isinstance(name, str) and name in allowed:
        return name
    return check_choice(argument, placement, names(allowed), error=error)


def is_pre_norm(placement):
    """Whether `placement` (an alias too) normalizes each step's input and
    leaves the stream unnormalized, so that a stack of it needs a final
    norm."""
    return ALIASES.get(placement, placement) in NORMALIZES_INPUT


def widens_stream(placement):
    """Whether `placement` runs on n widened streams (hyper-connections)."""
    return placement in STREAM


def needs_final_norm(placement):
    """Whether a stack of `placement` ends with a norm of its own."""
    return is_pre_norm(placement) or widens_stream(placement)


def cli_choices():
    """What `--placement` takes: every placement, alias and shortcut."""
    return names(ENCODER) + tuple(SHORTCUTS)


def keyword_arguments(name, error=ValueError):
    """The layer keyword arguments a `--placement` name stands for:
    `{"placement": ...}`, plus `branch_scale` for a shortcut."""
    check_choice("placement", name, cli_choices(), error=error)
    if name in SHORTCUTS:
        return dict(SHORTCUTS[name])
    return {"placement": canonical(name)}
