"""Reproducible benchmarks: each script measures phalanx against a raw baseline in one run."""
