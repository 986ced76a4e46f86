"""Benchmarks of the hot path and of the production server (python -m benchmarks.run)."""
