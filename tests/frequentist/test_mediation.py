"""Mediation section: the three regressions against statsmodels, Sobel, the cluster bootstrap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyfixest as pf
import pytest
import statsmodels.formula.api as smf

from bayes_nqp.frequentist import replicate
from bayes_nqp.frequentist.mediation import bootstrap_ab, mediate, mediation


@pytest.fixture(scope="module")
def med(panel):
    return mediate(panel, "hc", reps=99, seed=7)


def _sm(formula, df):
    return smf.ols(formula, data=df).fit(cov_type="cluster", cov_kwds={"groups": df["unit_idx"]})


def test_coefficients_match_statsmodels_with_dummies(panel, med):
    df = panel.df
    total = _sm("y ~ D + x1 + x2 + C(unit) + C(time)", df)
    a = _sm("hc ~ D + x1 + x2 + C(unit) + C(time)", df)
    b = _sm("y ~ D + hc + x1 + x2 + C(unit) + C(time)", df)
    assert med["total"]["estimate"] == pytest.approx(total.params["D"], abs=1e-6)
    assert med["a"]["estimate"] == pytest.approx(a.params["D"], abs=1e-6)
    assert med["b"]["estimate"] == pytest.approx(b.params["hc"], abs=1e-6)
    assert med["direct"]["estimate"] == pytest.approx(b.params["D"], abs=1e-6)
    # cluster SEs agree up to the two libraries' small-sample factors (dummies counted or not)
    assert med["a"]["se"] == pytest.approx(a.bse["D"], rel=0.1)


def test_sobel_p_small_when_a_and_b_nonzero(med):
    assert med["sobel_p"] < 1e-6
    assert med["indirect"] == pytest.approx(med["a"]["estimate"] * med["b"]["estimate"])


def test_sobel_p_large_when_a_is_zero(make_panel):
    out = mediate(make_panel(effect=0.5, a=0.0, b=0.5, seed=8), "hc", reps=0)
    assert out["sobel_p"] > 0.05


def test_bootstrap_ci_covers_true_indirect(med):
    lo, hi = med["indirect_ci95"]
    assert lo < 0.4 * 0.5 < hi


def test_bootstrap_replicate_equals_refit_on_duplicated_units(panel):
    # a unit drawn k times with its own fixed effect each time ≡ weight k
    seed = 3
    draw = bootstrap_ab(panel, panel.df, "hc", ["x1", "x2"], reps=1, seed=seed)[0]
    rng = np.random.default_rng(seed)
    units = np.unique(panel.df["unit_idx"])
    picked = rng.choice(units, size=len(units), replace=True)
    parts = [panel.df[panel.df["unit_idx"] == u].assign(boot_id=k) for k, u in enumerate(picked)]
    boot = pd.concat(parts, ignore_index=True)
    a = pf.feols("hc ~ D + x1 + x2 | boot_id + time", data=boot).coef()["D"]
    b = pf.feols("y ~ D + hc + x1 + x2 | boot_id + time", data=boot).coef()["hc"]
    assert draw == pytest.approx(a * b, abs=1e-9)


def test_bootstrap_same_seed_same_interval(panel):
    x = mediate(panel, "hc", reps=20, seed=1)["indirect_ci95"]
    y = mediate(panel, "hc", reps=20, seed=1)["indirect_ci95"]
    assert x == y


def test_section_table_has_one_row_per_mediator(panel):
    res = mediation(panel, reps=10)
    assert list(res.tables["mediation"]["mediator"]) == ["hc"]
    assert set(res.summary["mediation"]["hc"]) >= {"total", "a", "b", "direct", "indirect",
                                                    "indirect_ci95", "sobel_p"}


def test_mediation_skipped_with_reason_without_mediators(make_panel):
    summary = replicate("mediation", make_panel(mediators=False, seed=9))
    assert "mediation" not in summary
    assert "mediators" in summary["skipped"]["mediation"]


def test_unbalanced_panel_uses_one_common_sample(make_panel):
    p = make_panel(effect=0.5, a=0.4, b=0.5, seed=10, drop_frac=0.05)
    out = mediate(p, "hc", reps=20)
    assert out["n_obs"] == p.n_obs and out["indirect_ci95"][0] < out["indirect_ci95"][1]
