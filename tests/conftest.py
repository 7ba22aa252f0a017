import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Lets test modules import the shared `layer_check` helper.
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Each test starts from the float32 policy and a fixed seed."""
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture(scope="session")
def builtin_corpus(tmp_path_factory):
    from keras_resnorm.ner import data

    root = tmp_path_factory.mktemp("builtin")
    directory = data.write_builtin_corpus(str(root / "corpus"),
                                          sentences=(300, 80, 80))
    return data.load_conll_dir(directory, cache_dir=str(root / "tfds"))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, builtin_corpus):
    """A tiny tagger trained 5 epochs on the built-in corpus (max_length 32,
    so sentences longer than 32 tokens exercise the window policy)."""
    from keras_resnorm.ner.train import train
    from ner_helpers import tiny_config

    run_dir = tmp_path_factory.mktemp("run") / "ner"
    tagger, metrics = train(tiny_config(run_dir, epochs=5), builtin_corpus)
    return run_dir, tagger, metrics


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, builtin_corpus):
    """One run of the demo command (`keras-resnorm ner demo`) with a small
    configuration on the built-in corpus, shared by every test that needs
    a demo or an export: `(run_dir, what it printed)`."""
    import contextlib
    import io

    from keras_resnorm.ner import cli

    run_dir = tmp_path_factory.mktemp("demo") / "ner-demo"
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, \
            contextlib.redirect_stdout(printed):
        patch.setenv("KERAS_RESNORM_CACHE", str(tmp_path_factory.mktemp("c")))
        assert cli.main([
            "ner", "demo", "--data-dir", builtin_corpus.source, "--run-dir",
            str(run_dir), "--epochs", "5", "--layers", "1", "--heads", "2",
            "--d-model", "32", "--intermediate-dim", "64", "--max-length",
            "32", "--batch-size", "16", "--learning-rate", "3e-3",
            # IOBES inside (the default, named so that the export tests
            # keep checking that the outputs are IOB2 all the same).
            "--model-tags", "iobes"]) == 0
    return run_dir, printed.getvalue()


@pytest.fixture(scope="session")
def exported(demo_run):
    """The export the demo wrote: (base, version path, the demo's
    best.keras)."""
    run_dir, _ = demo_run
    base = run_dir / "serving" / "ner"
    return base, str(base / "1"), str(run_dir / "best.keras")
