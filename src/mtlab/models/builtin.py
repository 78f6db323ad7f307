"""Importing this module registers mtlab's built-in trunks and model kinds."""

from mtlab.models import cross_stitch, dselect_k, ltb, mmoe, mtan, multitask, pairs, ple, trunks  # noqa: F401  (import registers them)
