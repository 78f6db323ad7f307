"""Architecture and hyper-parameter search with Optuna (the keras-tuner role): specs, spaces, runs and reports.

``load_search_spec`` / ``find_search`` read a spec, ``with_budget`` applies a budget and overrides, ``run_search``
runs or resumes it, ``write_search`` writes its tables, figures and report. Optuna is imported only when a search
runs (``pip install 'mtlab[analysis]'``).
"""

from mtlab.search.report import write_search
from mtlab.search.run import SearchOutcome, TrialRecord, run_search
from mtlab.search.spec import SearchSpec, builtin_search_paths, find_search, load_search_spec, with_budget

__all__ = [
    "SearchOutcome",
    "SearchSpec",
    "TrialRecord",
    "builtin_search_paths",
    "find_search",
    "load_search_spec",
    "run_search",
    "with_budget",
    "write_search",
]
