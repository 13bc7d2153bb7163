"""Logging hygiene: the package logs through named loggers only and leaves the root logger alone.

Some dependencies configure the root logger when imported (pyfixest 0.60's
``feols_compressed_`` calls ``logging.basicConfig(level=INFO)`` at import time, which floods a
notebook with INFO lines after ``bn.replicate``). Every import of such a library in this package
goes through :func:`root_logger_kept`, which undoes whatever the import did to the root logger.
Only the CLI configures logging.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager


@contextmanager
def root_logger_kept():
    """Restore the root logger's handlers and level on exit (for imports of noisy libraries)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
        for h in handlers:
            if h not in root.handlers:
                root.addHandler(h)
        root.setLevel(level)
