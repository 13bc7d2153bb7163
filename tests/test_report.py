"""The report, built from hand-written saved results (no sampling): the verdict rules, contrasts
in either orientation, missing sections with their reason, failed gates in red, escaping."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

import numpy as np

import bayes_nqp as bn
from bayes_nqp import estimands as E
from bayes_nqp.errors import BayesNQPError
from bayes_nqp.report.build import build_report
from bayes_nqp.report.claims import claims, lookup


def entry(mean, lo, hi, p):
    return {"mean": mean, "sd": (hi - lo) / 4, "hdi95": [lo, hi], "p_positive": p}


def diagnostics(passed=True):
    return {"passed": passed, "rhat_max": 1.002 if passed else 1.08, "ess_bulk_min": 900 if passed else 80,
            "ess_tail_min": 700, "divergences": 0, "failures": [] if passed else ["R-hat 1.080 > 1.01 (tau_z)"],
            "warnings": [], "per_param": {}}


def fit_summary(model, params, passed=True, comparison=None, simulated=True, index=None):
    return {"model": model, "data": {"simulated": simulated, "n_obs": 100, "n_units": 10},
            "priors": {"name": "default", "contents": {}}, "sampler": {"draws": 1000, "tune": 1000,
                                                                      "chains": 4, "seed": 1},
            "params": params, "diagnostics": diagnostics(passed), "comparison": comparison or {},
            "seconds": 1.0, "estimand_index": index or {}}


def group_index(group, *levels) -> dict:
    """The estimand index of group effects and contrasts (later − earlier level), draws unused."""
    x = {lv: np.zeros((1, 1)) for lv in levels}
    return E.index(E.dataset({f"tau_{group}": E.by_level(x, group), f"contrast_{group}": E.contrasts(x, group)}))


def write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


@pytest.fixture
def saved(tmp_path):
    """A results folder as `bayes-nqp run` leaves it, minus posteriors and the manifest."""
    write(tmp_path / "did" / "summary.json", fit_summary(
        "did", {"tau": entry(0.025, 0.017, 0.033, 0.999)},
        comparison={"tau": {"frequentist": {"estimate": 0.024, "ci95": [0.013, 0.034], "source": "TWFE"},
                            "bayesian": {"mean": 0.025, "hdi95": [0.017, 0.033]}}}))
    write(tmp_path / "heterogeneity" / "summary.json", fit_summary("heterogeneity", {
        "tau[region=east]": entry(0.03, 0.02, 0.04, 1.0),
        "tau[region=central]": entry(0.01, -0.005, 0.025, 0.9),
        "tau[region=west]": entry(0.03, 0.02, 0.04, 1.0),
        # stored the other way round: the claim needs east − central
        "contrast[region:central-east]": entry(-0.02, -0.035, -0.005, 0.01),
        "contrast[region:west-central]": entry(0.02, 0.004, 0.036, 0.985),
    }, index=group_index("region", "east", "central", "west")))
    write(tmp_path / "mediation" / "summary.json", fit_summary(
        "mediation", {"indirect[hc]": entry(0.004, 0.002, 0.006, 1.0)}, passed=False))
    write(tmp_path / "sensitivity" / "did" / "summary.json", {
        "model": "did", "prior_sets": {"default": {}, "skeptical": {}}, "estimands": ["tau"],
        "table": {"tau": {"default": entry(0.025, 0.017, 0.033, 0.999),
                          "skeptical": entry(0.012, -0.004, 0.028, 0.91)}},
        "diagnostics": {"default": {"passed": True}, "skeptical": {"passed": True}},
        "stability": {"tau": {"stable": False}}, "compilations": 1, "reused_compiled": ["skeptical"]})
    write(tmp_path / "replication" / "summary.json", {
        "data": {"simulated": True, "n_obs": 100, "n_units": 10},
        "did": {"estimate": 0.024, "se": 0.005, "ci95": [0.013, 0.034], "pvalue": 0.001},
        "skipped": {"threshold": "the threshold regression needs the role 'threshold', which the "
                                 "column map does not give"}})
    return tmp_path


def by_id(cl):
    return {c["id"]: c for c in cl}


# ---- the verdict rules -----------------------------------------------------------------------

def test_a_contrast_stored_the_other_way_round_is_flipped():
    s = {"params": {"contrast[g:b-a]": entry(-0.02, -0.035, -0.005, 0.01)}, "estimand_index": group_index("g", "a", "b")}
    e = lookup(s, "contrast[g:a-b]")
    assert e["mean"] == 0.02 and e["hdi95"] == [0.005, 0.035]
    assert e["p_positive"] == pytest.approx(0.99) and e["flipped_from"] == "contrast[g:b-a]"


def test_demo_claims_judge_the_central_region_as_a_null_claim_and_west_east_by_the_contrast(saved):
    from bayes_nqp.report.claims import DEMO_CLAIMS, load_claims

    fits = {m: json.loads((saved / m / "summary.json").read_text()) for m in ("did", "heterogeneity", "mediation")}
    c = by_id(claims(fits, {}, {}, claim_set=load_claims(DEMO_CLAIMS), outcome_sd=0.1))
    central = c["region_central"]
    assert central["kind"] == "null" and central["rope"] == pytest.approx(0.01)
    # HDI [-0.005, 0.025] overlaps the ROPE ±0.01 and zero: not evidence of no effect
    assert central["verdict"] == "inconclusive", central["why"]
    assert c["region_west_vs_east"]["verdict"] == "not assessed"  # no west − east contrast saved


def test_a_claim_that_holds_only_under_some_prior_sets_is_weaker(saved):
    fits = {"did": json.loads((saved / "did" / "summary.json").read_text())}
    sens = {"did": json.loads((saved / "sensitivity" / "did" / "summary.json").read_text())}
    agree = {"did": {"table": {"tau": {"default": fits["did"]["params"]["tau"]}}}}
    assert by_id(claims(fits, agree, {}, []))["effect"]["verdict"] == "supported"
    assert by_id(claims(fits, {}, {}, []))["effect"]["verdict"] == "weaker"  # not refitted
    assert by_id(claims(fits, sens, {}, []))["effect"]["verdict"] == "weaker"


def test_a_model_that_is_missing_leaves_its_claims_not_assessed_with_the_reason():
    c = by_id(claims({}, {}, {"threshold": "skipped: no threshold role"}, [], threshold="q"))
    assert c["threshold"]["verdict"] == "not assessed"
    assert c["threshold"]["why"] == "skipped: no threshold role"


# ---- the threshold comparison: a stage of its own, read from its file --------------------------

def threshold_folder(out: Path, preferred: int, made_for_seed: int = 1) -> None:
    """A threshold fit's summary.json and the comparison stage's file, made for the fit with
    sampler seed ``made_for_seed`` (the fit's own is 1)."""
    from bayes_nqp.bayes.threshold import ThresholdComparison
    from bayes_nqp.contract import stage_record

    s = fit_summary("threshold", {"slope_diff[2-1]": entry(0.1, 0.04, 0.16, 0.999)})
    s["spec"] = {"name": "threshold", "options": {"n_thresholds": 1, "compare": True}}
    write(out / "threshold" / "summary.json", s)
    rows = ({"model": "1", "rank": 0, "elpd": -10.0, "elpd_diff": 0.0, "dse": 0.0, "n_thresholds": 1},
            {"model": "0", "rank": 1, "elpd": -11.0, "elpd_diff": -1.0, "dse": 1.5, "n_thresholds": 0})
    res = ThresholdComparison(preferred=preferred, rule="the fewest within 2 dse", rows=rows, fitted=1)
    made_for = {**s, "sampler": {**s["sampler"], "seed": made_for_seed}}
    write(out / "threshold" / "compare_thresholds.json", stage_record(made_for, "compare_thresholds", res.to_json()))


@pytest.mark.parametrize("preferred", [0, 1])
def test_the_threshold_comparison_stages_file_drives_the_fragile_verdict(tmp_path, preferred):
    from bayes_nqp.report.tables import load_fits

    threshold_folder(tmp_path, preferred)
    fits = load_fits(tmp_path)
    assert "n_thresholds" not in json.loads((tmp_path / "threshold" / "summary.json").read_text()).get("extras", {})
    assert fits["threshold"]["extras"]["n_thresholds"]["preferred"] == preferred
    c = by_id(claims(fits, {}, {}, [], threshold="q"))["threshold"]
    if preferred == 0:
        assert c["verdict"] == "fragile" and "LOO does not prefer" in c["why"]
    else:
        assert c["verdict"] != "fragile" and "LOO" not in c["why"]


def test_a_comparison_made_for_another_fit_is_not_read(tmp_path):
    from bayes_nqp.report.tables import load_fits

    threshold_folder(tmp_path, preferred=0, made_for_seed=2)  # an earlier run's, other seed
    fits = load_fits(tmp_path)
    assert "n_thresholds" not in fits["threshold"].get("extras", {})
    assert by_id(claims(fits, {}, {}, [], threshold="q"))["threshold"]["verdict"] != "fragile"


def test_the_report_shows_the_threshold_comparison_from_its_file(tmp_path):
    threshold_folder(tmp_path, preferred=1)
    md = build_report(tmp_path)["md"].read_text(encoding="utf-8")
    loo = md.split("## Model comparison (LOO)")[1].split("\n## ")[0]
    assert "threshold: its own LOO comparison (0, 1 and 2 thresholds)" in loo


# ---- the report built from saved results ------------------------------------------------------

def test_report_builds_from_saved_results_without_a_manifest(saved):
    paths = build_report(saved)
    md = paths["md"].read_text(encoding="utf-8")
    manifest = md.split("## Run manifest")[1]
    assert "No manifest.json" in manifest and "pymc" in manifest


def test_missing_models_say_why(saved):
    md = build_report(saved)["md"].read_text(encoding="utf-8")
    staggered = md.split("## Staggered adoption (staggered)")[1].split("\n## ")[0]
    assert "Not available:** no saved results for the staggered model" in staggered


def test_replication_sections_skipped_show_their_reason(saved):
    md = build_report(saved)["md"].read_text(encoding="utf-8")
    assert "Section threshold skipped: the threshold regression needs the role 'threshold'" in md


def test_a_failed_gate_is_red_and_named_at_the_top(saved):
    html = build_report(saved)["html"].read_text(encoding="utf-8")
    top = html[:html.find("<nav>")]
    assert "FAILED the diagnostic gates: mediation" in top
    assert '<tr class="bad"><td>mediation</td><td>no</td>' in html


def test_the_simulated_notice_is_at_the_top_and_in_the_data_section(saved):
    html = build_report(saved)["html"].read_text(encoding="utf-8")
    assert html.count("SIMULATED DATA") >= 2
    assert html.find("SIMULATED DATA") < html.find("<h2")


def test_real_data_carry_no_simulated_notice(saved):
    for p in saved.rglob("summary.json"):
        s = json.loads(p.read_text())
        if "data" in s:
            s["data"]["simulated"] = False
            p.write_text(json.dumps(s))
    html = build_report(saved)["html"].read_text(encoding="utf-8")
    assert "SIMULATED DATA" not in html


def test_user_text_is_escaped_in_the_html(saved):
    s = json.loads((saved / "did" / "summary.json").read_text())
    s["diagnostics"]["warnings"] = ["<script>alert(1)</script>"]
    (saved / "did" / "summary.json").write_text(json.dumps(s))
    html = build_report(saved)["html"].read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_a_fit_this_run_skipped_is_not_shown_from_an_older_run(saved):
    write(saved / "manifest.json", {"status": "done", "options": {"models": ["did", "mediation"]},
                                    "stages": {"fit:did": {"status": "done"},
                                               "fit:mediation": {"status": "skipped",
                                                                 "reason": "needs the role 'mediators'"}}})
    md = build_report(saved)["md"].read_text(encoding="utf-8")
    mediation = md.split("## Mediation (mediation)")[1].split("\n## ")[0]
    assert "skipped: needs the role 'mediators'" in mediation
    assert "indirect[hc]" not in mediation


def test_the_html_has_every_figure_inline(saved):
    html = build_report(saved)["html"].read_text(encoding="utf-8")

    class P(HTMLParser):
        srcs: list = []

        def handle_starttag(self, tag, attrs):
            self.srcs += [v for k, v in attrs if k == "src"]

    p = P()
    p.feed(html)
    assert p.srcs and all(s.startswith("data:image/png;base64,") for s in p.srcs)


def test_an_empty_folder_is_an_error_that_says_what_to_run(tmp_path):
    with pytest.raises(BayesNQPError, match="bayes-nqp run"):
        bn.report(tmp_path)


# ---- a report for any study ------------------------------------------------------------------

STUDY_WORDS = ("zhu", "chen", "smart city", "smart-city", "new quality productivity", "human capital",
               "large cities", "pilot")


def test_report_for_another_panel_without_a_claims_file_has_none_of_the_studys_words(tmp_path):
    cmap = {"unit": "state", "time": "year", "outcome": "log_wage", "treatment": "law",
            "groups": {"census_region": "census_region"}}
    write(tmp_path / "data" / "summary.json", {"path": "states.csv", "n_obs": 500, "n_units": 50,
                                                "simulated": False, "map": cmap})
    write(tmp_path / "did" / "summary.json", fit_summary("did", {"tau": entry(0.02, 0.01, 0.03, 0.99)},
                                                         simulated=False))
    write(tmp_path / "heterogeneity" / "summary.json", fit_summary("heterogeneity", {
        "tau[census_region=south]": entry(0.03, 0.02, 0.04, 1.0),
        "tau[census_region=west]": entry(0.01, -0.01, 0.03, 0.8),
        "contrast[census_region:west-south]": entry(-0.02, -0.04, 0.0, 0.05)}, simulated=False,
        index=group_index("census_region", "south", "west")))
    paths = build_report(tmp_path)
    import re

    for key, p in paths.items():  # the report and the paper tables beside it
        # embedded figures are base64 text, in which any short word can occur by chance
        doc = re.sub(r"data:image/png;base64,[a-z0-9+/=]+", "", p.read_text(encoding="utf-8").lower())
        assert not [w for w in STUDY_WORDS if w in doc], p
        if key in ("html", "md"):
            assert "log_wage" in doc and "law" in doc
            assert "contrast[census_region:west-south]" in doc


def test_claims_file_names_the_report_and_its_claims(saved, tmp_path):
    cf = tmp_path / "claims.toml"
    cf.write_text('title = "Minimum wages and employment"\ncitation = "Card & Krueger (1994)"\n'
                  '[[claim]]\nid = "e"\ntext = "No effect on employment."\nmodel = "did"\n'
                  'estimands = ["tau"]\ndirection = "null"\nrope = 0.05\n', encoding="utf-8")
    md = build_report(saved, claims=cf)["md"].read_text(encoding="utf-8")
    assert md.startswith("# Minimum wages and employment") and "Card & Krueger (1994)" in md
    assert "No effect on employment." in md and "Verdicts and their rules" in md


def test_loo_ranks_only_models_of_the_same_data_and_likelihood():
    from bayes_nqp import registry
    from bayes_nqp.report.build import loo_groups

    groups = loo_groups(registry.names())
    ranked = {m for ms in groups.values() for m in ms}
    assert {"did", "heterogeneity", "event_study"} <= set(groups["outcome"])
    assert "mediation" not in ranked and "staggered" not in ranked
    assert len(groups) == 1


def test_loo_table_never_ranks_mediation_against_did(tmp_path):
    import numpy as np
    import xarray as xr

    from bayes_nqp.report.build import _loo_compare

    rng = np.random.default_rng(0)
    for m in ("did", "mediation", "heterogeneity"):
        ll = xr.Dataset({"y": (("chain", "draw", "unit"), rng.normal(-1, 0.1, (2, 100, 20)))})
        post = xr.Dataset({"tau": (("chain", "draw"), rng.normal(size=(2, 100)))})
        (tmp_path / m).mkdir()
        xr.DataTree.from_dict({"posterior": post, "log_likelihood": ll}).to_netcdf(
            tmp_path / m / "posterior.nc", engine="netcdf4")
    blocks = _loo_compare(tmp_path, ["did", "mediation", "heterogeneity"])
    tables = [b for b in blocks if b["kind"] == "table"]
    assert len(tables) == 1
    models = {r[0] for r in tables[0]["rows"]}
    assert models == {"did", "heterogeneity"}
