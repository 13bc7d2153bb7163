"""Fitting: build → compile (nutpie) → sample → diagnostics → comparison → a Fit object.

``fit("did", panel, priors="weak", draws=..., chains=..., seed=...)`` returns a :class:`Fit` with
``.idata`` (an ArviZ DataTree), ``.summary()``, ``.diagnostics()``, ``.compare()`` and
``.save(dir)``; :func:`load_fit` reads a saved fit back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import BayesNQPError, ModelError, SectionSkipped
from ..results import (SIMULATED_NOTICE, jsonable, param_entry, read_json, save_figure, table_markdown,
                       write_atomic, write_json)
from .base import MODELS, BayesModel
from .diagnostics import diagnose, loo_summary, ppc_summary
from .spec import ModelSpec, PriorSet, SamplerSettings, load_prior_set, load_spec

log = logging.getLogger(__name__)

#: thinning of stored posterior predictive / log-likelihood draws is not done; keep fits small by
#: storing estimands separately from the posterior


@dataclass
class Fit:
    model: str
    idata: object  # xarray DataTree
    spec: ModelSpec | dict
    priors: PriorSet | dict
    sampler: SamplerSettings | dict
    data: dict
    draws: dict[str, np.ndarray]  # estimand name -> (chains, draws)
    params: dict
    diag: dict
    comparison_: dict
    extras: dict = field(default_factory=dict)
    seconds: float = 0.0
    figures_: dict = field(default_factory=dict)
    #: (model, pm_model, compiled) when fit(keep_compiled=True): lets sensitivity refits reuse it
    compiled_: tuple | None = field(default=None, repr=False)

    # ---- public API --------------------------------------------------------------------
    def summary(self) -> pd.DataFrame:
        """One row per estimand: mean, sd, hdi95, P(>0), R-hat, bulk ESS (original scale)."""
        rows = []
        per = self.diag.get("per_param", {})
        for name, e in self.params.items():
            d = per.get(name, {})
            rows.append({"param": name, "mean": e["mean"], "sd": e["sd"],
                         "hdi95_lo": e["hdi95"][0], "hdi95_hi": e["hdi95"][1],
                         "p_positive": e["p_positive"], "rhat": d.get("rhat"),
                         "ess_bulk": d.get("ess_bulk")})
        return pd.DataFrame(rows)

    def diagnostics(self) -> dict:
        return {k: v for k, v in self.diag.items() if k != "per_param"}

    @property
    def passed(self) -> bool:
        return bool(self.diag.get("passed"))

    def compare(self) -> pd.DataFrame:
        """Bayesian estimands next to their frequentist counterparts from the replication."""
        rows = []
        for name, c in self.comparison_.items():
            f, b = c.get("frequentist") or {}, c.get("bayesian") or {}
            fci, bhdi = f.get("ci95") or [None, None], b.get("hdi95") or [None, None]
            rows.append({"param": name, "frequentist": f.get("estimate"), "freq_se": f.get("se"),
                         "freq_ci95_lo": fci[0], "freq_ci95_hi": fci[1], "bayesian_mean": b.get("mean"),
                         "bayesian_sd": b.get("sd"), "hdi95_lo": bhdi[0], "hdi95_hi": bhdi[1],
                         "sd_ratio": c.get("sd_ratio"), "source": f.get("source"),
                         "estimand": c.get("estimand")})
        return pd.DataFrame(rows)

    def summary_json(self) -> dict:
        spec = self.spec.to_dict() if isinstance(self.spec, ModelSpec) else self.spec
        priors = self.priors.to_dict() if isinstance(self.priors, PriorSet) else self.priors
        sampler = self.sampler.__dict__ if isinstance(self.sampler, SamplerSettings) else self.sampler
        out = {
            "model": self.model,
            "data": self.data,
            "priors": priors,
            "spec": spec,
            "sampler": sampler,
            "params": self.params,
            "diagnostics": self.diag,
            "comparison": self.comparison_,
            "seconds": self.seconds,
            **{k: v for k, v in self.extras.items() if k not in ("model", "params", "diagnostics")},
        }
        if self.data.get("simulated"):
            out["notice"] = SIMULATED_NOTICE
        return jsonable(out)

    def save(self, out: str | Path) -> Path:
        """Write posterior.nc, estimands.nc, summary.json (last, so its presence means complete)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        _write_datatree(self.idata, out / "posterior.nc")
        ds = xr.Dataset({k: (("chain", "draw"), np.asarray(v)) for k, v in self.draws.items()})
        ds.attrs["note"] = "estimand draws on the outcome's original scale"
        _write_dataset(ds, out / "estimands.nc")
        for name, fig in self.figures_.items():
            save_figure(fig, out / "figures" / f"{name}.png")
        self.figures_ = {}
        tbl = self.summary()
        write_atomic(out / "params.md", table_markdown(tbl, self.data.get("simulated", False), floatfmt=".4g"))
        cmp_tbl = self.compare()
        if len(cmp_tbl):
            write_atomic(out / "comparison.md", table_markdown(cmp_tbl, self.data.get("simulated", False), floatfmt=".4g"))
        write_json(out / "summary.json", self.summary_json())
        return out


def _write_datatree(dt, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    # nutpie's divergence_message is an object array netCDF cannot store; it is not needed later
    for group in ("sample_stats", "warmup_sample_stats"):
        if group in dt.children and "divergence_message" in dt[group].data_vars:
            dt[group] = dt[group].to_dataset().drop_vars("divergence_message")
    dt.to_netcdf(tmp, engine="netcdf4")
    tmp.replace(path)


def _write_dataset(ds, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    ds.to_netcdf(tmp, engine="netcdf4")
    tmp.replace(path)


def load_fit(path: str | Path) -> Fit:
    """Read a saved fit (DIR/<model>/ with summary.json, posterior.nc, estimands.nc)."""
    path = Path(path)
    sj = path / "summary.json"
    if not sj.exists():
        raise BayesNQPError(f"no saved fit at {path} (summary.json missing)")
    s = read_json(sj)
    idata = xr.open_datatree(path / "posterior.nc", engine="netcdf4").load() if (path / "posterior.nc").exists() else None
    draws = {}
    if (path / "estimands.nc").exists():
        with xr.open_dataset(path / "estimands.nc", engine="netcdf4") as ds:
            draws = {k: ds[k].to_numpy() for k in ds.data_vars}
    known = {"model", "data", "priors", "spec", "sampler", "params", "diagnostics", "comparison", "seconds", "notice"}
    return Fit(model=s["model"], idata=idata, spec=s.get("spec", {}), priors=s.get("priors", {}),
               sampler=s.get("sampler", {}), data=s.get("data", {}), draws=draws,
               params=s.get("params", {}), diag=s.get("diagnostics", {}),
               comparison_=s.get("comparison", {}), extras={k: v for k, v in s.items() if k not in known},
               seconds=s.get("seconds", 0.0))


# ---- fitting ---------------------------------------------------------------------------------

def get_model_class(name: str) -> type[BayesModel]:
    from . import _load_models

    _load_models()
    key = name.replace("-", "_")
    if key not in MODELS:
        raise ModelError(f"unknown model '{name}'; choose from {', '.join(sorted(MODELS))}")
    return MODELS[key]


def make_model(name: str, panel, priors="default", spec: ModelSpec | str | Path | None = None) -> BayesModel:
    cls = get_model_class(name)
    spec = spec if isinstance(spec, ModelSpec) else load_spec(cls.name, spec)
    return cls(panel, spec, load_prior_set(priors))


def compile_model(model: BayesModel):
    """Build the PyMC model and compile it with nutpie. Returns (pm_model, compiled)."""
    import nutpie

    pm_model = model.build()
    compiled = nutpie.compile_pymc_model(pm_model)
    return pm_model, compiled


def sample(compiled, settings: SamplerSettings, progress=False):
    """Sample with nutpie. ``progress``: True for nutpie's own bar, or a callable that nutpie
    calls (from a background thread) with a list of ``nutpie.ChainProgress``, e.g. a CLI's bar."""
    import nutpie

    kw = dict(draws=settings.draws, tune=settings.tune, chains=settings.chains, seed=settings.seed,
              target_accept=settings.target_accept, progress_bar=progress is True, save_warmup=False,
              adaptation=settings.adaptation)
    if callable(progress):
        kw["progress_callback"] = progress
    if settings.cores:
        kw["cores"] = settings.cores
    return nutpie.sample(compiled, **kw)


def finish(model: BayesModel, pm_model, idata, settings: SamplerSettings, *, replication=None,
           seconds0: float, loo: bool = True, ppc: bool = True, psense: bool = True,
           figures: bool = True) -> Fit:
    """Everything after sampling: postprocess, estimands, diagnostics, LOO, PPC, power-scaling
    sensitivity (``diagnostics["psense"]``), comparison."""
    idata = model.postprocess(idata, pm_model)
    draws = {k: np.asarray(v, dtype=float) for k, v in model.estimands(idata).items()}
    free = [v.name for v in pm_model.free_RVs]
    diag = diagnose(idata, var_names=free + [n for n in idata["posterior"].data_vars
                                             if n.startswith("post__")], estimand_draws=draws)
    if loo:
        try:
            ll = model.log_likelihood(idata, pm_model)
            if ll is not None:
                idata["log_likelihood"] = xr.DataTree(ll)
                diag["loo"] = loo_summary(idata)
        except Exception as exc:  # a diagnostic that fails is reported, not fatal
            log.warning("LOO failed for %s: %s", model.name, exc)
            diag["loo"] = {"error": str(exc)}
    if ppc:
        try:
            pp = model.posterior_predictive(idata, pm_model, settings.seed)
            if pp is not None:
                idata["posterior_predictive"] = xr.DataTree(pp)
                _add_observed(idata, pp, model, pm_model)
                arr = np.asarray(pp[model.observed].to_numpy(), dtype=float)
                arr = arr.reshape(-1, arr.shape[-1]) if arr.ndim > 2 else arr
                diag["ppc"] = ppc_summary(arr, model.observed_values())
        except Exception as exc:
            log.warning("posterior predictive check failed for %s: %s", model.name, exc)
            diag["ppc"] = {"error": str(exc)}
    if diag.get("loo") and isinstance(diag["loo"], dict) and diag["loo"].get("warning"):
        diag["warnings"].append(f"{diag['loo']['n_pareto_k_bad']} Pareto k > 0.7 in LOO")
    if diag.get("ppc") and isinstance(diag["ppc"], dict) and diag["ppc"].get("warning"):
        diag["warnings"].append(f"posterior predictive p-value extreme for {diag['ppc']['extreme']}")
    if psense:
        from .sensitivity import power_scaling

        diag["psense"] = power_scaling(model, pm_model, idata, draws)
        flagged = [k for k, v in diag["psense"].items() if isinstance(v, dict) and v.get("flagged")]
        if flagged:
            diag["warnings"].append(f"power-scaling sensitivity flags {', '.join(flagged)}")
    params = {k: param_entry(v) for k, v in draws.items()}
    comparison = {}
    labels = model.estimand_labels()
    if replication is not None:
        for name, f in model.comparison(replication).items():
            if name in params:
                comparison[name] = {"frequentist": f, "bayesian": {"mean": params[name]["mean"],
                                                                   "sd": params[name]["sd"],
                                                                   "hdi95": params[name]["hdi95"]}}
                if labels.get(name):
                    comparison[name]["estimand"] = labels[name]
                if f.get("se"):
                    comparison[name]["sd_ratio"] = params[name]["sd"] / f["se"]
    extras = {"assumptions": model.assumptions(), **({"estimands": labels} if labels else {}),
              **model.extras(idata, draws)}
    fit = Fit(model=model.name, idata=idata, spec=model.spec, priors=model.priors, sampler=settings,
              data={k: v for k, v in model.panel.data_block().items() if k in ("path", "sha256", "simulated", "n_obs", "n_units")},
              draws=draws, params=params, diag=diag, comparison_=comparison, extras=extras,
              seconds=time.perf_counter() - seconds0)
    if figures:
        try:
            fit.figures_ = model.figures(fit)
        except Exception as exc:
            log.warning("figures failed for %s: %s", model.name, exc)
    return fit


def _add_observed(idata, pp, model: BayesModel, pm_model) -> None:
    """Store the observed values next to the predictive draws, so that a PPC plot can be made
    from the saved posterior.nc alone (the report does)."""
    try:
        da = pp[model.observed]
        dims = [d for d in da.dims if d not in ("chain", "draw")]
        shape = [da.sizes[d] for d in dims]
        obs = np.asarray(model.observed_values(), dtype=float)
        if obs.size != int(np.prod(shape)):
            # a model may predict a subset (say, the treated cells); PyMC knows what it observed
            from pymc.backends.arviz import find_observations

            obs = np.asarray(find_observations(pm_model)[model.observed], dtype=float)
        obs = obs.reshape(shape)
        idata["observed_data"] = xr.DataTree(xr.Dataset(
            {model.observed: (dims, obs)}, coords={d: da.coords[d] for d in dims if d in da.coords}))
    except Exception as exc:  # the PPC summary does not need it; only the report's plot does
        log.warning("observed data not stored for %s: %s", model.name, exc)


def replication_for(model: BayesModel) -> dict | None:
    """Run the model's counterpart replication section (for the comparison), or None."""
    if model.replication_section is None:
        return None
    from ..frequentist import replicate

    try:
        return replicate(model.replication_section, model.panel,
                         **{model.replication_section: dict(model.replication_options)})
    except (BayesNQPError, SectionSkipped) as exc:
        log.warning("replication for comparison failed: %s", exc)
        return None


def fit(model: str, panel, *, priors="default", spec=None, draws=None, tune=None, chains=None,
        seed=None, target_accept=None, cores=None, quick=False, replication: dict | None | bool = None,
        progress=False, loo=True, ppc=True, psense=True, keep_compiled=False) -> Fit:
    """Fit a Bayesian model by name. ``replication``: a replication summary dict to compare with,
    None to run the counterpart section, False for no comparison. ``progress``: True for nutpie's
    bar or a callable (see :func:`sample`). ``keep_compiled``: keep the compiled model on the Fit
    (``fit.compiled_``) so that prior-sensitivity refits need not compile again."""
    t0 = time.perf_counter()
    m = make_model(model, panel, priors, spec)
    base = m.spec.quick if quick else m.spec.sampler
    settings = base.override(draws=draws, tune=tune, chains=chains, seed=seed,
                             target_accept=target_accept, cores=cores)
    log.info("fitting %s with %s", m.name, settings)
    pm_model, compiled = compile_model(m)
    idata = sample(compiled, settings, progress=progress)
    if replication is None:
        replication = replication_for(m)
    elif replication is False:
        replication = None
    out = finish(m, pm_model, idata, settings, replication=replication, seconds0=t0, loo=loo, ppc=ppc,
                 psense=psense)
    if keep_compiled:
        out.compiled_ = (m, pm_model, compiled)
    return out
