r"""Hierarchical two-way difference-in-differences.

.. math::

    y_{it} = \mu + \alpha_i + \gamma_t + \tau D_{it} + X_{it}\beta + \varepsilon_{it},\quad
    \alpha_i \sim N(0, \sigma_\alpha^2),\quad \textstyle\sum_t \gamma_t = 0,\quad
    \varepsilon_{it} \sim N(0, \sigma^2)\ \text{or}\ t_\nu(0, \sigma)

Priors (prior set names): ``tau``, ``beta``, ``intercept``, ``sigma``, ``sigma_unit``,
``sigma_time``, ``nu``; all on the standardised scale. Estimand: ``tau`` on the outcome's scale.
"""

from __future__ import annotations

import numpy as np
import pymc as pm

from .base import BayesModel, register


@register("did")
class DIDModel(BayesModel):
    replication_section = "did"
    key_estimands = ("tau",)

    def build(self) -> pm.Model:
        with pm.Model(coords=self.coords()) as m:
            mu = self.prior("mu", "intercept")
            sigma_unit = self.prior("sigma_unit")
            z = pm.Normal("unit_z", 0, 1, dims="city")
            alpha = pm.Deterministic("alpha", z * sigma_unit, dims="city")
            eta = mu + alpha[self.unit_idx]
            if self.panel.time_effects:
                sigma_time = self.prior("sigma_time")
                g = pm.ZeroSumNormal("gamma", sigma=sigma_time, dims="year")
                eta = eta + g[self.time_idx]
            tau_z = self.prior("tau_z", "tau")
            eta = eta + tau_z * self.D
            if self.X_z.shape[1]:
                beta = self.prior("beta", dims="control")
                eta = eta + pm.math.dot(self.X_z, beta)
            sigma = self.prior("sigma")
            if self.spec.option("likelihood", "normal") == "student_t":
                nu = self.prior("nu")
                pm.StudentT("y", nu=nu, mu=eta, sigma=sigma, observed=self.y_z, dims="obs")
            else:
                pm.Normal("y", mu=eta, sigma=sigma, observed=self.y_z, dims="obs")
        return m

    def estimands(self, idata):
        tau = idata["posterior"]["tau_z"].to_numpy() * self.y_sd
        return {"tau": tau}

    def comparison(self, replication):
        e = replication.get("did_controls" if self.panel.controls else "did")
        if not e:
            return {}
        return {"tau": {"estimate": e["estimate"], "ci95": e["ci95"],
                        "source": "TWFE " + ("with controls" if self.panel.controls else "without controls")}}
