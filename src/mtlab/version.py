"""mtlab's version string, where every layer may read it (the package's ``__init__`` is the public façade above)."""

__version__ = "0.1.0"
