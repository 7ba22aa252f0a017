"""Argument checks: the one home of the rules the layers, the ops and the
NER configs share.

Each check returns the value it accepted and raises an error that names the
argument and the value received. `error` picks the class of a bad value:
the layers and ops raise `ValueError`, the NER configs pass `ConfigError`
(a `ValueError` too), so one rule serves both. A wrong type raises
`TypeError` where the layers always have (`check_rate`).

`True` and `False` are never numbers here, and `1` is never `True`: a
flag's choices tell them apart.
"""


import math


def _is_number(value, kind=(int, float)):
    return isinstance(value, kind) and not isinstance(value, bool)


def _is_finite(value, kind=(int, float)):
    return _is_number(value, kind) and math.isfinite(value)


def check_rate(name, value, error=ValueError, type_error=TypeError):
    """A probability-like rate in [0, 1), as a float."""
    if not _is_number(value):
        raise type_error(
            f"{name} must be a float in [0, 1). Received: {name}={value!r}")
    if not 0.0 <= value < 1.0:
        raise error(f"{name} must be in [0, 1). Received: {name}={value!r}")
    return float(value)


def check_positive(name, value, integer=False, optional=False,
                   error=ValueError):
    """A finite number (an int with `integer`) above 0; with `optional`,
    `None` too."""
    if optional and value is None:
        return value
    if not _is_finite(value, int if integer else (int, float)) \
            or not value > 0:
        what = "a positive int" if integer else "a positive number"
        what += " or None" if optional else ""
        raise error(f"{name} must be {what}. Received: {name}={value!r}")
    return value


def check_number(name, value, error=TypeError):
    """Any finite number (not a bool), as a float."""
    if not _is_finite(value):
        raise error(f"{name} must be a number. Received: {name}={value!r}")
    return float(value)


def check_non_negative(name, value, error=ValueError):
    """A finite number (not a bool) of at least 0."""
    if not _is_finite(value) or value < 0:
        raise error(
            f"{name} must be a number >= 0. Received: {name}={value!r}")
    return value


def check_int(name, value, minimum, below=None, error=ValueError):
    """An int (not a bool) of at least `minimum` (and under `below`)."""
    if not _is_number(value, int) or value < minimum:
        raise error(
            f"{name} must be an int >= {minimum}. Received: {name}={value!r}")
    if below is not None and value >= below:
        raise error(
            f"{name} must be below {below}. Received: {name}={value!r}")
    return value


def _same_choice(value, choice):
    # 1 == True and 0 == False in Python; a flag's choices tell them apart.
    if isinstance(value, bool) or isinstance(choice, bool):
        return value is choice
    return type(value) is type(choice) and value == choice


def check_choice(name, value, choices, error=ValueError):
    """`value` when it is one of `choices` (`1` is not `True`)."""
    if not any(_same_choice(value, c) for c in choices):
        raise error(f"{name} must be one of {tuple(choices)}. "
                    f"Received: {name}={value!r}")
    return value


FUSED_CHOICES = ("auto", True, False)


def check_fused(fused):
    """`fused=` of every norm layer and kernel: `"auto"`, `True` or `False`."""
    return check_choice("fused", fused, FUSED_CHOICES)
