"""Prior sensitivity: refit a model under several prior sets, and power-scaling diagnostics.

What to know first: a refit does not recompile. Every prior's hyperparameters are ``pm.Data``
(see :mod:`.priors`), so one nutpie compilation serves every prior set whose distribution
*families* match on the priors the model uses; only the hyperparameter values are swapped
(:func:`.refit.with_priors`, the one refit path). A set that changes a family (``Normal`` →
``StudentT``, say) is compiled once more, and that compilation is reused in turn.

``sensitivity("did", panel, prior_sets=("default", "weak", "skeptical"))`` returns a
:class:`SensitivityResult`: one :class:`~.fit.Fit` per set and a table of the model's key
estimands (``key_estimands`` of the model class; every estimand when it names none) across the
sets, on the outcome's original scale. ``.save(DIR/sensitivity/<model>)`` writes
``summary.json``, ``table.csv``, ``table.md`` and ``figure.png``.

:func:`~.diagnostics.power_scaling` (in diagnostics, re-exported here) is the power-scaling check (Kallioinen et al. 2024, ArviZ
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

from ..contract import HDI, SENSITIVITY_COLUMNS, ParamEntry, sensitivity_row
from ..errors import SpecError
from ..paths import output_root
from ..results import SIMULATED_NOTICE, jsonable, save_figure, save_table, title_figure, write_json
from .diagnostics import PSENSE_MAX_SIZE, PSENSE_THRESHOLD, power_scaling  # noqa: F401 (re-exported)
from .fit import Fit, compile_model, finish, get_model_class, sample
from .refit import structure, with_priors
from .spec import ModelSpec, PriorSet, load_prior_set, load_spec

log = logging.getLogger(__name__)

DEFAULT_PRIOR_SETS = ("default", "weak", "skeptical")
# ---- refits under several prior sets --------------------------------------------------------

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
        rows = [sensitivity_row(est, name, ParamEntry.from_json(f.params[est]), f.passed)
                for est in self.estimands for name, f in self.fits.items() if est in f.params]
        return pd.DataFrame(rows, columns=SENSITIVITY_COLUMNS)

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
            table[est] = {name: ParamEntry.from_json(f.params[est]).to_json()
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
                ax.plot([r[f"{HDI}_lo"], r[f"{HDI}_hi"]], [y, y], color=colors[k % len(colors)], lw=2)
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
        compiled.append((structure(m.priors, m.used_priors), m, pm_model, comp, m.priors))
    if base is not None:
        base_name = base.priors.name if isinstance(base.priors, PriorSet) else base.priors.get("name")
        if base_name in names and _same_settings(base.sampler, settings):
            fits[base_name] = base
    try:
        for ps in sets:
            if ps.name in fits:
                continue
            t1 = time.perf_counter()
            hit = next((c for c in compiled if c[0] == structure(ps, c[1].used_priors)), None)
            if hit is None:
                say(f"{cls.name}: compiling for prior set '{ps.name}'")
                m = cls(panel, spec, ps)
                pm_model, comp = compile_model(m)
                n_compiled += 1
                compiled.append((structure(ps, m.used_priors), m, pm_model, comp, ps))
                this = comp
            else:
                _, m, pm_model, comp, _ = hit
                this = with_priors(m, pm_model, comp, ps)  # the PyMC model too: log-prior, PPC, LOO
                reused.append(ps.name)
            say(f"{cls.name}: sampling under prior set '{ps.name}'")
            idata = sample(this, settings, progress=sampler_progress or False)
            f = finish(m, pm_model, idata, settings, replication=None, seconds0=t1, loo=loo, ppc=ppc,
                       psense=psense)
            fits[ps.name] = f
    finally:
        # leave every reused model as it was built, so that a base fit reads true afterwards
        for _, m, pm_model, _, built in compiled:
            with_priors(m, pm_model, None, built)
    fits = {n: fits[n] for n in names if n in fits}
    # a model may name its key estimands per instance (heterogeneity: one per group level and
    # contrast; mediation: one per mediator), else on its class
    inst = compiled[0][1] if compiled else None
    keys = list(estimands or getattr(inst, "key_estimands", cls.key_estimands)) \
        or list(next(iter(fits.values())).params)
    first = next(iter(fits.values()))
    keys = [k for k in keys if k in first.params] or list(first.params)
    return SensitivityResult(model=cls.name, fits=fits, prior_sets={s.name: s for s in sets},
                             estimands=keys, compilations=n_compiled, reused=reused,
                             seconds=time.perf_counter() - t0,
                             used_priors=dict(compiled[0][1].used_priors) if compiled else {})


def _same_settings(a, b) -> bool:
    a = a.__dict__ if hasattr(a, "__dict__") else dict(a or {})
    b = b.__dict__ if hasattr(b, "__dict__") else dict(b or {})
    # every setting but the number of cores changes the draws
    return all(a.get(k) == b.get(k) for k in (set(a) | set(b)) - {"cores"})
