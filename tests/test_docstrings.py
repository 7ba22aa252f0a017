"""The `Example:` sections of every public docstring run as doctests."""

import doctest
import importlib
import pkgutil

import pytest

import keras_resnorm

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(keras_resnorm.__path__,
                                          "keras_resnorm.")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(module, name):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} doctest(s) failed in {name}"


def test_every_public_layer_has_an_example_and_reference():
    for name in keras_resnorm.__all__:
        obj = getattr(keras_resnorm, name)
        if isinstance(obj, type):
            doc = obj.__doc__ or ""
            for section in ("Args:", "Example:", "Reference:", "```"):
                assert section in doc, (name, section)
