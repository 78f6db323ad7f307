"""User-facing errors.

Anything raised as a :class:`MtlabError` is the user's to fix (a config key, a data file, a flag): the command line
prints its message on one line and exits with code 2, without a traceback. Everything else is a bug in mtlab.
"""


class MtlabError(Exception):
    """An error the user can fix; its message names the thing to fix and how."""


class ConfigError(MtlabError):
    """A configuration value is unknown, of the wrong type or impossible; the message starts with its key path."""


class DataError(MtlabError):
    """A dataset file is missing, truncated or corrupt; the message names the file and how to get it."""
