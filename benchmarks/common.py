"""Machine description and result writing shared by the benchmarks."""

import datetime
import json
import os
import platform
import re
import shlex
import sys

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine():
    """What the numbers were measured on."""
    import keras
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "gpus": gpus,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"),
    }


def machine_tag():
    """Short file-name tag: `cpu<N>` or `gpu`."""
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return "gpu"
    return f"cpu{os.cpu_count()}"


def command(module, argv=None):
    """The command that ran a benchmark, quoted so that a shell runs it
    again as it ran (`--variant case="--case-augmentation 0.3"` is one
    argument); `argv=None` means this process's."""
    args = sys.argv[1:] if argv is None else list(argv)
    return "python -m " + shlex.join([module] + args)


def header(title, module, argv, machine):
    """The markdown opening every result file shares: title, command, machine."""
    return (f"# {title}\n\nCommand: `{command(module, argv)}`\n\n"
            f"Machine: {machine['cpu']}, {machine['cores']} cores, GPUs "
            f"{machine['gpus'] or 'none'}; TF {machine['tensorflow']}, Keras "
            f"{machine['keras']}; {machine['date']}\n\n")


def markdown_table(rows, columns):
    head = "| " + " | ".join(columns) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    body = ["| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |"
            for row in rows]
    return "\n".join([head, rule] + body)


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def write(name, payload, markdown, echo=True):
    """`results/<name>.json` and `.md`, each replaced whole (a kill while
    writing leaves the previous version, never half a file)."""
    os.makedirs(RESULTS, exist_ok=True)
    base = os.path.join(RESULTS, re.sub(r"[^\w.-]", "_", name))
    for suffix, text in ((".json", json.dumps(payload, indent=2,
                                               default=float)),
                         (".md", markdown.rstrip() + "\n")):
        with open(base + suffix + ".tmp", "w") as f:
            f.write(text)
        os.replace(base + suffix + ".tmp", base + suffix)
    if echo:
        print(markdown)
        print(f"wrote {base}.json and {base}.md")
