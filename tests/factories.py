"""The test factory lives in bench/fixtures.py, shared with the benchmarks."""
from bench.fixtures import Factory

__all__ = ["Factory"]
