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

from .. import estimands as E
from ..errors import BayesNQPError, ModelError
from ..compare import compare
from ..contract import ComparisonEntry, FitSummary, ParamEntry, comparison_table, tidy
from ..results import SIMULATED_NOTICE, read_json, table_markdown, write_atomic, write_json
from ..guard import check_sample, temp_path
from ..paths import check_under, output_root
from .base import MODELS, SEED_ATTR, BayesModel
from .diagnostics import diagnose, loo_summary, power_scaling, ppc_summary
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
    draws: dict[str, np.ndarray]  # estimand name -> (chains, draws): E.flatten(estimand_draws)
    params: dict
    diag: dict
    comparison_: dict
    extras: dict = field(default_factory=dict)
    seconds: float = 0.0
    #: what the intervals rest on, in words; estimand name -> what it is
    assumptions: tuple = ()
    estimands: dict = field(default_factory=dict)
    #: (model, pm_model, compiled) when fit(keep_compiled=True): lets sensitivity refits reuse it
    compiled_: tuple | None = field(default=None, repr=False)
    #: the labelled estimands (xarray.Dataset with dims; bayes_nqp.estimands); ``draws`` is its
    #: flat view
    estimand_draws: xr.Dataset | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.estimand_draws is None:
            self.estimand_draws = E.from_flat(self.draws)

    # ---- public API --------------------------------------------------------------------
    def summary(self) -> pd.DataFrame:
        """One row per estimand: mean, sd, HDI, P(>0), R-hat, bulk ESS (original scale)."""
        return tidy(self.to_summary())

    def diagnostics(self) -> dict:
        return {k: v for k, v in self.diag.items() if k != "per_param"}

    @property
    def passed(self) -> bool:
        return bool(self.diag.get("passed"))

    def compare(self) -> pd.DataFrame:
        """Bayesian estimands next to their frequentist counterparts from the replication."""
        return comparison_table(self.to_summary())

    def to_summary(self) -> FitSummary:
        """The typed results contract of this fit (what summary.json holds)."""
        spec = self.spec.to_dict() if isinstance(self.spec, ModelSpec) else self.spec
        priors = self.priors.to_dict() if isinstance(self.priors, PriorSet) else self.priors
        sampler = self.sampler.__dict__ if isinstance(self.sampler, SamplerSettings) else self.sampler
        return FitSummary(
            model=self.model, data=dict(self.data), priors=dict(priors), spec=dict(spec),
            sampler=dict(sampler),
            params={k: v if isinstance(v, ParamEntry) else ParamEntry.from_json(v)
                    for k, v in self.params.items()},
            diagnostics=self.diag,
            comparison={k: v if isinstance(v, ComparisonEntry) else ComparisonEntry.from_json(v)
                        for k, v in self.comparison_.items()},
            seconds=self.seconds, extras=dict(self.extras),
            notice=SIMULATED_NOTICE if self.data.get("simulated") else None,
            assumptions=tuple(self.assumptions), estimands=dict(self.estimands),
            estimand_index=E.index(self.estimand_draws))

    # ---- display (notebooks, scripts) -----------------------------------------------------
    def __repr__(self) -> str:
        d = self.diag
        g = lambda v: "nan" if v is None else f"{v:.4g}"  # noqa: E731
        head = ", ".join(f"{n}={g(e.mean)} [{g(e.hdi[0])}, {g(e.hdi[1])}]"
                         for n, e in list(self._entries().items())[:3])
        more = len(self.params) - 3
        gates = "passed" if self.passed else "FAILED: " + "; ".join(d.get("failures", []))
        return (f"<Fit {self.model}: {head}{f' (+{more} more)' if more > 0 else ''}; "
                f"gates {gates}; {self.data.get('n_obs', '?')} obs>")

    def _entries(self) -> dict:
        return {k: v if isinstance(v, ParamEntry) else ParamEntry.from_json(v)
                for k, v in self.params.items()}

    def _repr_html_(self) -> str:
        """A notebook shows the summary table and the gates."""
        import html as _html

        d = self.diag
        rows = [("R-hat max", d.get("rhat_max"), "≤ 1.01"), ("bulk ESS min", d.get("ess_bulk_min"), "≥ 400"),
                ("divergences", d.get("divergences"), "0")]
        gates = "".join(f"<tr><td>{a}</td><td>{'' if b is None else f'{b:.4g}'}</td><td>{c}</td></tr>"
                        for a, b, c in rows)
        verdict = ("<b style='color:green'>passed</b>" if self.passed else
                   "<b style='color:#b00'>FAILED</b>: " + _html.escape("; ".join(d.get("failures", []))))
        note = f"<p><i>{_html.escape(SIMULATED_NOTICE)}</i></p>" if self.data.get("simulated") else ""
        table = self.summary().to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="")
        return (f"<div><h4>{_html.escape(self.model)}: posterior (outcome's original scale)</h4>{table}"
                f"<p>diagnostic gates {verdict}</p><table><tr><th>gate</th><th>value</th>"
                f"<th>needs</th></tr>{gates}</table>{note}</div>")

    def plot(self):
        """The fit's main figure (a matplotlib Figure): effects by event time for the event-time
        models, otherwise every estimand's posterior mean and 95% HDI beside its frequentist
        counterpart (the report's figures, report/figures.py)."""
        from ..report.figures import event_time_plot, forest_plot

        s = self.summary_json()
        sim = bool(self.data.get("simulated"))
        if E.select(s, dim="event_time"):
            return event_time_plot(s, self.model, sim)
        return forest_plot(s, self.model, sim)

    def table(self, interval: bool = True):
        """The paper-style (esttab) table of this fit: ``.tex()``, ``.markdown()``, ``.html()``
        (see report/paper_tables.py); a notebook shows it as HTML."""
        from ..report.paper_tables import bayesian_table

        return bayesian_table({self.model: self.summary_json()}, interval=interval, max_rows=50)

    def summary_json(self) -> dict:
        return self.to_summary().to_json()

    def save(self, out: str | Path) -> Path:
        """Write posterior.nc, estimands.nc, summary.json (last, so its presence means complete)."""
        with output_root(out):
            return self._save(Path(out))

    def _save(self, out: Path) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        _write_datatree(self.idata, out / "posterior.nc")
        _write_dataset(self.estimand_draws, out / "estimands.nc")
        tbl = self.summary()
        write_atomic(out / "params.md", table_markdown(tbl, self.data.get("simulated", False), floatfmt=".4g"))
        cmp_tbl = self.compare()
        if len(cmp_tbl):
            write_atomic(out / "comparison.md", table_markdown(cmp_tbl, self.data.get("simulated", False), floatfmt=".4g"))
        write_json(out / "summary.json", self.summary_json())
        return out


def _write_datatree(dt, path: Path) -> None:
    path = check_under(path)
    tmp = temp_path(path)  # unique per process and call: a concurrent run's temporary is not ours
    # nutpie's divergence_message is an object array netCDF cannot store; it is not needed later
    for group in ("sample_stats", "warmup_sample_stats"):
        if group in dt.children and "divergence_message" in dt[group].data_vars:
            dt[group] = dt[group].to_dataset().drop_vars("divergence_message")
    try:
        dt.to_netcdf(tmp, engine="netcdf4")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_dataset(ds, path: Path) -> None:
    path = check_under(path)
    tmp = temp_path(path)
    try:
        E.write(ds, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def load_fit(path: str | Path) -> Fit:
    """Read a saved fit (DIR/<model>/ with summary.json, posterior.nc, estimands.nc)."""
    path = Path(path)
    sj = path / "summary.json"
    if not sj.exists():
        raise BayesNQPError(f"no saved fit at {path} (summary.json missing)")
    s = FitSummary.from_json(read_json(sj))
    idata = xr.open_datatree(path / "posterior.nc", engine="netcdf4").load() if (path / "posterior.nc").exists() else None
    ds = E.read(path / "estimands.nc") if (path / "estimands.nc").exists() else E.from_flat({})
    draws = E.flatten(ds)
    return Fit(model=s.model, idata=idata, spec=s.spec, priors=s.priors, sampler=s.sampler,
               data=s.data, draws=draws, params={k: v.to_json() for k, v in s.params.items()},
               diag=s.diagnostics, comparison_={k: v.to_json() for k, v in s.comparison.items()},
               extras=s.extras, seconds=s.seconds, assumptions=s.assumptions, estimands=s.estimands,
               estimand_draws=ds)


# ---- fitting ---------------------------------------------------------------------------------

def get_model_class(name: str) -> type[BayesModel]:
    from .. import registry

    key = registry.canonical(name)
    if key not in MODELS:
        registry.load_module(key)
    if key not in MODELS:
        raise ModelError(f"module {registry.MODULES[key]} does not register a model '{key}' "
                         f"(decorate its class with @register(\"{key}\"))")
    return MODELS[key]


def make_model(name: str, panel, priors="default", spec: ModelSpec | str | Path | None = None) -> BayesModel:
    cls = get_model_class(name)
    spec = spec if isinstance(spec, ModelSpec) else load_spec(cls.name, spec)
    return cls(panel, spec, load_prior_set(priors))


def compile_model(model: BayesModel):
    """Build the PyMC model and compile it with nutpie (its shared data packed,
    :mod:`.packing`). Returns (pm_model, compiled)."""
    from .packing import compile_pymc

    pm_model = model.build()
    return pm_model, compile_pymc(pm_model)


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
    log.info("sampling started: %d chain(s) x %d draws (tune %d)", settings.chains, settings.draws,
             settings.tune)
    idata = nutpie.sample(compiled, **kw)
    # nutpie answers KeyboardInterrupt by returning the draws so far: never take them as complete
    check_sample(idata, settings.draws)
    if settings.seed is not None:  # the seed of the draws made after sampling (base.draws_rng)
        idata["posterior"].attrs[SEED_ATTR] = int(settings.seed)
    return idata


def finish(model: BayesModel, pm_model, idata, settings: SamplerSettings, *, replication=None,
           seconds0: float, loo: bool = True, ppc: bool = True, psense: bool = True) -> Fit:
    """Everything after sampling: postprocess, estimands, diagnostics, LOO, PPC, power-scaling
    sensitivity (``diagnostics["psense"]``), comparison (:func:`bayes_nqp.compare.compare` with
    the spec's ``[[compare]]`` mapping). Figures are the report's (report/figures.py)."""
    idata = model.postprocess(idata, pm_model)
    ds = model.estimands(idata)
    ds = E.from_flat(ds) if isinstance(ds, dict) else ds  # a model kept outside may return a dict
    ds = ds.assign_coords(chain=idata["posterior"]["chain"].to_numpy(), draw=idata["posterior"]["draw"].to_numpy())
    draws = E.flatten(ds)
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
        diag["psense"] = power_scaling(model, pm_model, idata, draws)
        flagged = [k for k, v in diag["psense"].items() if isinstance(v, dict) and v.get("flagged")]
        if flagged:
            diag["warnings"].append(f"power-scaling sensitivity flags {', '.join(flagged)}")
    entries = {k: ParamEntry.from_draws(v) for k, v in draws.items()}
    params = {k: e.to_json() for k, e in entries.items()}
    labels = model.estimand_labels()
    spec_dict = model.spec.to_dict() if isinstance(model.spec, ModelSpec) else {}
    comparison = {k: ComparisonEntry(c.frequentist, c.bayesian, labels.get(k)).to_json() for k, c in
                  compare(FitSummary(model.name, entries, spec=spec_dict, estimand_index=E.index(ds)), replication,
                          model.spec.compare).items()}
    extras = model.extras(idata, draws, replication)
    fit = Fit(model=model.name, idata=idata, spec=model.spec, priors=model.priors, sampler=settings,
              data={k: v for k, v in model.panel.data_block().items() if k in ("path", "sha256", "map_sha256", "simulated", "n_obs", "n_units")},
              draws=draws, params=params, diag=diag, comparison_=comparison, extras=extras,
              seconds=time.perf_counter() - seconds0, assumptions=tuple(model.assumptions()),
              estimands=labels, estimand_draws=ds)
    idata["estimands"] = xr.DataTree(E.storable(ds))
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


def fit(model: str, panel, *, priors="default", spec=None, draws=None, tune=None, chains=None,
        seed=None, target_accept=None, cores=None, quick=False, replication=None,
        progress=False, loo=True, ppc=True, psense=True, keep_compiled=False) -> Fit:
    """Fit a Bayesian model by name; returns a :class:`Fit`.

    Keywords (every sampler setting defaults to the spec's ``[sampler]`` table in
    ``models/<model>.toml``; ``quick=True`` takes its ``[quick]`` table instead):

    ``model``         a registered model: did, heterogeneity, event_study, staggered, mediation,
                      threshold (``bayes_nqp.registry.names()``).
    ``panel``         a :class:`~bayes_nqp.data.Panel` (``bn.load_panel(df_or_path, map)``).
    ``priors``        a prior set: "default", "weak", "skeptical" or a path to a TOML prior set.
    ``spec``          a spec to use instead of ``models/<model>.toml`` (a path or a ModelSpec).
    ``draws``, ``tune``, ``chains``   posterior draws and warm-up draws per chain, and chains.
    ``seed``          the sampler's random seed.  ``target_accept``: NUTS step-size target.
    ``cores``         parallel chains (default: nutpie's choice).
    ``quick``         the spec's ``[quick]`` settings: a preview, possibly short of the gates.
    ``replication``   a replication summary dict to compare with (``bn.replicate(...)``), or a
                      function of the built model that returns one (called after sampling;
                      ``bn.fit`` passes :func:`bayes_nqp.counterparts.replication_for`, which
                      runs the counterpart sections), or None / False for no comparison. This
                      module never runs the replication itself.
    ``progress``      True for nutpie's progress bar, or a callable (see :func:`sample`).
    ``loo``, ``ppc``, ``psense``   compute PSIS-LOO, posterior predictive checks and
                      power-scaling prior/likelihood sensitivity (default True each).
    ``keep_compiled`` keep the compiled model on the Fit (``fit.compiled_``) so that
                      prior-sensitivity refits need not compile again.
    """
    t0 = time.perf_counter()
    m = make_model(model, panel, priors, spec)
    base = m.spec.quick if quick else m.spec.sampler
    settings = base.override(draws=draws, tune=tune, chains=chains, seed=seed,
                             target_accept=target_accept, cores=cores)
    log.info("fitting %s with %s", m.name, settings)
    pm_model, compiled = compile_model(m)
    idata = sample(compiled, settings, progress=progress)
    if callable(replication):
        replication = replication(m)
    elif replication is False:
        replication = None
    out = finish(m, pm_model, idata, settings, replication=replication, seconds0=t0, loo=loo, ppc=ppc,
                 psense=psense)
    if keep_compiled:
        out.compiled_ = (m, pm_model, compiled)
    return out
