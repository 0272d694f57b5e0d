"""Benchmarks and the occ-bench CLI; results are JSON files, never timed tests."""
