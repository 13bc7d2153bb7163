"""Diagnostics for every fit, and the gates a fit must pass to be reported as fine.

Gates (results.GATES): R-hat ≤ 1.01, bulk ESS ≥ 400, no divergences — over every free parameter
and every estimand. E-BFMI < 0.3, tree-depth saturation, LOO Pareto k > 0.7 and an extreme
posterior predictive p-value are reported as warnings, not gates.
"""

from __future__ import annotations

import logging

import numpy as np
import xarray as xr

from ..errors import SpecError
from ..results import GATES, jsonable

log = logging.getLogger(__name__)

BFMI_MIN = 0.3
PARETO_K_BAD = 0.7


def _per_param(ds: xr.Dataset) -> dict[str, tuple[float, float, float, float]]:
    """name[index] -> (rhat, ess_bulk, ess_tail, mcse_mean/sd) for every scalar in a posterior."""
    import arviz_stats as azs

    # constants (a fixed reference, a breakdown value stored as a degenerate draw) have no
    # diagnostics; leaving them out also spares ArviZ a divide-by-zero warning
    keep = [n for n, da in ds.data_vars.items() if "chain" in da.dims and "draw" in da.dims
            and float(np.nanmax(np.ptp(np.asarray(da, dtype=float).reshape(-1, *da.shape[2:]), axis=0))) > 0]
    if not keep:
        return {}
    ds = ds[keep].astype(float)
    rh, eb = azs.rhat(ds), azs.ess(ds, method="bulk")
    et, mc, sd = azs.ess(ds, method="tail"), azs.mcse(ds, method="mean"), ds.std(("chain", "draw"))
    out = {}
    for name in keep:
        labels = _labels(ds[name])
        cols = [np.asarray(x[name].to_numpy(), dtype=float).ravel() for x in (rh, eb, et, mc, sd)]
        for j, lab in enumerate(labels):
            if not np.isfinite(cols[0][j]) or cols[4][j] == 0:
                continue  # a constant (e.g. a fixed reference) has no diagnostics
            out[f"{name}{lab}"] = (float(cols[0][j]), float(cols[1][j]), float(cols[2][j]),
                                   float(cols[3][j] / cols[4][j]))
    return out


def _labels(da) -> list[str]:
    dims = [d for d in da.dims if d not in ("chain", "draw")]
    if not dims:
        return [""]
    import itertools
    vals = [da.coords[d].to_numpy().tolist() if d in da.coords else list(range(da.sizes[d])) for d in dims]
    return ["[" + ",".join(str(v) for v in combo) + "]" for combo in itertools.product(*vals)]


def bfmi_min(sample_stats: xr.Dataset) -> float:
    """The smallest E-BFMI over the chains (``arviz_stats.bfmi`` of the sampler's energy)."""
    import arviz_stats as azs

    return float(np.min(np.asarray(azs.bfmi(sample_stats["energy"].astype(float)), dtype=float)))


def diagnose(idata, var_names=None, estimand_draws: dict[str, np.ndarray] | None = None) -> dict:
    """Convergence diagnostics of a fit (posterior variables ``var_names`` plus estimands)."""
    post = idata["posterior"].to_dataset()
    if var_names is not None:
        post = post[[v for v in var_names if v in post]]
    per = _per_param(post)
    for name, x in (estimand_draws or {}).items():
        per.update({k: v for k, v in _per_param(xr.Dataset({name: (("chain", "draw"), x)})).items()})
    stats = idata["sample_stats"].to_dataset() if "sample_stats" in idata.children else None
    n_chains, n_draws = post.sizes.get("chain", 1), post.sizes.get("draw", 0)
    out: dict = {"n_chains": int(n_chains), "n_draws": int(n_draws), "n_params": len(per)}
    if per:
        names = list(per)
        rh = np.array([per[n][0] for n in names])
        eb = np.array([per[n][1] for n in names])
        et = np.array([per[n][2] for n in names])
        mc = np.array([per[n][3] for n in names])
        out.update(rhat_max=float(np.nanmax(rh)), rhat_worst=names[int(np.nanargmax(rh))],
                   ess_bulk_min=float(np.nanmin(eb)), ess_bulk_worst=names[int(np.nanargmin(eb))],
                   ess_tail_min=float(np.nanmin(et)), mcse_sd_ratio_max=float(np.nanmax(mc)))
    else:
        out.update(rhat_max=None, ess_bulk_min=None, ess_tail_min=None, mcse_sd_ratio_max=None)
    div = 0
    if stats is not None and "diverging" in stats:
        div = int(np.asarray(stats["diverging"]).sum())
    out["divergences"] = div
    if stats is not None and "energy" in stats:
        out["bfmi_min"] = bfmi_min(stats)
    if stats is not None and "maxdepth_reached" in stats:
        out["treedepth_saturation"] = float(np.asarray(stats["maxdepth_reached"]).mean())
    failures = []
    if out["rhat_max"] is None or out["rhat_max"] > GATES["rhat_max"]:
        failures.append(f"R-hat {out['rhat_max']:.3f} > {GATES['rhat_max']} ({out.get('rhat_worst')})"
                        if out["rhat_max"] is not None else "no R-hat (one chain?)")
    if out["ess_bulk_min"] is None or out["ess_bulk_min"] < GATES["ess_bulk_min"]:
        failures.append(f"bulk ESS {out['ess_bulk_min'] or 0:.0f} < {GATES['ess_bulk_min']} "
                        f"({out.get('ess_bulk_worst')})")
    if div > GATES["divergences"]:
        failures.append(f"{div} divergent transition(s)")
    warnings = []
    if out.get("bfmi_min") is not None and out["bfmi_min"] < BFMI_MIN:
        warnings.append(f"E-BFMI {out['bfmi_min']:.2f} < {BFMI_MIN}")
    if out.get("treedepth_saturation", 0) > 0.01:
        warnings.append(f"{100 * out['treedepth_saturation']:.1f}% of draws hit the maximum tree depth")
    out["failures"] = failures
    out["warnings"] = warnings
    out["passed"] = not failures
    out["per_param"] = {k: {"rhat": v[0], "ess_bulk": v[1], "ess_tail": v[2], "mcse_sd_ratio": v[3]}
                        for k, v in per.items()}
    return jsonable(out)


#: pointwise log-likelihoods (units) above which PSIS-LOO is estimated from a simple random
#: sub-sample of LOO_SUBSAMPLE of them (Magnusson et al. 2019, the plain estimator): PSIS costs
#: about a millisecond a point (100 s for 100,000 units), and arviz_stats' ``loo_subsample``
#: (difference estimator) was measured to take 2 GB more memory at 100,000 units × 500 draws
LOO_SUBSAMPLE_ABOVE = 10_000
LOO_SUBSAMPLE = 2_000
#: the sub-sample's seed (the same units for every fit of a panel: comparable elpd)
LOO_SUBSAMPLE_SEED = 315


def loo_summary(idata, var_name: str | None = None) -> dict | None:
    """PSIS-LOO elpd with its SE and Pareto k, or None without a log_likelihood group.

    With n > :data:`LOO_SUBSAMPLE_ABOVE` points, PSIS-LOO (arviz_stats ``loo``) runs on m =
    :data:`LOO_SUBSAMPLE` of them drawn without replacement, and the totals are scaled:
    elpd = n·mean(elpd_i), se = √n·sd(elpd_i), p_loo = n·mean(p_i), with the sub-sampling
    error n·sd(elpd_i)·√((1 − m/n)/m) as ``subsampling_se``; the Pareto k are the sub-sample's."""
    if "log_likelihood" not in idata.children:
        return None
    from arviz_stats import loo

    name, n_points, pick = _loo_points(idata, var_name)
    try:
        if pick is not None:
            res = loo(_loo_subsample(idata, name, pick), var_name=name, pointwise=True)
        else:
            res = loo(idata, var_name=var_name)
    except Exception as exc:  # LOO is a diagnostic: its failure is reported, not fatal
        return {"error": str(exc)}
    k = np.asarray(res.pareto_k).ravel()
    k = k[np.isfinite(k)]
    out = {"elpd": float(res.elpd), "se": float(res.se), "p_loo": float(res.p), "n_points": n_points,
           "pareto_k_max": float(np.max(k)) if k.size else None,
           "n_pareto_k_bad": int((k > PARETO_K_BAD).sum()), "warning": bool((k > PARETO_K_BAD).any())}
    if pick is not None:
        e = np.asarray(res.elpd_i).ravel()
        m, n, sd = len(e), n_points, float(np.std(e, ddof=1))
        out |= {"elpd": n * float(e.mean()), "se": float(np.sqrt(n)) * sd, "p_loo": n / m * float(res.p),
                "subsample": m, "subsampling_se": _subsampling_se(e, n)}
    return jsonable(out)


def _loo_points(tree, var_name: str | None) -> tuple[str, int, np.ndarray | None]:
    """(the log-likelihood variable, its number of points n, the sub-sample's point indices or
    None): a sub-sample above :data:`LOO_SUBSAMPLE_ABOVE` points along one point dim."""
    name = var_name or next(iter(tree["log_likelihood"].data_vars))
    da = tree["log_likelihood"][name]
    dims = [d for d in da.dims if d not in ("chain", "draw")]
    n = int(np.prod([da.sizes[d] for d in dims]))
    return name, n, (loo_subsample_points(n) if n > LOO_SUBSAMPLE_ABOVE and len(dims) == 1 else None)


def _loo_subsample(tree, name: str, pick: np.ndarray):
    """A DataTree of ``tree``'s posterior and its log-likelihood ``name`` at the points ``pick``."""
    ll = tree["log_likelihood"].to_dataset()[[name]]
    dim = next(d for d in ll[name].dims if d not in ("chain", "draw"))
    return xr.DataTree.from_dict({"posterior": tree["posterior"].to_dataset(),
                                  "log_likelihood": ll.isel({dim: pick})})


def _subsampling_se(e: np.ndarray, n: int) -> float:
    """The sub-sampling error of n·mean(e) for a simple random sub-sample e of n points:
    n·sd(e)·√((1 − m/n)/m) (Magnusson et al. 2019)."""
    m = len(e)
    return n * float(np.std(e, ddof=1)) * float(np.sqrt((1 - m / n) / m))


def loo_subsample_points(n_points: int) -> np.ndarray:
    """The sorted indices of the :data:`LOO_SUBSAMPLE` points that PSIS-LOO uses above
    :data:`LOO_SUBSAMPLE_ABOVE` (the same for every fit of a panel: comparable elpd)."""
    rng = np.random.default_rng(LOO_SUBSAMPLE_SEED)
    return np.sort(rng.choice(n_points, LOO_SUBSAMPLE, replace=False))


def loo_compare(trees: dict, var_name: str | None = None):
    """``arviz_stats.compare`` of fits (DataTrees with ``posterior`` and ``log_likelihood`` over
    the same points), returned as its table.

    Above :data:`LOO_SUBSAMPLE_ABOVE` points (one point dim), PSIS-LOO runs on the sub-sample of
    :func:`loo_summary` (the same points in every fit) and the totals are scaled to the n points
    (Magnusson et al. 2019, the plain estimator), f = n/m: elpd, p and elpd_diff × f; se × √f;
    dse = √(f·dse_m² + s_d²) with s_d = n·sd(d_i)·√((1 − m/n)/m) the sub-sampling error of the
    difference d_i = elpd_i(best) − elpd_i(model). The columns ``n_points``, ``subsample`` and
    ``subsampling_se`` (of each elpd) say so. Stacking weights are those of the sub-sample."""
    from arviz_stats import compare, loo

    name, n, pick = _loo_points(next(iter(trees.values())), var_name)
    if pick is None:
        return compare(trees, var_name=var_name, round_to="none")
    elpds = {k: loo(_loo_subsample(t, name, pick), var_name=name, pointwise=True)
             for k, t in trees.items()}
    table = compare(elpds, round_to="none")
    m = len(pick)
    f = n / m
    point = {k: np.asarray(e.elpd_i).ravel() for k, e in elpds.items()}
    best = point[table.index[0]]
    table["elpd"] = table["elpd"] * f
    table["p"] = table["p"] * f
    table["elpd_diff"] = table["elpd_diff"] * f
    table["se"] = table["se"] * np.sqrt(f)
    sub_d = [_subsampling_se(best - point[k], n) for k in table.index]
    table["dse"] = np.sqrt(f * table["dse"].to_numpy(float) ** 2 + np.square(sub_d))
    table["n_points"] = n
    table["subsample"] = m
    table["subsampling_se"] = [_subsampling_se(point[k], n) for k in table.index]
    return table


def ppc_summary(pp: np.ndarray, observed: np.ndarray) -> dict:
    """Posterior predictive p-values for the mean, sd and 5%/95% quantiles of the outcome.

    ``pp`` is (samples, n) on the same scale as ``observed``.
    """
    out = {}
    stats = {"mean": np.mean, "sd": np.std,
             "q05": lambda a, axis=None: np.quantile(a, 0.05, axis=axis),
             "q95": lambda a, axis=None: np.quantile(a, 0.95, axis=axis)}
    for name, f in stats.items():
        rep = f(pp, axis=1)
        obs = float(f(observed))
        out[name] = {"observed": obs, "p_value": float((rep >= obs).mean())}
    extreme = [k for k, v in out.items() if v["p_value"] < 0.01 or v["p_value"] > 0.99]
    out["warning"] = bool(extreme)
    out["extreme"] = extreme
    return jsonable(out)


# ---- power-scaling sensitivity (psense) ----------------------------------------------------

#: free parameters with more elements than this are left out of the power-scaling table
#: (city effects would swamp it; the estimands built from them are in it)
PSENSE_MAX_SIZE = 12
#: psense_summary's cut-off on the power-scaling sensitivity (its default)
PSENSE_THRESHOLD = 0.05
_DIAGNOSIS = {"✓": "ok"}


def power_scaling(model, pm_model, idata, draws: dict[str, np.ndarray], *,
                  max_size: int = PSENSE_MAX_SIZE) -> dict:
    """``{param: {prior, likelihood, diagnosis, flagged}}`` for the estimands and the small free
    parameters of a fit; ``{"error": message}`` when it cannot be computed (never raises)."""
    try:
        return _power_scaling(model, pm_model, idata, draws, max_size)
    except Exception as exc:  # a diagnostic that fails is reported, not fatal
        log.warning("power-scaling sensitivity failed for %s: %s", model.name, exc)
        return {"error": f"{type(exc).__name__}: {exc}"}


def _power_scaling(model, pm_model, idata, draws, max_size) -> dict:
    import pymc as pm
    from arviz_stats import psense_summary

    free = {v.name for v in pm_model.free_RVs}
    priors = [rv for rv in model.used_priors if rv in free]
    if not priors:
        raise SpecError("no prior from the prior set is a free variable of the model")
    # PyMC cannot rebuild (to evaluate densities) a model that sets initial values; they play no
    # part in a density, so they are lifted for the computation and put back afterwards
    initvals = dict(pm_model.rvs_to_initial_values)
    try:
        for rv in initvals:
            pm_model.rvs_to_initial_values[rv] = None
        lp = pm.compute_log_prior(idata, model=pm_model, var_names=priors,
                                  extend_inferencedata=False, progressbar=False)
    finally:
        pm_model.rvs_to_initial_values.update(initvals)
    lp = lp.to_dataset() if hasattr(lp, "to_dataset") else lp
    if "log_likelihood" in idata.children:
        ll = idata["log_likelihood"].to_dataset()
    else:
        ll = model.log_likelihood(idata, pm_model)
    if ll is None:
        raise SpecError("the model gives no pointwise log-likelihood")
    post = idata["posterior"].to_dataset()
    chain_draw = {"chain": post["chain"].to_numpy(), "draw": post["draw"].to_numpy()}
    quantities = xr.Dataset({k: (("chain", "draw"), np.asarray(v, dtype=float))
                             for k, v in draws.items()}, coords=chain_draw)
    for rv in priors:
        if rv in post and rv not in quantities and post[rv].size // (post.sizes["chain"] * post.sizes["draw"]) <= max_size:
            quantities[rv] = post[rv].astype(float)
    if ll.sizes.get("draw") != post.sizes["draw"]:
        # a long panel's log-likelihood is on thinned draws (bayes/did.py LOO_MAX_VALUES)
        keep = {"draw": ll["draw"].to_numpy()}
        quantities, lp = quantities.sel(keep), lp.sel(keep)
    dt = xr.DataTree.from_dict({"posterior": quantities, "log_prior": lp, "log_likelihood": ll})
    df = psense_summary(dt, threshold=PSENSE_THRESHOLD, round_to=4)
    out = {}
    for label, row in df.iterrows():
        diagnosis = _DIAGNOSIS.get(row["diagnosis"], row["diagnosis"])
        out[str(label)] = {"prior": float(row["prior"]), "likelihood": float(row["likelihood"]),
                           "diagnosis": diagnosis, "flagged": diagnosis != "ok"}
    return jsonable(out)
