#!/usr/bin/env bash
# The benchmark suites on a CUDA machine, as one command (about 10 minutes):
#   pip install -e ".[test,gpu]" && bash benchmarks/gpu.sh
# Writes results/norms-gpu.{json,md}, results/encoder-gpu.{json,md} and
# results/ner-precision-gpu.{json,md}.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import tensorflow as tf, sys; sys.exit(0 if tf.config.list_physical_devices('GPU') else 'no GPU visible to TensorFlow')"
python -m benchmarks.norms --shapes 8192x512,16384x1024,16384x4096 --repeats 9 --tag gpu
python -m benchmarks.encoder --tag gpu
# Mixed precision on the NER tagger (step time and F1 after 3 epochs).
python -m benchmarks.ner_precision --epochs 3 --run-root /tmp/keras-resnorm-bench
