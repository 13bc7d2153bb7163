"""Heterogeneity section: split samples equal pyfixest on the subsets, recovery, the Wald test."""

from __future__ import annotations

import pyfixest as pf
import pytest

from bayes_nqp.frequentist import replicate
from bayes_nqp.frequentist.heterogeneity import heterogeneity, interaction, split_sample

EFFECTS = {"east": 0.6, "central": 0.0, "west": 0.9}


@pytest.fixture(scope="module")
def grouped(make_panel):
    return make_panel(group_effects=EFFECTS, seed=4)


def test_split_sample_equals_pyfixest_on_subset(grouped):
    out = split_sample(grouped, "region")
    for level in EFFECTS:
        sub = grouped.df[grouped.df["region"] == level]
        fit = pf.feols("y ~ D + x1 + x2 | unit + time", data=sub, vcov={"CRV1": "unit"})
        assert out[level]["estimate"] == pytest.approx(fit.coef()["D"], abs=1e-10)
        assert out[level]["se"] == pytest.approx(fit.se()["D"], abs=1e-10)
        assert out[level]["n_units"] == sub["unit"].nunique()


def test_split_sample_cis_cover_known_group_effects(grouped):
    out = split_sample(grouped, "region")
    for level, truth in EFFECTS.items():
        lo, hi = out[level]["ci95"]
        assert lo < truth < hi


def test_interaction_cis_cover_known_group_effects(grouped):
    out = interaction(grouped, "region")
    for level, truth in EFFECTS.items():
        lo, hi = out[level]["ci95"]
        assert lo < truth < hi


def test_wald_equal_rejects_when_group_effects_differ(grouped):
    assert interaction(grouped, "region")["wald_equal_pvalue"] < 0.001


def test_wald_equal_not_rejected_when_group_effects_are_equal(grouped):
    # size is drawn independently of the region effects: both sizes share the same mix
    assert interaction(grouped, "size")["wald_equal_pvalue"] > 0.05


def test_section_summary_and_table_cover_every_group_level(grouped):
    res = heterogeneity(grouped)
    assert set(res.summary["heterogeneity"]) == {"region", "size"}
    assert set(res.summary["heterogeneity"]["size"]) == {"large", "small"}
    assert len(res.tables["heterogeneity"]) == 5
    assert "SIMULATED DATA" in res.figures["heterogeneity"]._suptitle.get_text()


def test_heterogeneity_skipped_with_reason_without_groups(make_panel):
    summary = replicate("heterogeneity", make_panel(groups=False, seed=6))
    assert "heterogeneity" not in summary
    assert "groups" in summary["skipped"]["heterogeneity"]


def test_demo_split_sample_shows_study_pattern(demo):
    # the study: east and west significant, central not
    out = split_sample(demo, "region")
    assert out["east"]["pvalue"] < 0.05
    assert out["west"]["pvalue"] < 0.05
    assert out["central"]["pvalue"] > 0.05
