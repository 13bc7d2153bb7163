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


class OutputError(BayesNQPError):
    """The output folder cannot be used: an existing file, a folder that cannot be written, or
    one another run holds (:class:`FolderLocked`)."""


class FolderLocked(OutputError):
    """Another bayes-nqp process is writing into the same output folder."""


class Interrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT (Ctrl-C) or SIGTERM. A ``KeyboardInterrupt``, so that every
    clean-up written for Ctrl-C runs for both; ``exit_code`` is 128 + the signal number (130 for
    SIGINT, 143 for SIGTERM)."""

    def __init__(self, signum: int = 2, message: str = ""):
        import signal as _signal

        self.signum = int(signum)
        self.signal_name = _signal.Signals(self.signum).name
        self.exit_code = 128 + self.signum
        super().__init__(message or f"interrupted by {self.signal_name}")
