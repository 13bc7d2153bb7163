"""Estimands as a labelled ``xarray.Dataset``, and the one place that names them.

A model's ``estimands(idata)`` returns a Dataset of draws on the outcome's scale: one variable
per quantity, with dims ``(chain, draw)`` and at most one more real dim — ``beta(event_time)``,
``tau_<g>(<g>)`` and ``contrast_<g>(<g>_pair)``, ``indirect(mediator)``, ``gamma(threshold)``,
``att_cohort(cohort)`` … Build one with :func:`scalar`, :func:`indexed` and :func:`dataset`.
A variable's attrs say how its elements are named in ``summary.json``'s ``params``:

``stem``     the quantity (``"beta"``; default: the variable's name);
``label``    the flat name's template, ``{}`` where the coordinate goes (``"beta[e={}]"``);
``reverse``  (optional) a coordinate along the dim that holds, per element, the coordinate of the
             element with the opposite sign (a contrast b − a has a − b): claims may name either.

:func:`flatten` is the only function that turns dims into those flat names; :func:`index` gives,
per flat name, where it lives (``var``, ``stem``, ``dim``, ``coord`` and the other coordinates
along the dim). The index is saved in ``summary.json`` (``estimand_index``), so that the readers
of saved summaries (the report's figures, claims, tables) select estimands by dim and coordinate
(:func:`select`, :func:`stem_of`) instead of reading the names. ``estimands.nc`` holds the Dataset
with its dims (:func:`write`, :func:`read`); the fit's DataTree holds it as the group
``estimands``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from .paths import nc_dim, nc_name, nc_unname

#: the sample dims every estimand has
SAMPLE_DIMS = ("chain", "draw")
#: the summary.json key that holds :func:`index`
INDEX_KEY = "estimand_index"


def scalar(draws, **attrs) -> xr.DataArray:
    """A scalar estimand: ``draws`` of shape (chain, draw)."""
    return xr.DataArray(np.asarray(draws, dtype=float), dims=SAMPLE_DIMS, attrs=attrs)


def indexed(draws, dim: str, values, label: str, *, aux: dict | None = None, **attrs) -> xr.DataArray:
    """An estimand along one dim: ``draws`` of shape (chain, draw, len(values)); ``label`` the flat
    name's template (``"beta[e={}]"``); ``aux``: other coordinates along the dim (name -> values)."""
    values = list(values)
    x = np.asarray(draws, dtype=float)
    if x.ndim == 2 and not values:
        x = x[..., :0]
    dim = nc_dim(dim)
    # the other coordinates are named <dim>__<name>: two variables' may share a name
    coords = {dim: values, **{_aux(dim, k): (dim, list(v)) for k, v in (aux or {}).items()}}
    return xr.DataArray(x, dims=(*SAMPLE_DIMS, dim), coords=coords, attrs={"label": label, **attrs})


def by_level(effects: dict, group: str, stem: str = "tau") -> xr.DataArray:
    """The effect at each level of a group variable, ``{level: (chain, draw) draws}``, along the
    dim ``<group>``: ``tau[<group>=<level>]``."""
    return indexed(stack(list(effects.values())), group, [str(k) for k in effects],
                   f"{stem}[{group}={{}}]", stem=stem, group=group)


def contrasts(effects: dict, group: str, stem: str = "contrast") -> xr.DataArray:
    """Every difference b − a of two levels (a before b in ``effects``' order) along the dim
    ``<group>_pair``: ``contrast[<group>:<b>-<a>]``, with the coordinates ``minuend`` (b),
    ``subtrahend`` (a) and ``reverse`` (a-b, the element's name the other way round)."""
    levels = list(effects)
    pairs = [(a, b) for i, a in enumerate(levels) for b in levels[i + 1:]]
    return indexed(stack([effects[b] - effects[a] for a, b in pairs]), f"{group}_pair",
                   [f"{b}-{a}" for a, b in pairs], f"{stem}[{group}:{{}}]", stem=stem, group=group,
                   reverse="reverse", aux={"minuend": [str(b) for _, b in pairs],
                                           "subtrahend": [str(a) for a, _ in pairs],
                                           "reverse": [f"{a}-{b}" for a, b in pairs]})


def _aux(dim: str, name: str) -> str:
    return f"{dim}__{nc_dim(name)}"


def stack(arrays: list) -> np.ndarray:
    """Draws of shape (chain, draw) each, stacked along a last axis (for :func:`indexed`)."""
    return np.stack([np.asarray(a, dtype=float) for a in arrays], axis=-1) if arrays else np.zeros((0, 0, 0))


def dataset(variables: dict[str, xr.DataArray]) -> xr.Dataset:
    """The estimands Dataset; variables keep their order (the order of ``params``). A variable
    along an empty dim (no event time, no threshold) is left out."""
    keep = {k: v for k, v in variables.items()
            if not any(v.sizes[d] == 0 for d in v.dims if d not in SAMPLE_DIMS)}
    ds = xr.Dataset(keep)
    ds.attrs["note"] = "estimand draws on the outcome's original scale"
    return ds


def from_flat(draws: dict[str, np.ndarray]) -> xr.Dataset:
    """A Dataset of scalar estimands from ``{name: (chain, draw) draws}``: what a model kept
    outside the package may still return, and what an ``estimands.nc`` written before the
    estimands had dims holds."""
    return dataset({k: scalar(v, label=str(k)) for k, v in draws.items()})


def _dim(da: xr.DataArray) -> str | None:
    extra = [d for d in da.dims if d not in SAMPLE_DIMS]
    if len(extra) > 1:
        raise ValueError(f"estimand {da.name!r} has more than one dim besides chain and draw: {extra}")
    return extra[0] if extra else None


def _py(v):
    return v.item() if isinstance(v, np.generic) else v


def _name(da: xr.DataArray, var: str, coord=None) -> str:
    label = da.attrs.get("label") or var
    return label if coord is None else label.replace("{}", str(_py(coord)))


def flatten(ds: xr.Dataset) -> dict[str, np.ndarray]:
    """The flat names of ``summary.json``'s ``params`` -> draws (chain, draw): the one function
    that names estimands."""
    out: dict[str, np.ndarray] = {}
    for var, da in ds.data_vars.items():
        dim = _dim(da)
        if dim is None:
            out[_name(da, str(var))] = np.asarray(da.transpose(*SAMPLE_DIMS).to_numpy(), dtype=float)
            continue
        x = da.transpose(*SAMPLE_DIMS, dim)
        for j, c in enumerate(da[dim].to_numpy()):
            out[_name(da, str(var), c)] = np.asarray(x[..., j].to_numpy(), dtype=float)
    return out


def index(ds: xr.Dataset) -> dict[str, dict]:
    """Flat name -> {var, stem, dim, coord, the other coordinates along the dim, the variable's
    other attrs (``group``), reverse}; for a scalar estimand {var, stem, attrs}. In the order of
    :func:`flatten`."""
    out: dict[str, dict] = {}
    for var, da in ds.data_vars.items():
        v = str(var)
        stem = da.attrs.get("stem", v)
        dim = _dim(da)
        attrs = {k: _py(a) for k, a in da.attrs.items() if k not in ("label", "stem", "reverse")}
        if dim is None:
            out[_name(da, str(var))] = {"var": v, "stem": stem, **attrs}
            continue
        aux = {str(k)[len(dim) + 2:]: da[k].to_numpy() for k, c in da.coords.items()
               if c.dims == (dim,) and k != dim and str(k).startswith(dim + "__")}
        rev = da.attrs.get("reverse")
        for j, c in enumerate(da[dim].to_numpy()):
            e = {"var": v, "stem": stem, **attrs, "dim": dim, "coord": _py(c)}
            e.update({k: _py(x[j]) for k, x in aux.items() if k != rev})
            if rev in aux:
                e["reverse"] = _name(da, str(var), aux[rev][j])
            out[_name(da, str(var), c)] = e
    return out


# ---- readers of saved summaries ---------------------------------------------------------------

def _index_of(summary) -> dict:
    if isinstance(summary, dict):
        return summary.get(INDEX_KEY) or {}
    return getattr(summary, "estimand_index", None) or {}


def _params_of(summary) -> dict:
    return (summary.get("params") if isinstance(summary, dict) else getattr(summary, "params", None)) or {}


def select(summary, *, dim: str | None = None, stem: str | None = None, var: str | None = None) -> list[tuple[str, dict]]:
    """The params of a summary (a summary.json dict or a ``FitSummary``) whose estimand lies along
    ``dim`` / has ``stem`` / is variable ``var``: [(flat name, index entry)] in params order."""
    idx, params = _index_of(summary), _params_of(summary)
    return [(n, e) for n, e in idx.items() if n in params
            and (dim is None or e.get("dim") == dim) and (stem is None or e.get("stem") == stem)
            and (var is None or e.get("var") == var)]


def stem_of(summary, name: str) -> str:
    """The quantity a flat name is an element of (a name the index lacks is its own stem)."""
    return (_index_of(summary).get(name) or {}).get("stem", name)


def entry(summary, name: str) -> dict:
    """The index entry of a flat name ({} when the summary has no index for it)."""
    return _index_of(summary).get(name) or {}


# ---- estimands.nc -----------------------------------------------------------------------------

def storable(ds: xr.Dataset) -> xr.Dataset:
    """The Dataset with variable names netCDF (and a DataTree group) accept (``paths.nc_name``;
    :func:`read` undoes it)."""
    return ds.rename({k: nc_name(str(k)) for k in ds.data_vars if nc_name(str(k)) != k})


def write(ds: xr.Dataset, path: Path) -> None:
    """Write the Dataset to a netCDF file at ``path`` (the caller makes it atomic)."""
    storable(ds).to_netcdf(path, engine="netcdf4")


def read(path: str | Path) -> xr.Dataset:
    """An ``estimands.nc`` as the labelled Dataset, loaded (one written before the estimands had
    dims is read as scalar estimands named by its variables)."""
    with xr.open_dataset(path, engine="netcdf4") as ds:
        ds = ds.load()
    ds = ds.rename({k: nc_unname(str(k)) for k in ds.data_vars if nc_unname(str(k)) != k})
    if not any("label" in da.attrs or "stem" in da.attrs for da in ds.data_vars.values()):
        return from_flat({str(k): v.to_numpy() for k, v in ds.data_vars.items()})
    return ds


def read_flat(path: str | Path) -> dict[str, np.ndarray]:
    """The draws of a saved ``estimands.nc`` by flat name ({} when there is none)."""
    p = Path(path)
    return flatten(read(p)) if p.exists() else {}
