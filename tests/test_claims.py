"""The verdict rules (report/claims.py): one test per rule, the claims file, the standard claims."""

from __future__ import annotations

import numpy as np
import pytest

from bayes_nqp import estimands as E
from bayes_nqp.contract import HDI, ParamEntry
from bayes_nqp.errors import SpecError
from bayes_nqp.report.claims import (DEMO_CLAIMS, VERDICT_NAMES, Claim, ClaimSet, claims_from_dict,
                                     evaluate, judge, load_claims, standard_claims)

STUDY_WORDS = ("zhu", "chen", "smart city", "smart-city", "new quality productivity", "human capital",
               "large cities", "pilot")


def entry(mean, sd, lo, hi, p=None):
    return {"mean": mean, "sd": sd, HDI: [lo, hi], "p_positive": p if p is not None else 0.5}


def summary(params, passed=True, index=None):
    return {"params": params, "diagnostics": {"passed": passed}, "comparison": {},
            "estimand_index": index or {}}


def index(**variables):
    """An estimand index (summary.json ``estimand_index``) of the variables given (draws unused)."""
    return E.index(E.dataset(variables))


def levels(group, *lv):
    """Group effects and their contrasts, levels in this order (contrasts: later − earlier)."""
    x = {v: np.zeros((1, 1)) for v in lv}
    return {f"tau_{group}": E.by_level(x, group), f"contrast_{group}": E.contrasts(x, group)}


def per_mediator(var, *meds):
    return {var: E.indexed(np.zeros((1, 1, len(meds))), "mediator", meds, var + "[{}]")}


def one(claim, fits, sens=None, **kw):
    cs = ClaimSet("t", None, (claim,))
    return evaluate(cs, fits, sens or {}, {}, **kw)[0]


def robust(model, name, e):
    """A sensitivity summary in which every prior set agrees with ``e``."""
    return {model: {"table": {name: {"default": e, "weak": e, "skeptical": e}}}}


# ---- the rule for one estimand ----------------------------------------------------------------

def test_positive_claim_is_judged_on_the_two_sided_hdi_not_on_p_positive():
    # P(>0) = 0.96 (one-sided ≥ 0.95) but the 95% HDI includes zero: not supported
    v, why = judge(entry(0.1, 0.055, -0.005, 0.21, p=0.96), "positive")
    assert v == "not supported" and "includes zero" in why
    assert judge(entry(0.1, 0.03, 0.04, 0.16, p=0.999), "positive")[0] == "supported"


def test_directional_claim_contradicted_when_hdi_on_the_other_side():
    assert judge(entry(-0.1, 0.03, -0.16, -0.04), "positive")[0] == "contradicted"
    assert judge(entry(-0.1, 0.03, -0.16, -0.04), "negative")[0] == "supported"


def test_null_claim_supported_by_mass_inside_the_rope():
    v, why = judge(entry(0.001, 0.01, -0.019, 0.021), "null", rope=0.05, rope_mass=0.99)
    assert v == "supported" and "ROPE" in why


def test_null_claim_inconclusive_when_hdi_overlaps_rope_and_zero():
    v, why = judge(entry(0.03, 0.05, -0.07, 0.13), "null", rope=0.05)
    assert v == "inconclusive" and "overlaps" in why


def test_null_claim_not_supported_when_hdi_excludes_zero():
    # the central region of the demo: P(>0) = 0.993 is not evidence of no effect
    v, _ = judge(entry(0.04, 0.015, 0.01, 0.07, p=0.993), "null", rope=0.05)
    assert v == "not supported"


def test_null_claim_contradicted_when_hdi_outside_the_rope():
    assert judge(entry(0.3, 0.05, 0.2, 0.4), "null", rope=0.05)[0] == "contradicted"


def test_rope_mass_from_the_normal_approximation_when_no_draws():
    v, why = judge(entry(0.0, 0.01, -0.02, 0.02), "null", rope=0.05)
    assert v == "supported" and "P(in ROPE) = 1.00" in why


def test_default_rope_is_a_tenth_of_the_outcome_sd():
    c = Claim("c", "no effect", "m", ("x",), "null")
    r = one(c, {"m": summary({"x": entry(0.0, 0.01, -0.02, 0.02)})}, robust("m", "x", entry(0.0, 0.01, -0.02, 0.02)),
            outcome_sd=0.5)
    assert r["rope"] == pytest.approx(0.05) and r["verdict"] == "supported"


# ---- the claim as a whole ----------------------------------------------------------------------

def test_comparative_claim_is_judged_on_the_contrast_in_either_orientation():
    # stored as east - west; the claim is west - east > 0
    fits = {"h": summary({"contrast[region:east-west]": entry(-0.2, 0.05, -0.3, -0.1, p=0.0)},
                         index=index(**levels("region", "west", "east")))}
    c = Claim("c", "stronger in the west", "h", ("contrast[region:west-east]",))
    sens = {"h": {"table": {"contrast[region:east-west]": {"weak": entry(-0.2, 0.05, -0.3, -0.1)}}}}
    r = one(c, fits, sens)
    assert c.kind(fits["h"]) == r["kind"] == "comparative"
    assert r["verdict"] == "supported", r["why"]
    assert r["evidence"][0]["mean"] == pytest.approx(0.2)


def test_verdict_that_changes_under_a_prior_set_is_at_most_weaker():
    e = entry(0.1, 0.03, 0.04, 0.16)
    sens = {"m": {"table": {"x": {"default": e, "skeptical": entry(0.03, 0.03, -0.01, 0.09)}}}}
    r = one(Claim("c", "t", "m", ("x",)), {"m": summary({"x": e})}, sens)
    assert r["verdict"] == "weaker" and "skeptical" in r["why"]


def test_estimand_not_refitted_under_the_prior_sets_is_at_most_weaker():
    e = entry(0.1, 0.03, 0.04, 0.16)
    r = one(Claim("c", "t", "m", ("x",)), {"m": summary({"x": e})}, {"m": {"table": {"tau": {}}}})
    assert r["verdict"] == "weaker" and "not refitted" in r["why"]


def test_failed_gates_make_a_supported_claim_weaker():
    e = entry(0.1, 0.03, 0.04, 0.16)
    r = one(Claim("c", "t", "m", ("x",)), {"m": summary({"x": e}, passed=False)}, robust("m", "x", e))
    assert r["verdict"] == "weaker" and "gates" in r["why"]


def test_claim_on_several_estimands_takes_the_worst():
    fits = {"m": summary({"a": entry(0.1, 0.03, 0.04, 0.16), "b": entry(0.05, 0.04, -0.03, 0.13)})}
    sens = {"m": {"table": {"a": {"d": fits["m"]["params"]["a"]}, "b": {"d": fits["m"]["params"]["b"]}}}}
    assert one(Claim("c", "t", "m", ("a", "b")), fits, sens)["verdict"] == "not supported"


def test_pretrend_breakdown_below_one_makes_a_did_claim_fragile():
    e = entry(0.1, 0.03, 0.04, 0.16)
    fits = {"did": summary({"tau": e}), "event_study": summary({"breakdown_M": entry(0.6, 0, 0.6, 0.6)})}
    r = one(Claim("c", "t", "did", ("tau",)), fits, robust("did", "tau", e))
    assert r["verdict"] == "fragile" and "breakdown M = 0.60" in r["why"]


def test_mediation_rho_breakdown_below_a_tenth_makes_the_mediator_claim_fragile():
    e = entry(0.1, 0.03, 0.04, 0.16)
    fits = {"mediation": summary({"indirect[m1]": e, "rho_breakdown[m1]": entry(0.05, 0, 0.05, 0.05)},
                                 index=index(**per_mediator("indirect", "m1"), **per_mediator("rho_breakdown", "m1")))}
    r = one(Claim("c", "t", "mediation", ("indirect[m1]",)), fits, robust("mediation", "indirect[m1]", e))
    assert r["verdict"] == "fragile" and "ρ-breakdown" in r["why"]


@pytest.mark.parametrize("preferred,pvalue,word", [(0, 0.01, "LOO"), (1, 0.2, "bootstrap")])
def test_threshold_not_preferred_by_loo_or_not_rejected_is_fragile(preferred, pvalue, word):
    e = entry(0.1, 0.03, 0.04, 0.16)
    s = summary({"slope_diff[2-1]": e})
    s["extras"] = {"n_thresholds": {"preferred": preferred}}
    r = one(Claim("c", "t", "threshold", ("slope_diff[2-1]",)), {"threshold": s},
            robust("threshold", "slope_diff[2-1]", e), replication={"threshold": {"pvalues": [pvalue]}})
    assert r["verdict"] == "fragile" and word in r["why"]


def test_threshold_preferred_and_rejected_is_supported():
    e = entry(0.1, 0.03, 0.04, 0.16)
    s = summary({"slope_diff[2-1]": e})
    s["extras"] = {"n_thresholds": {"preferred": 1}}
    r = one(Claim("c", "t", "threshold", ("slope_diff[2-1]",)), {"threshold": s},
            robust("threshold", "slope_diff[2-1]", e), replication={"threshold": {"pvalues": [0.01]}})
    assert r["verdict"] == "supported"


def test_missing_model_or_estimand_is_not_assessed_with_the_reason():
    c = Claim("c", "t", "m", ("x",))
    cs = ClaimSet("t", None, (c,))
    r = evaluate(cs, {}, {}, {"m": "skipped: no mediators"})[0]
    assert r["verdict"] == "not assessed" and "no mediators" in r["why"]
    r = one(c, {"m": summary({"y": entry(0.1, 0.03, 0.04, 0.16)})})
    assert r["verdict"] == "not assessed" and "no x" in r["why"]


def test_every_verdict_the_rules_give_is_in_the_one_table():
    got = {judge(entry(*a), d, rope=0.05)[0] for a, d in [
        ((0.1, 0.03, 0.04, 0.16), "positive"), ((0.0, 0.1, -0.2, 0.2), "positive"),
        ((-0.1, 0.03, -0.16, -0.04), "positive"), ((0.03, 0.05, -0.07, 0.13), "null")]}
    got |= {"weaker", "fragile", "not assessed"}
    assert got <= set(VERDICT_NAMES) and len(VERDICT_NAMES) == 7


# ---- the claims file and the standard claims ----------------------------------------------------

def test_demo_claims_file_reads_and_states_null_claims_by_rope():
    cs = load_claims(DEMO_CLAIMS)
    assert "Zhu" in cs.citation
    het = summary({"contrast[region:east-west]": entry(-0.2, 0.05, -0.3, -0.1)},
                  index=index(**levels("region", "west", "east")))
    kinds = {c.id: c.kind(het) for c in cs.claims}
    assert kinds["region_central"] == "null" and kinds["size_large"] == "null"
    assert kinds["region_west_vs_east"] == "comparative"
    assert {c.id: c.kind() for c in cs.claims}["region_west_vs_east"] == "directional"  # no fit: no contrast


def test_claims_file_with_a_bad_direction_or_rope_is_refused():
    with pytest.raises(SpecError, match="direction"):
        claims_from_dict({"claim": [{"id": "a", "text": "t", "model": "did", "estimands": ["tau"],
                                     "direction": "up"}]})
    with pytest.raises(SpecError, match="rope"):
        claims_from_dict({"rope": -1, "claim": []})
    with pytest.raises(SpecError, match="lacks"):
        claims_from_dict({"claim": [{"id": "a"}]})


def test_standard_claims_are_worded_from_the_map_only():
    cmap = {"outcome": "log_wage", "treatment": "min_wage_law", "mediators": ["hours"],
            "groups": {"census_region": "census_region"}, "threshold": "density"}
    fits = {"heterogeneity": summary({"tau[census_region=south]": entry(0, 1, -1, 1),
                                      "tau[census_region=west]": entry(0, 1, -1, 1),
                                      "contrast[census_region:west-south]": entry(0, 1, -1, 1)},
                                     index=index(**levels("census_region", "south", "west")))}
    cs = standard_claims(cmap, fits)
    words = " ".join([cs.title] + [c.text for c in cs.claims]).lower()
    assert "log_wage" in words and "min_wage_law" in words and "hours" in words and "density" in words
    assert not any(w in words for w in STUDY_WORDS), words
    assert any(c.estimands == ("contrast[census_region:west-south]",) for c in cs.claims)
    assert cs.citation is None


# ---- a multimodal posterior ---------------------------------------------------------------------

def test_bimodal_posterior_is_summarised_by_mode_median_and_an_hdi_set():
    rng = np.random.default_rng(1)
    x = np.r_[rng.normal(0.015, 0.002, 6000), rng.normal(0.09, 0.003, 2000)]
    e = ParamEntry.from_draws(x)
    assert e.multimodal and len(e.hdi_set) == 2
    (a1, b1), (a2, b2) = e.hdi_set
    assert a1 < 0.015 < b1 < a2 < 0.09 < b2
    # the mean lies between the modes, outside the set; the point reported is the mode
    assert b1 < e.mean < a2
    assert e.point == e.mode and a1 <= e.mode <= b1
    assert abs(e.median - 0.0165) < 0.003
    back = ParamEntry.from_json(e.to_json())
    assert back.hdi_set == e.hdi_set and back.mode == e.mode


def test_unimodal_posterior_has_no_hdi_set_and_reports_the_mean():
    e = ParamEntry.from_draws(np.random.default_rng(2).normal(1.0, 0.1, 4000))
    assert e.hdi_set is None and e.point == e.mean
