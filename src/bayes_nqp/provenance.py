"""Provenance: the package versions a run records in its manifest (and the report shows)."""

from __future__ import annotations

import platform
from importlib import metadata

#: packages whose versions the manifest records
PACKAGES = ("bayes-nqp", "pymc", "pytensor", "nutpie", "arviz", "arviz-base", "arviz-stats",
            "arviz-plots", "pyfixest", "diff-diff", "numpy", "pandas", "xarray", "matplotlib")


def versions() -> dict:
    """``{"python": ..., "<package>": version or None}`` for :data:`PACKAGES`."""
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out
