"""Expected failures of the NER showcase: what a user can fix.

Each is a `UsageError`, whose message names the file or setting and what
was expected. The command line prints that message in one line and exits
with status 2, without a traceback (`--debug`, or `KERAS_RESNORM_DEBUG=1`,
shows it). Anything else that goes wrong is a bug and keeps its traceback.
Each class also derives from the built-in exception a caller would catch
without knowing this module (`ValueError`, `FileExistsError`, ...).
"""

import os
import zipfile

__all__ = [
    "ConfigError",
    "CorpusError",
    "ExportError",
    "ModelFileError",
    "RunDirError",
    "UsageError",
    "load_keras_archive",
]


class UsageError(Exception):
    """An expected failure; the message is the one line the CLI prints."""


class CorpusError(UsageError, ValueError):
    """A corpus file is missing or malformed; the message names file and line."""


class ConfigError(UsageError, ValueError):
    """A training setting that cannot work; the message names it."""


class ModelFileError(UsageError, ValueError):
    """A saved tagger that is missing, not a `.keras` archive, or unreadable."""


class RunDirError(UsageError, FileExistsError):
    """A run directory that holds a finished run or a different one."""


class ExportError(UsageError, FileExistsError):
    """An export base or version that cannot be written (the version exists,
    or the base path is taken by a file or cannot be created)."""


def load_keras_archive(path):
    """`keras.saving.load_model(path, safe_mode=True)`, failing in one line.

    Keras reports a corrupt `.keras` file as "File not found"; this says
    what is wrong: no such file, a directory, another suffix, a file that is
    not a zip archive (a truncated or corrupt save), or an archive Keras
    cannot load (the cause follows the message).
    """
    import keras

    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: model file not found")
    if os.path.isdir(path):
        raise ModelFileError(
            f"{path}: is a directory; expected a .keras model archive (a "
            "SavedModel export is for TF Serving and is not loaded here)")
    if not path.endswith(".keras"):
        raise ModelFileError(
            f"{path}: expected a .keras model archive (the file name must "
            "end in .keras)")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{path}: not a Keras model archive (a .keras file is a zip "
            "archive; this one is corrupt or truncated)")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # the archive's content, not our code
        reason = str(error).strip().splitlines()
        raise ModelFileError(
            f"{path}: not a loadable Keras model archive "
            f"({type(error).__name__}: {reason[0] if reason else ''})"
        ) from error
