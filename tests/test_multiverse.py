"""The multiverse of specifications: the grid, each specification's panel, the estimates (TWFE
equals pyfixest directly), the summary's shares and influence table, resume, the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

import bayes_nqp as bn
from bayes_nqp import spec_curve as mv


@pytest.fixture(scope="module")
def demo():
    return bn.demo_panel()


def test_grid_is_the_product_of_the_choices_with_priors_for_the_bayesian_estimators_only(demo):
    k = len(demo.controls)
    levels = sum(demo.df[c].nunique() for c in demo.groups.values())
    n_samples = 1 + levels + len(demo.cohorts) + 1
    specs = mv.grid(demo, estimators="twfe,bayes_did", priors="default,weak")
    assert len(specs) == (1 + 2) * (2 + k) * n_samples
    assert {s["priors"] for s in specs if s["estimator"] == "twfe"} == {None}
    assert {s["priors"] for s in specs if s["estimator"] == "bayes_did"} == {"default", "weak"}
    assert {s["controls"] for s in specs} == {"none", "all", *[f"-{c}" for c in demo.controls]}
    assert len(mv.grid(demo, estimators="twfe", controls="none", samples="all")) == 1
    with pytest.raises(bn.ModelError, match="unknown estimator"):
        mv.grid(demo, estimators="ols")


def test_spec_panels_drop_what_their_sample_says(demo):
    c = demo.cohorts[0]
    p = mv.spec_panel(demo, "none", f"-cohort={mv._label(c)}")
    assert not (p.df["cohort"] == c).any() and p.controls == []
    assert p.n_units == demo.n_units - demo.df.loc[demo.df["cohort"] == c, "unit"].nunique()
    g, col = next(iter(demo.groups.items()))
    lv = sorted(demo.df[col].astype(str).unique())[0]
    p = mv.spec_panel(demo, f"-{demo.controls[0]}", f"-{g}={lv}")
    assert lv not in set(p.df[col].astype(str)) and p.controls == demo.controls[1:]
    w = mv.spec_panel(demo, "all", "window")
    assert w.balanced and w.times.min() >= demo.times.min() and w.times.max() <= demo.times.max()
    first = list(demo.times).index(min(demo.cohorts))
    assert w.times.min() == demo.times[max(0, first - mv.WINDOW)]


def test_twfe_spec_without_controls_equals_pyfixest_feols(demo, tmp_path):
    import pyfixest as pf

    res = bn.multiverse(demo, estimators="twfe", controls="none,all", samples="all", workers=1,
                        out=tmp_path)
    s = json.loads((tmp_path / "multiverse/summary.json").read_text())
    spec = next(x for x in s["specs"] if x["controls"] == "none")
    f = pf.feols("y ~ D | unit + time", data=demo.df, vcov={"CRV1": "unit"})
    assert spec["estimate"] == pytest.approx(float(f.coef()["D"]), rel=1e-10)
    ci = f.confint().loc["D"]
    assert spec["ci95"] == pytest.approx([float(ci.iloc[0]), float(ci.iloc[1])], rel=1e-10)
    withc = next(x for x in s["specs"] if x["controls"] == "all")
    g = pf.feols("y ~ D + " + " + ".join(demo.controls) + " | unit + time", data=demo.df,
                 vcov={"CRV1": "unit"})
    assert withc["estimate"] == pytest.approx(float(g.coef()["D"]), rel=1e-10)
    assert res.run.done == 2 and (tmp_path / "multiverse/figures/spec_curve.png").exists()


def test_summary_shares_influence_and_resume(demo, tmp_path):
    kw = dict(estimators="twfe,cs_never,cs_notyet,sun_abraham", controls="none", samples="all,cohorts",
              workers=1, out=tmp_path, figures=False)
    res = bn.multiverse(demo, **kw)
    s = res.summary
    assert s["n"] + len(s["failed"]) == s["n_specs"] == 4 * (1 + len(demo.cohorts))
    for x in s["specs"]:
        assert {"estimator", "controls", "sample", "priors", "estimate", "ci95", "seconds"} <= set(x)
        assert x["ci95"][0] <= x["estimate"] <= x["ci95"][1]
    lo = np.array([x["ci95"][0] for x in s["specs"]])
    hi = np.array([x["ci95"][1] for x in s["specs"]])
    assert s["share_positive"] == pytest.approx(np.mean(lo > 0))
    assert s["share_interval_excludes_zero"] == pytest.approx(np.mean((lo > 0) | (hi < 0)))
    # the influence table: each choice's mean estimate, sorted by how far it moves the estimate
    overall = np.mean([x["estimate"] for x in s["specs"]])
    shifts = [abs(r["shift"]) for r in s["influence"]]
    assert shifts == sorted(shifts, reverse=True)
    for r in s["influence"]:
        mine = [x["estimate"] for x in s["specs"] if str(x[r["dimension"]]) == r["choice"]]
        assert r["mean_estimate"] == pytest.approx(np.mean(mine)) and r["n"] == len(mine)
        assert r["shift"] == pytest.approx(np.mean(mine) - overall)
    assert set(s["dimensions"]) == {"estimator", "sample"}  # controls had one choice
    from bayes_nqp.frequentist.event_study import callaway_santanna

    for est, group in (("cs_never", "never_treated"), ("cs_notyet", "not_yet_treated")):
        x = next(x for x in s["specs"] if x["estimator"] == est and x["sample"] == "all")
        o = callaway_santanna(demo, control_group=group)[0]["overall"]
        assert x["estimate"] == pytest.approx(o["estimate"], rel=1e-10)
        assert x["ci95"] == pytest.approx(o["ci95"], rel=1e-10)
    again = bn.multiverse(demo, **kw)
    assert again.run.reused == s["n"] and again.run.done == 0
    assert again.summary["specs"] == s["specs"]


@pytest.mark.slow  # a fit of its own (20-40 s): the default suite stays under 10 min
def test_bayesian_did_spec_reports_its_posterior_mean_and_hdi(demo, tmp_path):
    small = mv.spec_panel(demo, "none", "all")
    res = bn.multiverse(small, estimators="bayes_did", controls="none", samples="all", priors="default",
                        workers=1, out=tmp_path, draws=150, tune=200, chains=2, figures=False)
    (x,) = res.summary["specs"]
    assert x["priors"] == "default" and x["interval"] == "95% HDI"
    assert x["ci95"][0] < x["estimate"] < x["ci95"][1]
    assert x["diagnostics"]["rhat_max"] < 1.05


def test_multiverse_command_writes_the_summary_and_refuses_bad_input(tmp_path):
    from typer.testing import CliRunner

    from bayes_nqp.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["multiverse", "--estimators", "twfe", "--controls", "none,all",
                              "--samples", "all", "--workers", "1", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "multiverse/summary.json").read_text())
    assert s["n"] == 2 and s["notice"]
    res = runner.invoke(app, ["multiverse", "--estimators", "ols", "--workers", "1", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "--multiverse" in runner.invoke(app, ["run", "--help"]).output
