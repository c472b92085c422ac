"""The version of explearn, in a module of its own: every module that records it (checkpoints, run results, the
cluster check) imports it from here, not from the package's ``__init__``, whose import order it would depend on."""

__version__ = "0.1.0"
