"""The project's named exceptions. Library code raises these; the CLI turns them into messages."""

from __future__ import annotations


class BayesNQPError(Exception):
    """Base class: a problem the user can act on (bad input, bad spec), not a bug."""


class DataError(BayesNQPError):
    """The panel or its column map cannot be used. ``report`` holds every problem found."""

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report


class ColumnMapError(DataError):
    """The column map (TOML) is malformed or names roles that make no sense."""


class SpecError(BayesNQPError):
    """A model spec or prior set (TOML under models/) is malformed."""


class ModelError(BayesNQPError):
    """A model cannot be fitted on this panel (a role it needs is missing, say)."""


class SectionSkipped(BayesNQPError):
    """A section cannot run on this data; the message is the reason written under ``skipped``."""


class UnsafePathError(BayesNQPError):
    """A file would be written outside the output folder (a name from user text chose the path)."""
