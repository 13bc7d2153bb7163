"""Output paths built from user text: one sanitiser, and every write checked to stay under --out.

User text (group names and levels from the column map, column names, prior-set names) may hold
``..``, slashes, control characters or anything else. Two rules keep it from choosing where files
go:

* :func:`safe_filename` turns any text into one file-name component (no separator, no leading
  dot, bounded length; a short hash keeps two texts that sanitise alike apart).
* :func:`output_root` registers the folder a command writes into; every writer in
  ``results.py`` (and the netCDF writers) calls :func:`check_under`, which raises
  :class:`~bayes_nqp.errors.UnsafePathError` for a path outside the innermost registered folder.

netCDF (HDF5) forbids ``/`` and control characters in variable and dimension names, and
trailing white space; :func:`nc_name` and :func:`nc_unname` encode them reversibly (``%`` →
``%25``, ``/`` → ``%2F``, …), so plain names are stored unchanged. A netCDF name must also
start with a letter, digit or ``_``: :func:`nc_dim` gives such a name for a dimension.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from .errors import UnsafePathError

#: longest file-name component made from user text (before the hash suffix)
MAX_COMPONENT = 80

_ROOTS: ContextVar[tuple[Path, ...]] = ContextVar("bayes_nqp_output_roots", default=())
_UNSAFE = re.compile(r"[^\w\-]+", flags=re.UNICODE)


def safe_filename(text: object) -> str:
    """``text`` as one safe file-name component.

    Letters and digits of any script, ``_`` and ``-`` are kept; every other run of characters
    (dots and separators included: no ``..``, no hidden file, no second suffix) becomes ``_``.
    When the result differs from ``text`` an 8-character hash of ``text`` is appended, so that
    ``a/b`` and ``a_b`` do not collide.
    """
    raw = str(text)
    name = unicodedata.normalize("NFC", raw)
    name = _UNSAFE.sub("_", name)
    if len(name) > MAX_COMPONENT:
        name = name[:MAX_COMPONENT]
    if name != raw or not name:
        digest = hashlib.sha1(raw.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        name = f"{name or 'x'}-{digest}"
    return name


def _norm(path: str | Path) -> Path:
    """Absolute and lexically normalised (``..`` folded; symlinks are the user's own)."""
    return Path(os.path.normpath(os.path.abspath(os.fspath(path))))


def is_under(path: str | Path, root: str | Path) -> bool:
    p, r = _norm(path), _norm(root)
    return p == r or r in p.parents


@contextmanager
def output_root(root: str | Path):
    """Within this block every checked write must land under ``root``.

    A root registered inside another must itself lie under it (a fit saved inside a run folder).
    """
    root = _norm(root)
    roots = _ROOTS.get()
    if roots and not is_under(root, roots[-1]):
        raise UnsafePathError(f"{root} is outside the output folder {roots[-1]}")
    token = _ROOTS.set((*roots, root))
    try:
        yield root
    finally:
        _ROOTS.reset(token)


def check_under(path: str | Path) -> Path:
    """``path`` itself, after checking it stays under the innermost :func:`output_root`."""
    roots = _ROOTS.get()
    if roots and not is_under(path, roots[-1]):
        raise UnsafePathError(
            f"refusing to write {_norm(path)}: it is outside the output folder {roots[-1]} "
            "(a name in the column map or data would have chosen the path)")
    return Path(path)


def child(root: str | Path, *parts: object) -> Path:
    """``root / safe_filename(part) / …``, checked to stay under ``root``."""
    path = Path(root).joinpath(*(safe_filename(p) for p in parts))
    if not is_under(path, root):  # cannot happen with safe components; kept as the invariant
        raise UnsafePathError(f"{path} is outside {root}")
    return path


def nc_name(name: str) -> str:
    """``name`` without the characters netCDF refuses (reversible; plain names unchanged)."""
    s = str(name)
    stripped = s.rstrip()
    body = re.sub(r"[%/\x00-\x1f\x7f]", lambda m: f"%{ord(m.group(0)):02X}", stripped)
    tail = "".join(f"%{ord(c):02X}" if ord(c) < 256 else c for c in s[len(stripped):])
    return body + tail


def nc_unname(name: str) -> str:
    return re.sub(r"%([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), str(name))


def nc_dim(name: str) -> str:
    """A valid netCDF dimension name for ``name``: :func:`nc_name`, prefixed with ``g_`` when it
    would not start with a letter, digit or ``_``."""
    s = nc_name(name)
    return s if s and (s[0].isalnum() or s[0] == "_") else f"g_{s}"
