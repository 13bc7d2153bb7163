"""Partially pooled group effects (bayes_nqp.bayes.heterogeneity): the options, the estimand
names, recovery of known group effects, the contrasts, and the groups table and figure."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import xarray as xr

import bayes_nqp as bn
from bayes_nqp import estimands as E
from bayes_nqp.bayes.fit import make_model
from bayes_nqp.bayes.spec import load_spec
from bayes_nqp.errors import SectionSkipped, SpecError

ZONE_EFFECTS = {"inland": -0.3, "north": 0.0, "south": 0.4}   # τ = 0.5 + these
TIER_EFFECTS = {"big": -0.2, "small": 0.2}


def het_spec(**options):
    spec = load_spec("heterogeneity")
    return replace(spec, options={**spec.options, **options})


@pytest.fixture(scope="module")
def crossed(synthetic_factory):
    """Zone and tier effects on a synthetic panel, fitted with both group variables crossed."""
    sim = synthetic_factory(n_units=90, zone_effects=ZONE_EFFECTS, tier_effects=TIER_EFFECTS,
                            noise=0.25, seed=21)
    rep = bn.replicate("heterogeneity", sim.panel)
    fit = bn.fit("heterogeneity", sim.panel, spec=het_spec(groups=["zone", "tier"]), draws=500,
                 tune=500, chains=4, seed=4, replication=rep, ppc=False)
    return sim, fit


# ---- options ----------------------------------------------------------------------------------

def test_an_unknown_group_is_a_spec_error_naming_the_known_ones(synthetic):
    with pytest.raises(SpecError, match="zone, tier"):
        make_model("heterogeneity", synthetic.panel, spec=het_spec(groups=["province"]))


def test_empty_groups_means_every_group_of_the_column_map(synthetic):
    m = make_model("heterogeneity", synthetic.panel, spec=het_spec(groups=[]))
    assert m.group_vars == ["zone", "tier"]
    assert m.coords()["zone"] == ["inland", "north", "south"]


def test_a_panel_without_groups_is_skipped_with_a_reason(synthetic_factory):
    sim = synthetic_factory(seed=2)
    no_groups = bn.panel_from_frame(sim.raw, {"unit": "firm", "time": "period", "outcome": "output",
                                              "cohort": "first_treated"})
    with pytest.raises(SectionSkipped, match="groups"):
        make_model("heterogeneity", no_groups)


# ---- estimands from a known posterior (no sampling) --------------------------------------------

def fake_posterior(model, tau_z: float, deltas: dict[str, dict[str, float]]):
    """A posterior whose draws are all equal to the given values (2 chains × 3 draws)."""
    shape = (2, 3)
    data = {"tau_z": (("chain", "draw"), np.full(shape, tau_z))}
    for g, eff in deltas.items():
        vals = np.array([eff[lv] for lv in model.levels[g]])
        data[f"delta_{g}"] = (("chain", "draw", g), np.broadcast_to(vals, shape + vals.shape))
    return xr.DataTree.from_dict({"posterior": xr.Dataset(data, coords={g: model.levels[g] for g in deltas})})


def test_estimands_are_named_per_level_and_per_pair_of_levels(synthetic):
    m = make_model("heterogeneity", synthetic.panel, spec=het_spec(groups=["zone"]))
    ds = m.estimands(fake_posterior(m, 0.5, {"zone": {"inland": -0.1, "north": 0.0, "south": 0.2}}))
    assert ds["tau_zone"].dims == ("chain", "draw", "zone")
    assert list(ds["contrast_zone"]["zone_pair"].values) == ["north-inland", "south-inland", "south-north"]
    draws = E.flatten(ds)
    assert list(draws) == ["tau", "tau[zone=inland]", "tau[zone=north]", "tau[zone=south]",
                           "contrast[zone:north-inland]", "contrast[zone:south-inland]",
                           "contrast[zone:south-north]"]
    assert draws["tau[zone=south]"][0, 0] == pytest.approx(0.7 * m.y_sd)
    assert draws["contrast[zone:south-inland]"][0, 0] == pytest.approx(0.3 * m.y_sd)
    assert draws["tau"].shape == (2, 3)


def test_crossed_group_effects_average_the_other_group_over_treated_cells(synthetic):
    m = make_model("heterogeneity", synthetic.panel, spec=het_spec(groups=["zone", "tier"]))
    zone = {"inland": 0.0, "north": 0.0, "south": 0.0}
    draws = E.flatten(m.estimands(fake_posterior(m, 0.0, {"zone": zone, "tier": {"big": 1.0, "small": 0.0}})))
    south_treated = (m.codes["zone"] == m.levels["zone"].index("south")) & m.treated
    share_big = (m.codes["tier"][south_treated] == m.levels["tier"].index("big")).mean()
    assert draws["tau[zone=south]"][0, 0] == pytest.approx(share_big * m.y_sd)
    assert draws["tau"][0, 0] == pytest.approx((m.codes["tier"][m.treated] == 0).mean() * m.y_sd)


# ---- the fit: recovery, contrasts, table, figure -----------------------------------------------

def test_heterogeneity_recovers_known_group_effects(crossed, mc):
    sim, fit = crossed
    assert fit.passed, fit.diag["failures"]
    for g in ("zone", "tier"):
        for level, truth in sim.truth["tau_by"][g].items():
            mc.in_hdi(fit.draws[f"tau[{g}={level}]"], truth, f"tau[{g}={level}]")
    mc.in_hdi(fit.draws["tau"], sim.truth["tau"], "tau")


def test_contrasts_have_the_sign_of_the_true_differences(crossed):
    _, fit = crossed
    assert fit.params["contrast[zone:south-inland]"]["p_positive"] > 0.99   # truth +0.7
    assert fit.params["contrast[zone:south-north]"]["p_positive"] > 0.99    # truth +0.4
    assert fit.params["contrast[zone:north-inland]"]["p_positive"] > 0.95   # truth +0.3
    assert fit.params["contrast[tier:small-big]"]["p_positive"] > 0.99      # truth +0.4


def test_groups_table_puts_the_split_sample_twfe_next_to_each_level(crossed):
    sim, fit = crossed
    row = fit.extras["groups"]["zone"]["south"]
    assert set(row) >= {"mean", "hdi95", "p_positive", "n_units", "frequentist"}
    assert row["n_units"] == sim.panel.df.loc[sim.panel.df["zone"] == "south", "unit"].nunique()
    assert row["frequentist"]["source"] == "split-sample TWFE"
    assert row["mean"] == pytest.approx(fit.params["tau[zone=south]"]["mean"])


def test_comparison_maps_each_level_to_its_split_sample_estimate(crossed):
    _, fit = crossed
    assert set(fit.comparison_) == {"tau[zone=inland]", "tau[zone=north]", "tau[zone=south]",
                                    "tau[tier=big]", "tau[tier=small]"}


def test_forest_figure_is_marked_simulated(crossed):
    from bayes_nqp.report.figures import model_figures

    _, fit = crossed
    fig = model_figures(None, fit.summary_json(), None, ["groups"])["groups"]
    assert "SIMULATED DATA" in fig._suptitle.get_text()
    assert len(fig.axes) == 3  # zone, tier, contrasts
