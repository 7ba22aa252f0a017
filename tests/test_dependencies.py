"""Every package the code imports is one that setup.cfg declares."""

import ast
import configparser
import importlib.metadata
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _name(requirement):
    return re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0] \
        .lower().replace("_", "-")


def declared():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    options = config["options"]
    names = {_name(r) for r in options["install_requires"].splitlines()
             if r.strip()}
    extras = {}
    for extra, text in config["options.extras_require"].items():
        extras[extra] = {_name(r) for r in text.splitlines() if r.strip()}
    return names, extras


def imported(folder):
    """Top-level module names imported anywhere under `folder`."""
    names = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found = [node.module]
            else:
                continue
            for module in found:
                names.setdefault(module.split(".")[0], path.relative_to(ROOT))
    return names


def distributions(module):
    mapping = importlib.metadata.packages_distributions()
    return {d.lower().replace("_", "-") for d in mapping.get(module, [])}


def test_package_imports_are_declared():
    runtime, extras = declared()
    allowed = runtime | extras["ner"] | extras["nlp"] | extras["serving"]
    missing = []
    for module, where in imported("keras_resnorm").items():
        if module in sys.stdlib_module_names or module == "keras_resnorm":
            continue
        dists = distributions(module)
        assert dists, f"{module} (imported in {where}) is not installed"
        if not dists & allowed:
            missing.append(f"{module} ({sorted(dists)}, imported in {where})")
    assert not missing, "imported but not declared: " + "; ".join(missing)


def test_the_test_extra_covers_the_ner_extra():
    _, extras = declared()
    assert extras["ner"] <= extras["test"]
