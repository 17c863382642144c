"""Errors snnergy raises on bad input: one clear message that says what and where.

Every error a user can cause (a missing file, a typo in a config, an unsupported layer) is a
:class:`SnnergyError`; the command line prints its message and exits with code 2, never a
traceback.
"""

from __future__ import annotations


class SnnergyError(Exception):
    """Bad input or an unusable state, described for the user.

    Example:
        >>> str(SnnergyError("digits: unknown split 'val'"))
        "digits: unknown split 'val'"
    """


class DataError(SnnergyError):
    """A dataset file is missing, truncated or inconsistent."""


class ConfigError(SnnergyError):
    """A configuration key, value or type is wrong."""


class ConversionError(SnnergyError):
    """A model holds a layer the DNN-to-SNN converter does not support."""


class TrainingError(SnnergyError):
    """Training diverged (NaN or inf loss) or could not start."""


class CheckpointError(SnnergyError):
    """A checkpoint folder is missing, incomplete or does not match its config."""


class ResultsError(SnnergyError):
    """A results file (``results.json``) or the sweep store holds something that is not a result record."""
