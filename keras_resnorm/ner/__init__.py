"""The NER showcase: CoNLL-style data, a tagger of keras_resnorm blocks,
training, entity-level evaluation and a Python inference API."""
