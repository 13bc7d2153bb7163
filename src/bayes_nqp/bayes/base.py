"""The base of every Bayesian model: data prep on a documented scale, priors from the prior set,
named dims, and the narrow interface the fit machinery calls.

The interface: ``build()`` (the PyMC model), ``postprocess()`` (derived draws), ``estimands()``
(draws on the outcome's scale, a Dataset with named dims: :mod:`bayes_nqp.estimands`), ``log_likelihood()``, ``posterior_predictive()`` and
``extras()`` (the model's own summary entries). Nothing else: the comparison with the replication
is data (``[[compare]]`` in the spec, :mod:`bayes_nqp.compare`), the figures are the report's
(:mod:`bayes_nqp.report.figures`), and the title, introduction and prior-sensitivity flag are the
spec's ``[model]`` declarations (:mod:`bayes_nqp.registry`).

Adding a model = a module with a subclass registered by ``@register("<name>")``, a
``models/<name>.toml`` and one line in ``registry.MODULES`` (see ARCHITECTURE.md).
"""

from __future__ import annotations

from typing import ClassVar

import zlib

import numpy as np
import pymc as pm

from ..errors import ModelError
from .priors import prior_rv
from .spec import ModelSpec, PriorSet


#: where :func:`bayes_nqp.bayes.fit.sample` records the sampler's seed on the posterior
SEED_ATTR = "sampler_seed"


#: thinning of the post-processing on long panels (did, mediation, threshold): posterior
#: predictive draws kept per chain, and at most PPC_MAX_VALUES draws × rows of them (at least 2
#: per chain; 2·10⁷ values are 160 MB); above LOO_MAX_VALUES draws × rows the per-unit
#: log-likelihoods for LOO use LOO_THIN_DRAWS evenly thinned draws (the residuals cost draws × rows)
PPC_DRAWS_PER_CHAIN = 250
PPC_MAX_VALUES = 20_000_000
LOO_MAX_VALUES = 400_000_000
LOO_THIN_DRAWS = 500


def even_draws(post, per_chain: int):
    """``post`` keeping ``per_chain`` evenly spaced draws of each chain (the same in every chain;
    all of them if there are fewer)."""
    n = post.sizes["draw"]
    return post.isel(draw=np.unique(np.linspace(0, n - 1, max(1, min(per_chain, n))).astype(int)))


def ppc_draws(post, n_rows: int, per_chain: int | None = None, max_values: int | None = None):
    """The posterior draws a posterior predictive check replicates ``n_rows`` rows from:
    ``per_chain`` per chain, fewer (at least 2) when draws × rows would exceed ``max_values``
    (defaults: this module's PPC_DRAWS_PER_CHAIN and PPC_MAX_VALUES, read at the call)."""
    per_chain = PPC_DRAWS_PER_CHAIN if per_chain is None else per_chain
    max_values = PPC_MAX_VALUES if max_values is None else max_values
    cap = max(2, max_values // max(1, n_rows * post.sizes["chain"]))
    return even_draws(post, min(per_chain, cap))


def loo_draws(post, n_rows: int, max_values: int | None = None, thin: int | None = None):
    """The posterior draws the per-unit log-likelihoods are computed on: all of them, or
    ``thin`` evenly thinned ones when draws × rows exceed ``max_values`` (defaults: this
    module's LOO_THIN_DRAWS and LOO_MAX_VALUES, read at the call)."""
    max_values = LOO_MAX_VALUES if max_values is None else max_values
    thin = LOO_THIN_DRAWS if thin is None else thin
    if post.sizes["chain"] * post.sizes["draw"] * n_rows <= max_values:
        return post
    return even_draws(post, max(1, thin // post.sizes["chain"]))


def draws_rng(idata, draws, salt: int = 0) -> np.random.Generator:
    """The generator of a model's random draws made after sampling (unit effects drawn from their
    conditionals, a threshold's cell): seeded from the sampler's seed recorded on the posterior
    (``attrs["sampler_seed"]``), so that the same seed gives the same draws in every process. A seed
    taken from the bits of the draws themselves would not: a Dask worker's σ draws can differ from
    the main process's in the 14th digit (its single BLAS thread), and a threshold's γ draws then
    came out wholly different. Without a recorded seed, from the bits of ``draws``."""
    seed = idata["posterior"].attrs.get(SEED_ATTR) if "posterior" in idata.children else None
    if seed is not None:
        return np.random.default_rng([int(seed), 0x5EED, int(salt)])
    return np.random.default_rng(zlib.crc32(np.ascontiguousarray(draws).tobytes()) + int(salt))

#: model name -> class. Filled by @register in each model module.
MODELS: dict[str, type["BayesModel"]] = {}


def register(name: str):
    def deco(cls):
        cls.name = name
        MODELS[name] = cls
        return cls
    return deco


class BayesModel:
    """Base class. Subclasses implement ``build`` and ``estimands``.

    Scale: the outcome is standardised (``self.y_z``, mean ``self.y_mean``, sd ``self.y_sd``) and
    so are continuous controls (``self.X_z``); priors in models/priors/*.toml live on that scale,
    and estimands are reported on the outcome's original scale.
    """

    name: ClassVar[str] = ""
    #: panel roles the model needs (see Panel.require)
    needs: ClassVar[tuple[str, ...]] = ("outcome", "treatment")
    #: the observed variable used for posterior predictive checks and LOO
    observed: ClassVar[str] = "y"
    #: the replication section this model is compared with, and options for running it
    replication_section: ClassVar[str | None] = None
    replication_options: ClassVar[dict] = {}
    #: estimands shown first in tables and used in prior sensitivity
    key_estimands: ClassVar[tuple[str, ...]] = ()

    def __init__(self, panel, spec: ModelSpec, priors: PriorSet):
        panel.require(*self.needs, what=f"the Bayesian {self.name} model")
        self.panel = panel
        self.spec = spec
        self.priors = priors
        self.used_priors: dict[str, str] = {}  # rv name -> prior name (for sensitivity refits)
        df = panel.df
        self.df = df
        self.unit_idx = df["unit_idx"].to_numpy()
        self.time_idx = df["time_idx"].to_numpy()
        if "y" in df:
            y = df["y"].to_numpy(float)
            self.y_mean, self.y_sd = float(y.mean()), float(y.std())
            if self.y_sd == 0:
                raise ModelError("the outcome is constant; there is nothing to model")
            self.y_z = (y - self.y_mean) / self.y_sd
        self.D = df["D"].to_numpy(float) if "D" in df else None
        self.X_z, self.x_mean, self.x_sd = self.standardise(panel.controls)

    # ---- helpers for subclasses -----------------------------------------------------------
    def standardise(self, cols):
        if not cols:
            return np.zeros((len(self.df), 0)), np.zeros(0), np.ones(0)
        X = self.df[list(cols)].to_numpy(float)
        m, s = X.mean(0), X.std(0)
        s[s == 0] = 1.0
        return (X - m) / s, m, s

    def prior(self, rv: str, prior_name: str | None = None, **kw):
        """Create ``rv`` with the prior set's ``prior_name`` (default: rv) inside the model."""
        prior_name = prior_name or rv
        self.used_priors[rv] = prior_name
        return prior_rv(prior_name, self.priors[prior_name], rv_name=rv, **kw)

    def year_effect_params(self) -> dict:
        """The year effects ``gamma`` (dims "year") as the spec's ``year_effects`` option has them:
        "fixed" (default) = the prior set's wide zero-sum ``year`` prior; "pooled" = ZeroSumNormal
        with a learned scale ``sigma_time`` (shrinks them; changes the estimand). ``{}`` when the
        panel has no time effects."""
        if not self.panel.time_effects:
            return {}
        if getattr(self, "year_effects", "fixed") == "pooled":
            sigma_time = self.prior("sigma_time")
            return {"gamma": pm.ZeroSumNormal("gamma", sigma=sigma_time, dims="year")}
        return {"gamma": self.prior("gamma", "year", dims="year")}

    def coords(self) -> dict:
        c = {"unit": [str(u) for u in self.panel.units], "year": [int(t) if float(t).is_integer() else float(t)
                                                                   for t in self.panel.times],
             "obs": np.arange(len(self.df))}
        if self.panel.controls:
            c["control"] = list(self.panel.controls)
        return c

    @staticmethod
    def flat(idata, var: str) -> np.ndarray:
        """Posterior draws of ``var`` with chain and draw stacked first: shape (S, ...)."""
        da = idata["posterior"][var]
        arr = da.to_numpy()
        return arr.reshape((-1,) + arr.shape[2:])

    # ---- the interface ---------------------------------------------------------------------------
    def build(self) -> pm.Model:  # pragma: no cover - abstract
        raise NotImplementedError

    def estimands(self, idata):  # pragma: no cover - abstract
        """The estimand draws on the outcome's original scale as a labelled ``xarray.Dataset``
        (:func:`bayes_nqp.estimands.dataset`: dims chain, draw and at most one real dim per
        variable, e.g. ``beta(event_time)``); its :func:`~bayes_nqp.estimands.flatten` names the
        summary's params. (A ``{name: (chains, draws)}`` dict is still accepted.)"""
        raise NotImplementedError

    def postprocess(self, idata, pm_model):
        """Add derived variables to the posterior (e.g. marginalised effects drawn afterwards;
        random draws from :func:`draws_rng`)."""
        return idata

    def extras(self, idata, draws: dict[str, np.ndarray], replication: dict | None = None) -> dict:
        """Model-specific summary entries (sensitivity curves, probabilities ...); ``replication``:
        the replication summary the fit is compared with, or None. (The comparison itself is
        data: ``[[compare]]`` in the model's spec, read by :func:`bayes_nqp.compare.compare`.)"""
        return {}

    def assumptions(self) -> list[str]:
        """What the model's intervals rest on, in words (summary.json ``extras.assumptions``)."""
        return ["errors are independent within a unit and the treatment effect is common to all "
                "units: intervals are not robust to serial correlation or to units that disagree "
                "(narrower than a unit-clustered SE can be)"]

    def estimand_labels(self) -> dict[str, str]:
        """Estimand name -> what it is (summary.json ``extras.estimands``, and ``estimand`` of its
        comparison entry); optional."""
        return {}

    def log_likelihood(self, idata, pm_model):
        """Pointwise log-likelihood for LOO; default: PyMC's for the observed variable."""
        ll = pm.compute_log_likelihood(idata, model=pm_model, var_names=[self.observed],
                                       extend_inferencedata=False, progressbar=False)
        ll = ll["log_likelihood"] if "log_likelihood" in getattr(ll, "children", {}) else ll
        return ll.to_dataset() if hasattr(ll, "to_dataset") else ll

    def unit_log_likelihood(self, post, ll: np.ndarray):
        """Per-city log-likelihood draws ``ll`` (chain·draw stacked, city) as the Dataset that
        LOO reads: the models that integrate unit effects out leave one city out, not one row."""
        import xarray as xr

        return xr.Dataset({self.observed: (("chain", "draw", "unit"),
                                           ll.reshape(post.sizes["chain"], post.sizes["draw"], -1))},
                          coords={"chain": post["chain"].to_numpy(), "draw": post["draw"].to_numpy(),
                                  "unit": self.coords()["unit"]})

    def posterior_predictive(self, idata, pm_model, seed: int):
        """Posterior predictive draws of the observed variable (original scale not required)."""
        pp = pm.sample_posterior_predictive(idata, model=pm_model, var_names=[self.observed],
                                            random_seed=seed, progressbar=False,
                                            freeze_vars=[v.name for v in pm_model.free_RVs + pm_model.deterministics])
        return pp["posterior_predictive"].to_dataset()

    def observed_values(self) -> np.ndarray:
        """The data the posterior predictive draws are compared with (same scale)."""
        return self.y_z
