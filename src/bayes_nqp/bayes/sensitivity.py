"""Prior sensitivity: refit a model under several prior sets, and power-scaling diagnostics.

What to know first: a refit does not recompile. Every prior's hyperparameters are ``pm.Data``
(see :mod:`.priors`), so one nutpie compilation serves every prior set whose distribution
*families* match on the priors the model uses; only the hyperparameter values are swapped
(``compiled.with_data(**hyper_values(...))``). A set that changes a family (``Normal`` →
``StudentT``, say) is compiled once more, and that compilation is reused in turn.

``sensitivity("did", panel, prior_sets=("default", "weak", "skeptical"))`` returns a
:class:`SensitivityResult`: one :class:`~.fit.Fit` per set and a table of the model's key
estimands (``key_estimands`` of the model class; every estimand when it names none) across the
sets, on the outcome's original scale. ``.save(DIR/sensitivity/<model>)`` writes
``summary.json``, ``table.csv``, ``table.md`` and ``figure.png``.

:func:`power_scaling` is the power-scaling check (Kallioinen et al. 2024, ArviZ
``psense_summary``) that :func:`~.fit.finish` runs on every fit: how much each estimand moves
when the prior or the likelihood is raised to a power near 1, estimated by importance sampling
from the one posterior, without refitting. Only the priors taken from the prior set are
power-scaled (the hierarchical parts of a model, such as standard-normal unit offsets, are
structure rather than prior belief, and scaling them would confound the diagnosis).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import SpecError
from ..paths import output_root
from ..results import SIMULATED_NOTICE, jsonable, save_figure, save_table, title_figure, write_json
from .fit import Fit, compile_model, finish, get_model_class, sample
from .priors import hyper_values
from .spec import ModelSpec, PriorSet, load_prior_set, load_spec

log = logging.getLogger(__name__)

DEFAULT_PRIOR_SETS = ("default", "weak", "skeptical")
#: free parameters with more elements than this are left out of the power-scaling table
#: (city effects would swamp it; the estimands built from them are in it)
PSENSE_MAX_SIZE = 12
#: psense_summary's cut-off on the power-scaling sensitivity (its default)
PSENSE_THRESHOLD = 0.05
_DIAGNOSIS = {"✓": "ok"}


# ---- power-scaling sensitivity -------------------------------------------------------------

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
    dt = xr.DataTree.from_dict({"posterior": quantities, "log_prior": lp, "log_likelihood": ll})
    df = psense_summary(dt, threshold=PSENSE_THRESHOLD, round_to=4)
    out = {}
    for label, row in df.iterrows():
        diagnosis = _DIAGNOSIS.get(row["diagnosis"], row["diagnosis"])
        out[str(label)] = {"prior": float(row["prior"]), "likelihood": float(row["likelihood"]),
                           "diagnosis": diagnosis, "flagged": diagnosis != "ok"}
    return jsonable(out)


# ---- refits under several prior sets --------------------------------------------------------

def _structure(priors: PriorSet, used: dict[str, str]) -> tuple:
    """The distribution families of the priors a model uses: what a compiled graph depends on."""
    return tuple(sorted((rv, priors[name].dist) for rv, name in used.items()))


@dataclass
class SensitivityResult:
    """Fits of one model under several prior sets, and its key estimands across them."""

    model: str
    fits: dict[str, Fit]                     # prior set name -> Fit (in the order given)
    prior_sets: dict[str, PriorSet]
    estimands: list[str]
    compilations: int = 0
    reused: list[str] = field(default_factory=list)   # sets sampled without compiling
    seconds: float = 0.0
    used_priors: dict[str, str] = field(default_factory=dict)  # rv -> prior name in the sets

    def table(self) -> pd.DataFrame:
        """One row per estimand and prior set: mean, sd, 95% HDI and its width, P(>0), gates."""
        rows = []
        for est in self.estimands:
            for name, f in self.fits.items():
                e = f.params.get(est)
                if e is None:
                    continue
                rows.append({"estimand": est, "prior_set": name, "mean": e["mean"], "sd": e["sd"],
                             "hdi95_lo": e["hdi95"][0], "hdi95_hi": e["hdi95"][1],
                             "hdi95_width": e["hdi95"][1] - e["hdi95"][0],
                             "p_positive": e["p_positive"], "passed": f.passed})
        return pd.DataFrame(rows, columns=["estimand", "prior_set", "mean", "sd", "hdi95_lo",
                                           "hdi95_hi", "hdi95_width", "p_positive", "passed"])

    def stability(self) -> dict:
        """Per estimand: the range of P(>0) across sets and whether its sign verdict holds.

        The verdict classes are those of the report (P(>0) ≥ 0.95, 0.8–0.95, below): an estimand
        is ``stable`` when every prior set puts it in the same class.
        """
        out = {}
        tbl = self.table()
        for est, g in tbl.groupby("estimand", sort=False):
            p = g["p_positive"].to_numpy(float)
            classes = {_p_class(x) for x in p}
            out[est] = {"p_positive_min": float(p.min()), "p_positive_max": float(p.max()),
                        "mean_min": float(g["mean"].min()), "mean_max": float(g["mean"].max()),
                        "stable": len(classes) == 1}
        return out

    def summary_json(self) -> dict:
        first = next(iter(self.fits.values()), None)
        data = first.data if first is not None else {}
        table = {}
        for est in self.estimands:
            table[est] = {name: {k: f.params[est][k] for k in ("mean", "sd", "hdi95", "p_positive")}
                          for name, f in self.fits.items() if est in f.params}
        out = {
            "model": self.model,
            "data": data,
            "prior_sets": {name: {"source": ps.source,
                                  "priors": {k: v.describe() for k, v in ps.priors.items()
                                             if not self.used_priors or k in self.used_priors.values()}}
                           for name, ps in self.prior_sets.items()},
            "sampler": first.sampler.__dict__ if first is not None and hasattr(first.sampler, "__dict__")
            else (first.sampler if first is not None else {}),
            "estimands": self.estimands,
            "table": table,
            "stability": self.stability(),
            "diagnostics": {name: {k: f.diag.get(k) for k in ("passed", "failures", "rhat_max",
                                                              "ess_bulk_min", "divergences")}
                            for name, f in self.fits.items()},
            "compilations": self.compilations,
            "reused_compiled": self.reused,
            "seconds": self.seconds,
        }
        if data.get("simulated"):
            out["notice"] = SIMULATED_NOTICE
        return jsonable(out)

    def figure(self):
        """Posterior mean and 95% HDI of each key estimand under each prior set."""
        import matplotlib.pyplot as plt

        tbl = self.table()
        names = list(self.fits)
        n = max(len(self.estimands), 1)
        fig, axes = plt.subplots(n, 1, figsize=(6.5, 0.45 * len(names) * n + 0.8 * n + 0.6),
                                 squeeze=False)
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for ax, est in zip(axes[:, 0], self.estimands):
            g = tbl[tbl["estimand"] == est].set_index("prior_set")
            for k, name in enumerate(names):
                if name not in g.index:
                    continue
                r = g.loc[name]
                y = len(names) - 1 - k
                ax.plot([r["hdi95_lo"], r["hdi95_hi"]], [y, y], color=colors[k % len(colors)], lw=2)
                ax.plot(r["mean"], y, "o", color=colors[k % len(colors)])
            ax.axvline(0, color="0.5", lw=0.8, ls="--")
            ax.set_yticks(range(len(names)), names[::-1])
            ax.set_title(est, fontsize=10, loc="left")
        axes[-1, 0].set_xlabel("posterior mean and 95% HDI (outcome scale)")
        title_figure(fig, f"{self.model}: key estimands under each prior set", self.simulated)
        fig.tight_layout()
        return fig

    @property
    def simulated(self) -> bool:
        first = next(iter(self.fits.values()), None)
        return bool(first is not None and first.data.get("simulated"))

    def save(self, out: str | Path) -> Path:
        """Write table.csv, table.md, figure.png and summary.json (last: its presence = complete)."""
        out = Path(out)
        with output_root(out):
            save_table(self.table(), out / "table", simulated=self.simulated)
            save_figure(self.figure(), out / "figure.png")
            write_json(out / "summary.json", self.summary_json())
        return out


def _p_class(p: float) -> str:
    return "high" if p >= 0.95 else ("middle" if p >= 0.8 else "low")


def sensitivity(model: str, panel, prior_sets=DEFAULT_PRIOR_SETS, *, spec: ModelSpec | str | Path | None = None,
                quick: bool = False, draws=None, tune=None, chains=None, seed=None, target_accept=None,
                cores=None, estimands=None, base: Fit | None = None, progress=None,
                sampler_progress=None, loo: bool = False, ppc: bool = False,
                psense: bool = False) -> SensitivityResult:
    """Refit ``model`` under each prior set (names, TOML paths or PriorSet objects).

    Sampler settings are the spec's (``quick``: its [quick] table) with the overrides given; every
    set uses the same seed, so the sets differ by their priors only. ``base``: a fit already made
    under one of the sets with the same sampler settings (the pipeline's main fit); it is used as
    that set's result, and its compiled model (``fit(..., keep_compiled=True)``) is reused for the
    others. ``progress(message)`` is called before each step; ``sampler_progress`` goes to nutpie.
    LOO, PPC and power-scaling are off by default (the main fit has them).
    """
    t0 = time.perf_counter()
    cls = get_model_class(model)
    spec = spec if isinstance(spec, ModelSpec) else load_spec(cls.name, spec)
    sets = [load_prior_set(s) for s in prior_sets]
    names = [s.name for s in sets]
    if not sets:
        raise SpecError("sensitivity needs at least one prior set")
    if len(set(names)) != len(names):
        raise SpecError(f"prior sets must have distinct names, got {names}")
    settings = (spec.quick if quick else spec.sampler).override(
        draws=draws, tune=tune, chains=chains, seed=seed, target_accept=target_accept, cores=cores)
    say = progress or (lambda msg: None)

    fits: dict[str, Fit] = {}
    compiled: list[tuple] = []   # (structure, model, pm_model, compiled, priors it was built with)
    n_compiled, reused = 0, []
    if base is not None and base.compiled_ is not None:
        m, pm_model, comp = base.compiled_
        compiled.append((_structure(m.priors, m.used_priors), m, pm_model, comp, m.priors))
    if base is not None:
        base_name = base.priors.name if isinstance(base.priors, PriorSet) else base.priors.get("name")
        if base_name in names and _same_settings(base.sampler, settings):
            fits[base_name] = base
    try:
        for ps in sets:
            if ps.name in fits:
                continue
            t1 = time.perf_counter()
            hit = next((c for c in compiled if c[0] == _structure(ps, c[1].used_priors)), None)
            if hit is None:
                say(f"{cls.name}: compiling for prior set '{ps.name}'")
                m = cls(panel, spec, ps)
                pm_model, comp = compile_model(m)
                n_compiled += 1
                compiled.append((_structure(ps, m.used_priors), m, pm_model, comp, ps))
                this = comp
            else:
                _, m, pm_model, comp, _ = hit
                values = hyper_values(ps, m.used_priors)
                this = comp.with_data(**values)
                _set_data(pm_model, values)   # log-prior, PPC and LOO read the PyMC model
                m.priors = ps
                reused.append(ps.name)
            say(f"{cls.name}: sampling under prior set '{ps.name}'")
            idata = sample(this, settings, progress=sampler_progress or False)
            # refits draw no model figures: the sensitivity figure is the one that matters here
            f = finish(m, pm_model, idata, settings, replication=None, seconds0=t1, loo=loo, ppc=ppc,
                       psense=psense, figures=False)
            fits[ps.name] = f
    finally:
        # leave every reused model as it was built, so that a base fit reads true afterwards
        for _, m, pm_model, _, built in compiled:
            m.priors = built
            _set_data(pm_model, hyper_values(built, m.used_priors))
    fits = {n: fits[n] for n in names if n in fits}
    keys = list(estimands or cls.key_estimands) or list(next(iter(fits.values())).params)
    first = next(iter(fits.values()))
    keys = [k for k in keys if k in first.params] or list(first.params)
    return SensitivityResult(model=cls.name, fits=fits, prior_sets={s.name: s for s in sets},
                             estimands=keys, compilations=n_compiled, reused=reused,
                             seconds=time.perf_counter() - t0,
                             used_priors=dict(compiled[0][1].used_priors) if compiled else {})


def _set_data(pm_model, values: dict) -> None:
    import pymc as pm

    pm.set_data(values, model=pm_model)


def _same_settings(a, b) -> bool:
    a = a.__dict__ if hasattr(a, "__dict__") else dict(a or {})
    b = b.__dict__ if hasattr(b, "__dict__") else dict(b or {})
    # every setting but the number of cores changes the draws
    return all(a.get(k) == b.get(k) for k in (set(a) | set(b)) - {"cores"})
