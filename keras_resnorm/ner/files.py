"""Crash-safe writes: the one home of the write, fsync, rename rule.

A file or directory is written under a temporary name beside its final
path, flushed to disk, and renamed into place, so a kill at any moment
leaves either the previous content or the new one, never a partial file.
Temporary directories are hidden and non-numeric (`.tmp-<name>-<pid>`), so
TF Serving and the backup scan never take one for a version or a backup;
`remove_leftovers` deletes those a kill left behind.
"""

import json
import os
import shutil

__all__ = [
    "TMP_PREFIX",
    "atomic_write",
    "atomic_write_json",
    "fsync_path",
    "fsync_tree",
    "publish_directory",
    "remove_leftovers",
    "tmp_directory",
    "tmp_name",
]

TMP_PREFIX = ".tmp-"


def fsync_path(path):
    """Flush a file, or a directory's entries, to disk."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) * os.path.isdir(path)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root):
    """Flush every file under `root`, then `root` itself."""
    for folder, _, names in os.walk(root):
        for name in names:
            fsync_path(os.path.join(folder, name))
    fsync_path(root)


def atomic_write(path, write, suffix=""):
    """Call `write(tmp)` to write a file, then move it to `path` atomically.

    `suffix` ends the temporary name, for writers that insist on one
    (`model.save` needs `.keras`).
    """
    tmp = f"{path}.tmp{suffix}"
    write(tmp)
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(os.path.dirname(os.path.abspath(path)))


def atomic_write_json(path, value):
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(value, f, indent=2, sort_keys=True)

    atomic_write(path, write)


def tmp_name(parent, name):
    """The hidden path in `parent` where this process builds `name`."""
    return os.path.join(parent, f"{TMP_PREFIX}{name}-{os.getpid()}")


def tmp_directory(parent, name):
    """A fresh, empty `tmp_name(parent, name)` directory."""
    tmp = tmp_name(parent, name)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    return tmp


def publish_directory(tmp, final):
    """Flush the directory built in `tmp` and rename it to `final`."""
    fsync_tree(tmp)
    os.rename(tmp, final)
    fsync_path(os.path.dirname(os.path.abspath(final)))


def remove_leftovers(parent):
    """Delete the temporary directories that killed writers left."""
    if os.path.isdir(parent):
        for name in os.listdir(parent):
            if name.startswith(TMP_PREFIX):
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
