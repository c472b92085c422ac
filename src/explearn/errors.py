"""The kinds of user error explearn reports: bad configuration, bad data, bad checkpoints, an unusable cluster.

Both are ``ValueError`` subclasses, so callers that already catch ``ValueError`` keep working.
"""


class ConfigError(ValueError):
    """A setting, name or option is unknown, of the wrong type or out of range."""


class DataError(ValueError):
    """A dataset's tensors or files are malformed (shape, dtype, range, NaN, missing file)."""


class CheckpointError(DataError):
    """A file is not an explearn checkpoint, was changed after saving, or is from an incompatible version."""


class ClusterError(ConfigError):
    """The cluster cannot be used: ``distributed`` is missing, the scheduler cannot be reached, or its workers
    cannot run explearn. A ``ConfigError``, so the command line reports it as a user error."""
