r"""Calibration of the Bayesian models by many refits on the many-fits engine (:mod:`.engine`).

Placebo-law calibration (:func:`calibrate_placebo`)
    On the user's own panel, a random share of units gets a fake adoption year (random per unit,
    absorbing; Bertrand, Duflo & Mullainathan 2004) and the real outcome is kept, so there is no
    effect to find. ``mode="never"`` (default) draws the placebo units from the never-treated
    units and keeps only them; ``mode="all"`` uses every unit and keeps the real treatment as a
    control (column ``D_real``). Each placebo panel is refitted; the false-positive rate is the
    share of placebo panels whose 95% interval of the model's headline estimand excludes 0, with
    its Wilson (binomial) Monte-Carlo interval, beside TWFE (pyfixest, ``y ~ D + controls | unit +
    time``) with iid and with unit-clustered (CRV1) standard errors on the very same panels.
    Writes ``DIR/calibration/placebo/<model>/summary.json``.

Simulation-based calibration (:func:`calibrate_sbc`)
    Draw the parameters from the prior, simulate an outcome on the user's panel's design (units,
    periods, treatment timing and controls as observed) from the model's own generative process,
    fit, and record the rank of each true value among thinned posterior draws. The models'
    likelihoods are marginalised potentials, which prior-predictive sampling cannot simulate, so
    each model supplies ``simulate`` (a method ``simulate(params, rng, noise_scale, latents=)`` on
    the model class, or an entry in :data:`SIMULATORS` here). It returns the standardised outcome
    and, with ``latents=True``, the parameters the likelihood integrates out (unit effects, the
    threshold model's γ and slopes), as the posterior names them, and under
    :data:`SIMULATED_COLUMNS` any other panel column it draws (mediation: the mediators). The
    simulated data are standardised with the *observed* panel's means and sds (the model's
    ``use_scales_of`` where it has more than the outcome's), so the priors that generated them
    are exactly those of the refit; a model class's ``sbc_options`` are set on its spec. A rank
    counts the thinned draws below the true value plus a uniform share of those equal to it.
    Per estimand: the ranks, a uniformity p-value (the PIT uniformity test of ``arviz_stats``,
    method ``pot_c``), and ``figures/sbc_<name>.png``: the rank histogram and the Δ-ECDF with
    simultaneous 95% bands (``arviz_stats.ecdf_utils``). ``passed`` is
    every p-value above ``alpha / k`` (Bonferroni over the k estimands). Writes
    ``DIR/calibration/sbc/<model>/summary.json``.

Each replicate is one engine task; its panel change is small (the placebo units and years, or a
seed), and the panel travels once to each worker. The refits reuse one compilation per worker
and model structure (:func:`.engine.compiled_model`). Tasks sample with one core each
(``cores=1``): the engine's parallelism is over tasks.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from . import estimands as E
from . import registry
from .engine import RunResult, Task, compiled_model, digest, run_tasks, task_key
from .errors import ModelError, SectionSkipped
from .results import SIMULATED_NOTICE, SavesSummary, jsonable

log = logging.getLogger(__name__)

PLACEBO_MODES = ("never", "all")
DEFAULT_SAMPLER = {"draws": 400, "tune": 400, "chains": 2}


def _model_key(model: str) -> str:
    return model.replace("-", "_")


def _headline(model: str) -> str:
    """The estimand a calibration checks: ``headline`` in ``[model]`` of the model's spec."""
    h = registry.info(_model_key(model)).headline
    if h is None:
        raise ModelError(f"model '{model}' declares no headline estimand in its spec")
    return h


def wilson(k: int, n: int, z: float = 1.959963984540054) -> list[float | None]:
    """Wilson score interval for a binomial proportion k/n (95% by default)."""
    if n == 0:
        return [None, None]
    if not 0 <= k <= n:
        raise ValueError(f"wilson: k = {k} is not within 0..{n}")
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    # at k = 0 (k = n) the end is exactly 0 (1); the closed form leaves a rounding error there
    return [0.0 if k == 0 else max(0.0, centre - half), 1.0 if k == n else min(1.0, centre + half)]


# ---- one fit inside a task ----------------------------------------------------------------------

def _settings(m, sampler: dict, seed: int):
    base = m.spec.sampler
    return base.override(draws=sampler.get("draws"), tune=sampler.get("tune"),
                         chains=sampler.get("chains"), seed=int(seed), cores=1)


def fit_once(model, pm_model, sampler: dict, seed: int, model_name: str):
    """Sample a built model (compiled once per process and structure) and finish it without
    LOO, PPC, power-scaling or figures: what a calibration needs. Returns a Fit."""
    from .bayes.fit import finish, sample

    t0 = time.perf_counter()
    settings = _settings(model, sampler, seed)
    compiled, _ = compiled_model(pm_model, cache_key=model_name)
    idata = sample(compiled, settings)
    return finish(model, pm_model, idata, settings, replication=None, seconds0=t0, loo=False,
                  ppc=False, psense=False)


def _diag(fit) -> dict:
    per = fit.diag.get("per_param", {})
    rhat = [v.get("rhat") for v in per.values() if v.get("rhat") is not None]
    ess = [v.get("ess_bulk") for v in per.values() if v.get("ess_bulk") is not None]
    return {"rhat_max": max(rhat) if rhat else None, "ess_bulk_min": min(ess) if ess else None,
            "divergences": fit.diag.get("divergences"), "passed": fit.passed}


# ---- placebo laws --------------------------------------------------------------------------------

def placebo_panel(panel, units, years, mode: str = "never"):
    """The panel with placebo adoption: unit ``units[k]`` treated from ``years[k]`` on (absorbing),
    every other unit never. ``mode="never"`` keeps only the never-treated units; ``"all"`` keeps
    every unit, with the real treatment as the control ``D_real``."""
    from .data.panel import Panel

    if mode not in PLACEBO_MODES:
        raise ModelError(f"placebo mode '{mode}' is not one of {', '.join(PLACEBO_MODES)}")
    panel.require("outcome", "treatment", what="a placebo-law calibration")
    df = panel.df
    cmap = panel.cmap
    if mode == "never":
        never = df.groupby("unit")["D"].transform("max") == 0
        panel = panel.subset(never.to_numpy())
        df = panel.df.copy()
    else:
        df = df.copy()
        df["D_real"] = df["D"]
        cmap = replace(cmap, controls=(*cmap.controls, "D_real"))
    start = pd.Series(dict(zip(units, years)), dtype=float)
    df["cohort"] = df["unit"].map(start).astype(float)
    df["D"] = ((df["time"] >= df["cohort"]) & df["cohort"].notna()).astype(float)
    df["rel_time"] = df["time"] - df["cohort"]
    return Panel(df, cmap, panel.report, panel.source, panel.sha256)


def placebo_pool(panel, mode: str = "never") -> np.ndarray:
    df = panel.df
    if mode == "never":
        treated = df.groupby("unit")["D"].max()
        return treated.index[treated.to_numpy() == 0].to_numpy()
    return panel.units


def placebo_draws(panel, n: int, seed: int = 0, mode: str = "never", share: float = 0.5) -> list[dict]:
    """``n`` placebo assignments: ``{seed, units, years}``. A share of the pool (at least one
    unit) is treated, each from a period drawn uniformly from the second to the last."""
    pool = placebo_pool(panel, mode)
    if len(pool) < 2:
        raise SectionSkipped(f"a placebo-law calibration needs at least 2 {'never-treated ' if mode == 'never' else ''}"
                             f"units; this panel has {len(pool)} (try mode='all')")
    times = panel.times[1:]
    k = max(1, int(round(share * len(pool))))
    out = []
    for i, ss in enumerate(np.random.SeedSequence(seed).spawn(n)):
        rng = np.random.default_rng(ss)
        units = rng.choice(pool, size=k, replace=False)
        years = rng.choice(times, size=k, replace=True)
        out.append({"replicate": i, "seed": int(ss.generate_state(1)[0]),
                    "units": [u.item() if hasattr(u, "item") else u for u in units],
                    "years": [y.item() if hasattr(y, "item") else y for y in years]})
    return out


def twfe_placebo(panel) -> dict:
    """TWFE on a placebo panel under iid and unit-clustered SEs: estimate, se, ci95, excludes 0."""
    from .frequentist._fe import fe_part, feols, terms

    out = {}
    for name, vcov in (("iid", "iid"), ("cluster", {"CRV1": "unit"})):
        f = feols(panel.df, "y", terms(panel, ("D",), controls=True), fe_part(panel), vcov=vcov)
        ci = f.confint().loc["D"]
        lo, hi = float(ci.iloc[0]), float(ci.iloc[1])
        out[name] = {"estimate": float(f.coef()["D"]), "se": float(f.se()["D"]), "ci95": [lo, hi],
                     "excludes_zero": bool(lo > 0 or hi < 0)}
    return out


def _spec_with(model: str, spec, attr: str):
    """``spec`` (a ModelSpec, a TOML path or None for the model's own) with the options of the
    model class's attribute ``attr`` (a dict) on top."""
    from .bayes.fit import get_model_class
    from .bayes.spec import ModelSpec, load_spec

    cls = get_model_class(_model_key(model))
    spec = spec if isinstance(spec, ModelSpec) else load_spec(cls.name, spec)
    opts = getattr(cls, attr, None) or {}
    return replace(spec, options={**spec.options, **opts}) if opts else spec


def placebo_spec(model: str, spec=None):
    """The spec of ``model``'s placebo refits: ``spec`` (a ModelSpec, a TOML path or None for the
    model's own) with the model class's ``placebo_options`` on top, options under which every
    placebo timing of a panel gives the same model structure, so that the refits reuse one
    compilation (staggered: ``cohort_levels = "panel"``)."""
    return _spec_with(model, spec, "placebo_options")


def sbc_spec(model: str, spec=None):
    """The spec of ``model``'s SBC fits: ``spec`` with the model class's ``sbc_options`` on top,
    options that leave the model's likelihood as it is but spare what a calibration does not rank
    (threshold: ``compare = false``, the LOO comparison of 0, 1 and 2 thresholds that refits two
    more models per replicate and whose ``n_thresholds`` is a decision, not a posterior draw)."""
    return _spec_with(model, spec, "sbc_options")


def placebo_task(panel, *, model: str, priors, spec, sampler: dict, seed: int, units, years,
                 mode: str, replicate: int = 0) -> dict:
    """One placebo replicate (an engine task): the model's 95% interval and TWFE's."""
    from .bayes.fit import make_model

    pp = placebo_panel(panel, units, years, mode)
    m = make_model(model, pp, priors, placebo_spec(model, spec))
    fit = fit_once(m, m.build(), sampler, seed, model)
    est = _headline(model)
    if est not in fit.params:
        raise ModelError(f"the {model} model gave no estimand '{est}' on this placebo panel")
    e = fit.params[est]
    lo, hi = e["hdi95"]
    return {"status": "ok", "replicate": replicate, "seed": seed, "units": units, "years": years,
            "estimand": est, "estimate": e["mean"], "sd": e["sd"], "interval": [lo, hi],
            "excludes_zero": bool(lo > 0 or hi < 0), "diagnostics": _diag(fit),
            "twfe": twfe_placebo(pp)}


@dataclass
class CalibrationResult(SavesSummary):
    """A calibration's summary (the summary.json dict) and the engine run behind it."""

    kind: str
    model: str
    summary: dict
    run: RunResult
    figures: dict = field(default_factory=dict)


def _sampler(draws, tune, chains) -> dict:
    return {"draws": draws or DEFAULT_SAMPLER["draws"], "tune": tune or DEFAULT_SAMPLER["tune"],
            "chains": chains or DEFAULT_SAMPLER["chains"]}


def _run_replicates(kind: str, model: str, task: str, kwargs, panel, out, **engine) -> tuple:
    """One engine task per replicate (``kwargs``: each task's keywords) of the calibration
    function ``task`` into ``out/calibration/<kind>/<model>``: (that folder, the run, the results
    that finished ok). ``engine``: workers, scheduler, progress, on_cluster of run_tasks."""
    dest = calibration_dir(out, kind, model)
    shared_digest = digest(panel.df)
    fn = f"bayes_nqp.calibration:{task}"
    tasks = [Task(task_key(fn, kw, shared_digest), fn, kw) for kw in kwargs]
    run = run_tasks(tasks, dest, shared=panel, **engine)
    return dest, run, [r for r in run.results if r.get("status") == "ok"]


def _spec_arg(spec):
    return None if spec is None else str(spec)


def calibration_dir(out, kind: str, model: str) -> Path:
    return Path(out) / "calibration" / kind / _model_key(model)


def calibrate_placebo(model: str, panel, n: int = 100, *, mode: str = "never", share: float = 0.5,
                      priors="default", spec=None, draws=None, tune=None, chains=None, seed: int = 0,
                      workers: int | None = None, scheduler: str | None = None,
                      out: str | Path = "reports", progress=None, on_cluster=None) -> CalibrationResult:
    """Placebo-law calibration of ``model`` on ``panel`` (module docstring): ``n`` placebo panels,
    refitted on the engine (``workers``/``scheduler`` as in :func:`.engine.run_tasks`). Writes
    ``out/calibration/placebo/<model>/summary.json`` and returns a :class:`CalibrationResult`."""
    key = _model_key(model)
    if key not in registry.headline_models():
        raise ModelError(f"no placebo calibration for model '{model}' (its spec declares no headline "
                         f"estimand); choose from {', '.join(registry.headline_models())}")
    if mode not in PLACEBO_MODES:
        raise ModelError(f"placebo mode '{mode}' is not one of {', '.join(PLACEBO_MODES)}")
    sampler = _sampler(draws, tune, chains)
    dest, run, ok = _run_replicates(
        "placebo", model, "placebo_task",
        [{"model": key, "priors": _priors_arg(priors), "spec": _spec_arg(spec), "sampler": sampler,
          "mode": mode, **d} for d in placebo_draws(panel, n, seed, mode, share)],
        panel, out, workers=workers, scheduler=scheduler, progress=progress, on_cluster=on_cluster)
    k = sum(r["excludes_zero"] for r in ok)
    k_iid = sum(r["twfe"]["iid"]["excludes_zero"] for r in ok)
    k_cl = sum(r["twfe"]["cluster"]["excludes_zero"] for r in ok)
    m = len(ok)
    rows = [{"replicate": r["replicate"], "seed": r["seed"], "placebo_units": r["units"],
             "placebo_years": r["years"], "estimate": r["estimate"], "sd": r["sd"],
             "interval": r["interval"], "excludes_zero": r["excludes_zero"],
             "twfe_iid": r["twfe"]["iid"], "twfe_cluster": r["twfe"]["cluster"],
             "diagnostics": r["diagnostics"], "seconds": r["seconds"]} for r in ok]
    summary = {
        "kind": "placebo", "model": key, "estimand": _headline(key), "mode": mode, "share": share,
        "n": m, "n_requested": n, "failed": run.failed,
        "false_positive_rate": k / m if m else None, "false_positive_ci95": wilson(k, m),
        "twfe_iid_rate": k_iid / m if m else None, "twfe_iid_ci95": wilson(k_iid, m),
        "twfe_cluster_rate": k_cl / m if m else None, "twfe_cluster_ci95": wilson(k_cl, m),
        "nominal": 0.05, "priors": _priors_arg(priors), "sampler": sampler, "seed": seed,
        "data": panel.data_block(), "engine": _engine_block(run), "replicates": rows,
        "errors": run.errors,
    }
    if panel.simulated:
        summary["notice"] = SIMULATED_NOTICE
    res = CalibrationResult("placebo", key, jsonable(summary), run)
    res.save(dest)
    return res


def _priors_arg(priors):
    if isinstance(priors, (str, Path)):
        return str(priors)
    raise ModelError("a calibration takes the prior set by name or TOML path (it travels to workers)")


def _engine_block(run: RunResult) -> dict:
    secs = [r.get("seconds") for r in run.results if r.get("seconds") is not None]
    return {"engine": run.engine, "workers": run.workers, "done": run.done, "reused": run.reused,
            "failed": run.failed, "seconds": run.seconds,
            "task_seconds_total": float(np.sum(secs)) if secs else 0.0,
            "compilations": int(sum(r.get("compiled", 0) for r in run.results))}


# ---- simulation-based calibration ----------------------------------------------------------------

def simulate_twoway(model, params: dict, rng, noise_scale: float = 1.0) -> np.ndarray:
    """The two-way models' generative process (did, heterogeneity): their own
    :meth:`~bayes_nqp.bayes.did.TwoWayModel.simulate` (unit intercepts, unit-varying effects,
    AR(1) or iid errors, fixed or pooled year effects), on the standardised scale."""
    return model.simulate(params, rng, noise_scale=noise_scale)


#: model name -> simulate(model, params, rng, noise_scale) returning the standardised outcome,
#: for a model kept outside the package without a ``simulate`` method; a model class's own
#: ``simulate(params, rng, noise_scale=1.0)`` takes precedence (every registered model has one)
SIMULATORS: dict = {}

#: the latents' key under which a simulator returns the panel columns it draws besides the
#: outcome, on their original scale ({column: values}; mediation: its mediators)
SIMULATED_COLUMNS = "columns"


def rank(draws: np.ndarray, truth: float, rng) -> int:
    """The rank of ``truth`` among ``draws``: the number below it, plus a uniform share of the
    ties (a parameter on a grid, the threshold γ, has many; without this its ranks pile low)."""
    below = int(np.sum(draws < truth))
    ties = int(np.sum(draws == truth))
    return below + (int(rng.integers(0, ties + 1)) if ties else 0)


def simulator_for(model):
    """``sim(model, params, rng, noise_scale)`` returning (y_z, latents): the model's own
    ``simulate`` method, else an entry of :data:`SIMULATORS` (no latents)."""
    own = getattr(model, "simulate", None)
    if callable(own):
        import inspect

        if "latents" in inspect.signature(own).parameters:
            return lambda m, params, rng, noise_scale=1.0: own(params, rng, noise_scale=noise_scale,
                                                               latents=True)
        return lambda m, params, rng, noise_scale=1.0: (own(params, rng, noise_scale=noise_scale), {})
    if model.name in SIMULATORS:
        return lambda m, params, rng, noise_scale=1.0: (SIMULATORS[model.name](m, params, rng, noise_scale), {})
    raise ModelError(f"the {model.name} model has no simulator for SBC; it needs a "
                     f"simulate(params, rng) method (see bayes_nqp.calibration)")


def has_simulator(cls) -> bool:
    return callable(getattr(cls, "simulate", None)) or cls.name in SIMULATORS


def _with_scale(model, y, y_mean: float, y_sd: float, base=None):
    """Fix the model's outcome scale to the observed panel's (the prior's scale). A model whose
    other data are standardised too, or that precomputes statistics of its standardised data when
    it is made (mediation, threshold), does the rest in its ``use_scales_of(base)``."""
    model.y_mean, model.y_sd = y_mean, y_sd
    model.y_z = (np.asarray(y, dtype=float) - y_mean) / y_sd
    hook = getattr(model, "use_scales_of", None)
    if base is not None and callable(hook):
        hook(base)
    return model


def prior_draw(pm_model, seed: int) -> dict:
    """One joint draw of the free parameters from the prior."""
    import pymc as pm

    rvs = list(pm_model.free_RVs)
    vals = pm.draw(rvs, random_seed=seed)
    return {rv.name: np.asarray(v) for rv, v in zip(rvs, vals)}


def _flat(est) -> dict:
    """A model's estimands by their flat names (a dict from a model kept outside the package)."""
    return est if isinstance(est, dict) else E.flatten(est)


def _as_posterior(model, values: dict, dims: dict | None = None):
    """A one-draw DataTree of ``values`` (so that ``model.estimands`` gives the true estimands),
    with the model's dims where ``dims`` (name -> dims, e.g. ``named_vars_to_dims``) gives them."""
    import xarray as xr

    dims = dims or {}

    def names(k, v):
        d = tuple(dims.get(k) or ())
        return d if len(d) == np.ndim(v) else tuple(f"{k}_dim_{i}" for i in range(np.ndim(v)))

    ds = xr.Dataset({k: (("chain", "draw", *names(k, v)), np.asarray(v, dtype=float)[None, None])
                     for k, v in values.items()}, coords={"chain": [0], "draw": [0]})
    return xr.DataTree.from_dict({"posterior": ds})


def sbc_task(panel, *, model: str, priors, spec, sampler: dict, seed: int, replicate: int = 0,
             thin_to: int = 100, noise_scale: float = 1.0) -> dict:
    """One SBC replicate: prior draw → simulated outcome → fit → rank of each true value."""
    from .bayes.fit import make_model

    spec = sbc_spec(model, spec)
    base = make_model(model, panel, priors, spec)
    pm_base = base.build()
    truth = prior_draw(pm_base, seed)
    rng = np.random.default_rng([seed, 1])
    y_z, latent = simulator_for(base)(base, truth, rng, noise_scale=noise_scale)
    columns = latent.pop(SIMULATED_COLUMNS, {})
    y = base.y_mean + base.y_sd * y_z
    sim = base.panel.subset(np.ones(len(base.panel.df), dtype=bool))  # the rows the model reads
    sim.df["y"] = y
    for col, values in columns.items():
        sim.df[col] = values
    m = _with_scale(make_model(model, sim, priors, spec), y, base.y_mean, base.y_sd, base)
    fit = fit_once(m, m.build(), sampler, seed, model)
    true_est = {k: float(np.asarray(v).ravel()[0])
                for k, v in _flat(m.estimands(_as_posterior(m, {**truth, **latent},
                                                            {"alpha": ("unit",), "tau_unit_z": ("unit",),
                                                             **pm_base.named_vars_to_dims}))).items()
                if np.asarray(v).size == 1}
    post = fit.idata["posterior"].to_dataset()
    scalars = {rv.name: float(np.asarray(truth[rv.name])) for rv in pm_base.free_RVs
               if np.asarray(truth[rv.name]).size == 1 and rv.name in post}
    ranks = {}
    S = next(iter(fit.draws.values())).size if fit.draws else post.sizes["chain"] * post.sizes["draw"]
    idx = np.unique(np.linspace(0, S - 1, min(thin_to, S)).astype(int))
    tie_rng = np.random.default_rng([seed, 2])
    constant = []  # one value over the draws here: calibrate_sbc drops those constant everywhere
    for name, tv in true_est.items():
        d = np.asarray(fit.draws[name], dtype=float).ravel()[idx]
        if not np.ptp(d) > 0:  # one value, or undefined (NaN: rho_breakdown when none is found)
            constant.append(name)
        ranks[name] = rank(d, tv, tie_rng)
    for name, tv in scalars.items():
        if name in ranks or name.removesuffix("_z") in ranks:  # tau_z ranks as tau does
            continue
        d = post[name].to_numpy().ravel()[idx]
        ranks[name] = rank(d, tv, tie_rng)
    return {"status": "ok", "replicate": replicate, "seed": seed, "ranks": ranks, "constant": constant,
            "n_draws": int(len(idx)), "truth": {**scalars, **true_est}, "diagnostics": _diag(fit)}


def ranked_estimands(results: list[dict]) -> tuple[list[str], list[str]]:
    """(estimands to test, estimands left out) over the replicates' ``results``. A number of the
    whole posterior (breakdown_M, rho_breakdown, n_thresholds) is one value, or undefined, in
    every replicate: not a draw, no rank. One that is constant in some replicates only (γ on its
    grid, when the data pin it to one point) is ranked there too: dropping those would select."""
    names = sorted(set().union(*[r["ranks"] for r in results])) if results else []
    out = [nm for nm in names if all(nm in r.get("constant", ()) for r in results if nm in r["ranks"])]
    return [nm for nm in names if nm not in out], out


def uniformity_pvalue(ranks, n_draws: int, seed: int = 0) -> float:
    """P-value of the PIT uniformity test (``arviz_stats``, method ``pot_c``) for ranks in
    0..n_draws, randomised within their bin so the PIT is continuous."""
    from arviz_stats.base import array_stats

    r = np.asarray(ranks, dtype=float)
    u = np.random.default_rng(seed).uniform(size=r.shape)
    pit = (r + u) / (n_draws + 1)
    p = array_stats.uniformity_test(pit, axis=-1)[0]
    return float(np.asarray(p))


def _sbc_figure(name: str, ranks, n_draws: int, pvalue, seed: int, simulated: bool):
    """Rank histogram (with the 99% band of a bin count under uniformity) and the Δ-ECDF of the
    PIT with simultaneous 95% bands (``arviz_stats.ecdf_utils.ecdf_pit``)."""
    import matplotlib.pyplot as plt
    from arviz_stats.ecdf_utils import ecdf_pit
    from scipy import stats

    from .results import title_figure

    r = np.asarray(ranks, dtype=float)
    n = len(r)
    pit = (r + np.random.default_rng(seed).uniform(size=n)) / (n_draws + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    bins = min(20, n_draws + 1, max(5, n // 5))
    ax1.hist(r, bins=bins, range=(0, n_draws + 1), color="0.55", edgecolor="white")
    lo, hi = stats.binom.ppf([0.005, 0.995], n, 1 / bins)
    ax1.axhspan(lo, hi, color="C0", alpha=0.15, label="99% band per bin")
    ax1.axhline(n / bins, color="C0", lw=1)
    ax1.set(xlabel=f"rank of the true value among {n_draws} posterior draws", ylabel="replicates",
            title="rank histogram")
    ax1.legend(fontsize=7, loc="upper right")
    x, ecdf, lower, upper = ecdf_pit(pit, 0.95, 1000, rng=np.random.default_rng(214))
    ax2.fill_between(x, lower - x, upper - x, step="post", color="C0", alpha=0.15,
                     label="simultaneous 95% band")
    ax2.step(x, ecdf - x, where="post", color="C1")
    ax2.axhline(0, color="0.4", lw=0.8, ls="--")
    ax2.set(xlabel="PIT", ylabel="ECDF − uniform CDF",
            title=f"Δ-ECDF (uniformity p = {pvalue:.3g})" if pvalue is not None else "Δ-ECDF")
    ax2.legend(fontsize=7, loc="upper right")
    title_figure(fig, f"SBC of {name} ({n} replicates)", simulated)
    fig.tight_layout(rect=(0, 0.05, 1, 0.93))
    return fig


def calibrate_sbc(model: str, panel, n: int = 100, *, priors="default", spec=None, draws=None,
                  tune=None, chains=None, seed: int = 0, thin_to: int = 100, alpha: float = 0.01,
                  noise_scale: float = 1.0, workers: int | None = None, scheduler: str | None = None,
                  out: str | Path = "reports", progress=None, on_cluster=None,
                  figures: bool = True) -> CalibrationResult:
    """Simulation-based calibration of ``model`` on ``panel``'s design (module docstring).
    ``noise_scale`` ≠ 1 simulates with a wrong noise scale (a check that SBC can fail)."""
    from .bayes.fit import get_model_class

    key = _model_key(model)
    cls = get_model_class(key)
    if not has_simulator(cls):
        from .bayes.base import MODELS

        raise ModelError(f"the {key} model has no simulator for SBC yet; models with one: "
                         f"{', '.join(sorted(n for n, c in MODELS.items() if has_simulator(c)))}")
    sampler = _sampler(draws, tune, chains)
    dest, run, ok = _run_replicates(
        "sbc", model, "sbc_task",
        [{"model": key, "priors": _priors_arg(priors), "spec": _spec_arg(spec), "sampler": sampler,
          "seed": int(ss.generate_state(1)[0]), "replicate": i, "thin_to": thin_to,
          "noise_scale": float(noise_scale)} for i, ss in enumerate(np.random.SeedSequence(seed).spawn(n))],
        panel, out, workers=workers, scheduler=scheduler, progress=progress, on_cluster=on_cluster)
    names, not_ranked = ranked_estimands(ok)
    estimands, figs = {}, {}
    for name in names:
        rs = [r["ranks"][name] for r in ok if name in r["ranks"]]
        L = ok[0]["n_draws"]
        p = uniformity_pvalue(rs, L, seed) if len(rs) >= 2 else None
        hist, _ = np.histogram(rs, bins=min(20, L + 1), range=(0, L + 1))
        estimands[name] = {"pvalue_uniform": p, "ranks": rs, "n_draws": L,
                           "histogram": hist.tolist()}
        if figures and len(rs) >= 2:
            try:
                figs[f"sbc_{name}"] = _sbc_figure(name, rs, L, p, seed, panel.simulated)
            except Exception as exc:  # a figure that fails is logged, not fatal
                log.warning("SBC figure for %s failed: %s", name, exc)
    pvals = [e["pvalue_uniform"] for e in estimands.values() if e["pvalue_uniform"] is not None]
    cut = alpha / max(1, len(pvals))
    summary = {"kind": "sbc", "model": key, "n": len(ok), "n_requested": n, "failed": run.failed,
               "estimands": estimands, "not_ranked": not_ranked,
               "passed": bool(pvals) and min(pvals) > cut,
               "test": {"method": "PIT uniformity (arviz_stats pot_c)", "alpha": alpha,
                        "bonferroni_cut": cut},
               "noise_scale": noise_scale, "priors": _priors_arg(priors), "sampler": sampler,
               "thin_to": thin_to, "seed": seed, "data": panel.data_block(),
               "engine": _engine_block(run), "errors": run.errors}
    if panel.simulated:
        summary["notice"] = SIMULATED_NOTICE
    res = CalibrationResult("sbc", key, jsonable(summary), run, figs)
    res.save(dest)
    return res
