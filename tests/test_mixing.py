"""Runs never mix silently (issue 12 §3): results saved from other data (another file's sha256, or
another column map) are never combined with a run's: the report leaves them out and says why,
the readers skip them, and a replication of other data leaves no stale section behind.

The fits are stand-ins (a `Fit` with fixed draws, saved by the real writer): what is tested is
which saved results are combined, not sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

import bayes_nqp as bn
from bayes_nqp import pipeline
from bayes_nqp.cli import app
from bayes_nqp.frequentist import replicate_to_dir
from bayes_nqp.report import build
from bayes_nqp.report.tables import load_fits
from bayes_nqp.results import read_json

FAST = {"placebo": {"draws": 5}, "mediation": {"reps": 5}, "threshold": {"n_boot": 5}}
MAP = ('unit = "city"\ntime = "year"\noutcome = "nqp"\ncohort = "pilot_year"\n'
       'controls = ["x1", "x2"]\nmediators = ["hc"]\nsimulated = true\n[groups]\nregion = "region"\n')


def _files(make_panel, folder: Path, seed: int, effect: float, cmap_text: str = MAP):
    folder.mkdir(parents=True, exist_ok=True)
    p = make_panel(n_units=24, n_periods=6, cohorts={2013: 8, 2014: 8}, effect=effect, seed=seed)
    raw = p.df[["unit", "time", "y", "cohort", "x1", "x2", "hc", "region"]].rename(
        columns={"unit": "city", "time": "year", "y": "nqp", "cohort": "pilot_year"})
    raw["pilot_year"] = raw["pilot_year"].fillna(0)
    raw.to_csv(folder / "panel.csv", index=False)
    (folder / "map.toml").write_text(cmap_text, encoding="utf-8")
    return folder / "panel.csv", folder / "map.toml"


def fake_fit(name, panel, seed=None, **kw):
    """A fit whose tau is the panel's mean outcome (so two panels' fits differ), saved as usual."""
    from bayes_nqp.bayes.fit import Fit
    from bayes_nqp.bayes.spec import SamplerSettings, load_prior_set, load_spec
    from bayes_nqp.contract import ParamEntry

    tau = np.random.default_rng(0).normal(float(panel.df["y"].mean()), 0.01, (2, 200))
    dt = xr.DataTree.from_dict({"posterior": xr.Dataset({"tau": (("chain", "draw"), tau)})})
    data = {k: v for k, v in panel.data_block().items()
            if k in ("path", "sha256", "map_sha256", "simulated", "n_obs", "n_units")}
    return Fit(model=name, idata=dt, spec=load_spec(name), priors=load_prior_set("default"),
               sampler=SamplerSettings(draws=200, tune=10, chains=2), data=data, draws={"tau": tau},
               params={"tau": ParamEntry.from_draws(tau).to_json()},
               diag={"passed": True, "failures": [], "warnings": [], "rhat_max": 1.0,
                     "ess_bulk_min": 1000.0, "divergences": 0},
               comparison_={})


@pytest.fixture(scope="module")
def two_runs(make_panel, tmp_path_factory):
    """run on panel A (did, heterogeneity), then run on panel B (did only) into the same folder."""
    tmp_path = tmp_path_factory.mktemp("mixing")
    a = bn.load_panel(*_files(make_panel, tmp_path / "a", seed=1, effect=0.5))
    b = bn.load_panel(*_files(make_panel, tmp_path / "b", seed=2, effect=-0.5))
    assert a.sha256 != b.sha256
    out = tmp_path / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "fit_model", fake_fit)
        pipeline.run(a, out, models=["did", "heterogeneity"], prior_sets=(), replication=FAST)
        assert "heterogeneity" in (out / "report.md").read_text(encoding="utf-8")
        assert "other data" not in (out / "report.md").read_text(encoding="utf-8")
        pipeline.run(b, out, models=["did"], prior_sets=(), replication=FAST)
    return a, b, out


def _sections(out):
    return {s["id"]: s for s in build.context(out)["sections"]}


def test_a_report_never_shows_fits_made_from_other_data(two_runs):
    a, b, out = two_runs
    assert read_json(out / "heterogeneity" / "summary.json")["data"]["sha256"] == a.sha256  # still on disk
    sec = _sections(out)
    assert sec["did"]["status"] == "ok"
    het = sec["heterogeneity"]
    assert het["status"] == "missing" and "other data" in het["reason"]
    assert a.sha256[:12] in het["reason"] and b.sha256[:12] in het["reason"]
    # no verdict rests on the old fit: its claims are not assessed, and its numbers appear nowhere
    old_tau = read_json(out / "heterogeneity" / "summary.json")["params"]["tau"]["mean"]
    html = (out / "report.html").read_text(encoding="utf-8")
    md = (out / "report.md").read_text(encoding="utf-8")
    assert f"{old_tau:.4g}" not in html and f"{old_tau:.4g}" not in md
    assert "made from other data" in md
    claims = [r for r in sec["summary"]["blocks"][1]["rows"]]
    assert claims  # the claims table is there
    assert not any(f"{old_tau:.4g}" in " ".join(map(str, r)) for r in claims)


def test_readers_skip_results_of_other_data(two_runs):
    a, b, out = two_runs
    assert set(load_fits(out, data=b.data_block())) == {"did"}
    assert set(load_fits(out, data=a.data_block())) == {"heterogeneity"}  # did was refitted on B
    assert set(load_fits(out)) == {"did", "heterogeneity"}  # without a reference: everything


def test_the_same_file_with_another_column_map_is_not_mixed_either(make_panel, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "fit_model", fake_fit)
    data, cmap = _files(make_panel, tmp_path / "a", seed=1, effect=0.5)
    other = tmp_path / "a" / "map2.toml"
    other.write_text(MAP.replace('controls = ["x1", "x2"]', 'controls = ["x1"]'), encoding="utf-8")
    out = tmp_path / "out"
    pipeline.run(bn.load_panel(data, cmap), out, models=["did", "heterogeneity"], prior_sets=(),
                 replication=FAST, report=False)
    pipeline.run(bn.load_panel(data, other), out, models=["did"], prior_sets=(), replication=FAST)
    het = _sections(out)["heterogeneity"]
    assert het["status"] == "missing" and "another column map" in het["reason"]


def test_replicating_other_data_leaves_no_stale_section(make_panel, tmp_path):
    a_files = _files(make_panel, tmp_path / "a", seed=1, effect=0.5)
    b_files = _files(make_panel, tmp_path / "b", seed=2, effect=-0.5)
    a, b = bn.load_panel(*a_files), bn.load_panel(*b_files)
    out = tmp_path / "out"
    full = replicate_to_dir("all", a, out, **FAST)
    assert {"event_study", "heterogeneity", "mediation"} <= set(full)
    res = CliRunner().invoke(app, ["replicate", "did", "--data", str(b_files[0]), "--map", str(b_files[1]),
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    s = read_json(out / "replication" / "summary.json")
    assert s["data"]["sha256"] == b.sha256
    assert not {"event_study", "heterogeneity", "mediation", "threshold", "placebo"} & set(s)
    assert s["did"]["estimate"] != full["did"]["estimate"]
    # the tables and figures are those of `replicate did` on B alone
    fresh = tmp_path / "fresh"
    replicate_to_dir("did", b, fresh)
    listing = lambda d: sorted(p.relative_to(d).as_posix() for p in (d / "replication").rglob("*")  # noqa: E731
                               if p.is_file())
    assert listing(out) == listing(fresh)


def test_replicating_one_section_of_the_same_data_keeps_the_others(make_panel, tmp_path):
    a = bn.load_panel(*_files(make_panel, tmp_path / "a", seed=1, effect=0.5))
    out = tmp_path / "out"
    replicate_to_dir("all", a, out, **FAST)
    s = replicate_to_dir("did", a, out)
    assert {"did", "event_study", "heterogeneity", "mediation"} <= set(s)


def test_fit_compares_only_with_a_replication_of_the_same_data_and_map(make_panel, tmp_path):
    from bayes_nqp.cli import _saved_replication

    data, cmap = _files(make_panel, tmp_path / "a", seed=1, effect=0.5)
    other = tmp_path / "a" / "map2.toml"
    other.write_text(MAP.replace('controls = ["x1", "x2"]', 'controls = ["x1"]'), encoding="utf-8")
    out = tmp_path / "out"
    replicate_to_dir("did", bn.load_panel(data, cmap), out)
    assert _saved_replication(out, bn.load_panel(data, cmap)) is not None
    assert _saved_replication(out, bn.load_panel(data, other)) is None
