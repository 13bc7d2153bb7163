"""Provenance: the package versions a run records in its manifest (and the report shows)."""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from pathlib import Path

#: packages whose versions the manifest records
PACKAGES = ("bayes-nqp", "pymc", "pytensor", "nutpie", "arviz", "arviz-base", "arviz-stats",
            "arviz-plots", "pyfixest", "diff-diff", "numpy", "pandas", "xarray", "matplotlib",
            "scipy", "numba", "statsmodels", "formulaic", "bambi", "dask", "distributed", "simuk")
#: the pinned versions `make` installs (constraints.txt); its digest goes into the manifest
CONSTRAINTS = Path(__file__).resolve().parents[2] / "constraints.txt"


def versions() -> dict:
    """``{"python": ..., "<package>": version or None}`` for :data:`PACKAGES`, and the sha256 of
    ``constraints.txt`` when the package runs from a checkout that has it."""
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    if CONSTRAINTS.exists():
        out["constraints_sha256"] = hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()
    return out
