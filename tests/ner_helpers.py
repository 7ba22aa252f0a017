"""Small NER configurations shared by the NER, export and serving tests."""

from keras_resnorm.ner.model import ModelConfig
from keras_resnorm.ner.train import TrainConfig


def tiny_config(run_dir, **overrides):
    model = ModelConfig(layers=1, heads=2, d_model=32, intermediate_dim=64,
                        word_dim=16, char_dim=8, char_filters=16,
                        max_length=32)
    values = dict(run_dir=str(run_dir), epochs=2, batch_size=16,
                  learning_rate=3e-3, patience=5, model=model)
    values.update(overrides)
    return TrainConfig(**values)
