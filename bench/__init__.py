"""The load bench (see bench/run.py and docs/benchmarks.md)."""
