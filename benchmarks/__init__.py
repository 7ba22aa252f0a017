"""Measured comparisons (not tests). Each module is runnable with
`python -m benchmarks.<name>` and writes JSON + markdown to results/."""
