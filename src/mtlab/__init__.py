"""mtlab: run, compare and explain multi-task learning experiments."""

__version__ = "0.1.0"
