"""What the `keras-resnorm` command sets before TensorFlow is imported.

TensorFlow prints its C++ start-up lines when it loads (on a machine
without a GPU: `Could not find cuda drivers ...` and `E0000 ... failed call
to cuInit: ... UNKNOWN ERROR (303)`), which a new user reads as a failure.
The command keeps them out unless `--debug` or `--verbose` is given or
`KERAS_RESNORM_DEBUG` is set. The package imports TensorFlow in its own
`__init__`, before the command's `main` runs, so `__init__` wraps its
imports in `quiet_start_up()`, which acts in the command's own process only:
a program that imports the library owns its logging.
"""

import contextlib
import os
import sys
import tempfile

COMMAND = "keras-resnorm"
MODULE = "keras_resnorm.ner.cli"
DEBUG_ENV = "KERAS_RESNORM_DEBUG"
LOUD_FLAGS = ("--debug", "--verbose")


def is_command_line():
    """Whether this process is the `keras-resnorm` command (or
    `python -m keras_resnorm.ner.cli`)."""
    if os.path.basename(sys.argv[0] if sys.argv else "") == COMMAND:
        return True
    original = list(getattr(sys, "orig_argv", []))
    return any(original[i:i + 2] == ["-m", MODULE]
               for i in range(len(original)))


def loud(argv=None):
    """Whether the command line asked for TensorFlow's own output."""
    argv = sys.argv[1:] if argv is None else argv
    return any(a in LOUD_FLAGS for a in argv) or \
        os.environ.get(DEBUG_ENV, "") not in ("", "0")


@contextlib.contextmanager
def quiet_start_up():
    """In the command's process, unless it is loud: TensorFlow's C++ log
    level set to errors only and its start-up lines (written to file
    descriptor 2 before its logging is set up) held back; they are
    written out after all if the imports fail."""
    if not is_command_line() or loud() or "tensorflow" in sys.modules:
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
