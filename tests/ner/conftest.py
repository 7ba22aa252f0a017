import os

import pytest

from keras_resnorm.ner import data
from keras_resnorm.ner.model import ModelConfig
from keras_resnorm.ner.train import TrainConfig


@pytest.fixture(scope="session")
def builtin_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("builtin")
    directory = data.write_builtin_corpus(str(root / "corpus"),
                                          sentences=(300, 80, 80))
    return data.load_conll_dir(directory, cache_dir=str(root / "tfds"))


def tiny_config(run_dir, **overrides):
    model = ModelConfig(layers=1, heads=2, d_model=32, intermediate_dim=64,
                        word_dim=16, char_dim=8, char_filters=16,
                        max_length=32)
    values = dict(run_dir=str(run_dir), epochs=2, batch_size=16,
                  learning_rate=3e-3, patience=5, model=model)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, builtin_corpus):
    from keras_resnorm.ner.train import train

    run_dir = tmp_path_factory.mktemp("run") / "ner"
    tagger, metrics = train(tiny_config(run_dir, epochs=3), builtin_corpus)
    return run_dir, tagger, metrics


@pytest.fixture
def conll_dir(tmp_path):
    def write(files):
        for name, text in files.items():
            mode = "wb" if isinstance(text, bytes) else "w"
            with open(os.path.join(tmp_path, name), mode) as f:
                f.write(text)
        return str(tmp_path)
    return write
