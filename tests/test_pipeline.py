"""The one-command run: every stage into one folder with a manifest, the report from saved results,
skips with reasons, interrupts that leave complete results, and the same seed giving the same
summaries. Sampling is tiny (the gates are expected to fail here; what is tested is the plumbing)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import bayes_nqp as bn
import bayes_nqp.frequentist as freq
from bayes_nqp import pipeline, registry
from bayes_nqp.cli import app
from bayes_nqp.errors import DataError

TINY = dict(draws=150, tune=150, chains=2)
FAST_REPLICATION = {"placebo": {"draws": 20}, "mediation": {"reps": 9}, "threshold": {"n_boot": 9}}
MODELS = ("did", "heterogeneity")
SECTION_TITLES = [
    "Summary of findings", "Data", "Frequentist replication",
    *(about.title for about in registry.infos().values()),
    "Diagnostics", "Model comparison (LOO)", "Prior sensitivity", "Run manifest",
]


def with_threshold(panel) -> "bn.Panel":
    """The synthetic panel plus a threshold variable, as a user's file would have it."""
    df = panel.df
    rng = np.random.default_rng(7)
    raw = pd.DataFrame({"city": df["unit"], "year": df["time"], "nqp": df["y"],
                        "pilot_year": df["cohort"].fillna(0), "x1": df["x1"], "x2": df["x2"],
                        "hc": df["hc"], "region": df["region"], "size": df["size"],
                        "upg": rng.uniform(0, 2, len(df))})
    cmap = {"unit": "city", "time": "year", "outcome": "nqp", "cohort": "pilot_year",
            "controls": ["x1", "x2"], "mediators": ["hc"], "threshold": "upg",
            "groups": {"region": "region", "size": "size"}, "simulated": True}
    return bn.panel_from_frame(raw, cmap)


@pytest.fixture(scope="module")
def small(make_panel):
    return with_threshold(make_panel(n_units=36, n_periods=7, cohorts={2013: 12, 2014: 12},
                                     effect=0.4, a=0.3, b=0.5, seed=3))


@pytest.fixture(scope="module")
def quick_run(small, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    events = []
    # two worker processes: the parallel path (test_the_same_seed_gives_the_same_summaries refits
    # did in this process and finds the same numbers)
    result = pipeline.run(small, out, quick=True, seed=11, models=MODELS, sampler=TINY,
                          replication=FAST_REPLICATION, progress=events.append, workers=2)
    return result, out, events


def _headings(html: str) -> list[str]:
    class P(HTMLParser):
        def __init__(self):
            super().__init__()
            self.h2, self._in = [], False

        def handle_starttag(self, tag, attrs):
            self._in = tag == "h2"

        def handle_data(self, data):
            if self._in:
                self.h2.append(data.strip())
                self._in = False

    p = P()
    p.feed(html)
    return p.h2


def _strip_timings(obj):
    """A summary without wall-clock fields (the only things a seed cannot fix)."""
    if isinstance(obj, dict):
        return {k: _strip_timings(v) for k, v in obj.items()
                if k not in ("seconds", "fit_seconds", "created_at")}
    if isinstance(obj, list):
        return [_strip_timings(v) for v in obj]
    return obj


# ---- the end-to-end quick run --------------------------------------------------------------

def test_run_completes_every_stage_and_says_so_in_the_manifest(quick_run):
    result, out, _ = quick_run
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert m["status"] == "done" and m["stopped_at"] is None
    assert list(m["stages"]) == ["data", "replication", "fit:did", "fit:heterogeneity", "diagnostics",
                                 "comparison", "sensitivity:did", "sensitivity:heterogeneity", "report"]
    assert {s["status"] for s in m["stages"].values()} == {"done"}
    for s in m["stages"].values():
        assert s["seconds"] >= 0 and all(Path(p).exists() for p in s["paths"])


def test_manifest_records_data_hash_versions_seeds_and_specs(quick_run):
    result, out, _ = quick_run
    m = result.manifest
    assert m["data"]["n_units"] == 36 and m["map"]["threshold"] == "upg"
    assert {"pymc", "nutpie", "arviz", "pyfixest", "diff-diff", "numpy", "pandas"} <= set(m["versions"])
    assert m["seeds"]["did"] == 11 and m["seeds"]["replication"]["placebo"] == 11
    assert set(m["specs"]) == set(MODELS)
    assert set(m["prior_sets"]) == {"default", "weak", "skeptical"}


def test_each_model_is_saved_under_its_name(quick_run):
    _, out, _ = quick_run
    for name in MODELS:
        s = json.loads((out / name / "summary.json").read_text(encoding="utf-8"))
        assert s["model"] == name and s["sampler"]["draws"] == TINY["draws"]
        assert (out / name / "posterior.nc").exists()


def test_fits_are_compared_with_the_replication(quick_run):
    _, out, _ = quick_run
    cmp = pd.read_csv(out / "comparison.csv", comment="#")
    assert "tau" in set(cmp.loc[cmp["model"] == "did", "param"])
    rep = json.loads((out / "replication" / "summary.json").read_text(encoding="utf-8"))
    tau = cmp[(cmp["model"] == "did") & (cmp["param"] == "tau")].iloc[0]
    # the default did has unit-varying effects: its counterpart is the mean of the unit effects
    assert tau["frequentist"] == pytest.approx(rep["did_unit_mean_controls"]["estimate"])


def test_sensitivity_reuses_the_main_fits_compilation(quick_run):
    result, out, _ = quick_run
    st = result.stages["sensitivity:did"]
    assert st["compilations"] == 0 and st["reused_compiled"] == ["weak", "skeptical"]
    s = json.loads((out / "sensitivity" / "did" / "summary.json").read_text(encoding="utf-8"))
    assert set(s["table"]["tau"]) == {"default", "weak", "skeptical"}


def test_failed_gates_give_exit_status_3(quick_run):
    result, _, _ = quick_run
    assert result.gates_failed  # 150 draws cannot reach a bulk ESS of 400
    assert result.exit_code == 3


def test_progress_reports_each_stage_and_the_sampling(quick_run):
    result, _, events = quick_run
    starts = [e.stage for e in events if e.kind == "start"]
    ends = [e.stage for e in events if e.kind == "end"]
    # the two models ran at once on two workers: their stages interleave, each starts once
    # before it ends, and the sampling progress came back from the worker
    assert sorted(starts) == sorted(ends) == sorted(result.stages)
    order = [(e.kind, e.stage) for e in events if e.kind in ("start", "end")]
    assert all(order.index(("start", s)) < order.index(("end", s)) for s in starts)
    assert [s for s in starts if not s.startswith(("fit:", "sensitivity:"))] == \
        [s for s in result.stages if not s.startswith(("fit:", "sensitivity:"))]
    draws = [e for e in events if e.kind == "draws" and e.stage == "fit:did"]
    assert draws and draws[-1].done == draws[-1].total == 2 * (TINY["draws"] + TINY["tune"])


# ---- the report ---------------------------------------------------------------------------------

def test_report_has_every_section(quick_run):
    _, out, _ = quick_run
    html = (out / "report.html").read_text(encoding="utf-8")
    md = (out / "report.md").read_text(encoding="utf-8")
    assert _headings(html) == SECTION_TITLES
    assert [line[3:] for line in md.splitlines() if line.startswith("## ")] == SECTION_TITLES


def test_report_html_is_self_contained(quick_run):
    _, out, _ = quick_run
    html = (out / "report.html").read_text(encoding="utf-8")

    class P(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.srcs, self.hrefs = [], [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            a = dict(attrs)
            if "src" in a:
                self.srcs.append(a["src"])
            if "href" in a:
                self.hrefs.append(a["href"])

    p = P()
    p.feed(html)
    assert "script" not in p.tags and "link" not in p.tags and "iframe" not in p.tags
    assert p.srcs and all(s.startswith("data:image/png;base64,") for s in p.srcs)
    assert all(h.startswith("#") for h in p.hrefs)
    text = re.sub(r'data:image/png;base64,[A-Za-z0-9+/=]+', "", html)
    assert "http" not in text and "://" not in text and "@import" not in text


def test_report_md_links_figures_by_relative_path(quick_run):
    _, out, _ = quick_run
    md = (out / "report.md").read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links and all(not Path(p).is_absolute() and (out / p).exists() for p in links)


def test_simulated_notice_comes_before_the_first_section(quick_run):
    _, out, _ = quick_run
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 0 <= html.find("SIMULATED DATA") < html.find("<h2")


def test_claims_table_gives_a_verdict_for_each_claim(quick_run):
    _, out, _ = quick_run
    md = (out / "report.md").read_text(encoding="utf-8")
    from bayes_nqp.report.claims import VERDICT_NAMES

    summary = md.split("## Summary of findings")[1].split("## Data")[0]
    claims_table = summary.split("**Claims and verdicts**")[1].split("\n\n")[1]
    rows = [r for r in claims_table.splitlines() if r.startswith("| ") and not r.startswith("| claim |")]
    verdicts = [r.split(" | ")[1] for r in rows]
    assert len(rows) >= 6
    assert set(verdicts) <= set(VERDICT_NAMES)
    assert any("contrast[region:" in r for r in rows)  # group claims judged on the contrasts


def test_a_fit_that_failed_its_gates_is_shown_in_red(quick_run):
    result, out, _ = quick_run
    html = (out / "report.html").read_text(encoding="utf-8")
    model = result.gates_failed[0]
    assert re.search(rf'<tr class="bad"><td>{model}</td><td>no</td>', html)
    assert "Diagnostics FAILED" in html


def test_report_rebuilt_from_saved_results_reproduces_the_same_tables(quick_run):
    _, out, _ = quick_run
    before = (out / "report.md").read_text(encoding="utf-8")
    paths = bn.report(out)
    after = paths["md"].read_text(encoding="utf-8")
    drop = lambda s: re.sub(r"Report built \S+", "", s)
    assert drop(after) == drop(before)


def test_no_figure_of_the_report_clips_what_it_draws(quick_run, tmp_path, monkeypatch):
    """Every axes of every report figure shows all of its data: intervals, bands and points lie
    inside the axis limits (matplotlib's data limits within its view limits)."""
    import matplotlib.figure

    _, out, _ = quick_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("report_assets"))
    clipped, saved = [], []
    savefig = matplotlib.figure.Figure.savefig

    def checked(fig, *a, **k):
        saved.append(fig)
        for ax in fig.axes:
            d, v = ax.dataLim, ax.viewLim
            if not (ax.get_visible() and ax.has_data() and np.all(np.isfinite(d.bounds))):
                continue
            (x0, x1), (y0, y1) = sorted(v.intervalx), sorted(v.intervaly)
            tx, ty = 1e-6 * (x1 - x0), 1e-6 * (y1 - y0)
            if d.x0 < x0 - tx or d.x1 > x1 + tx or d.y0 < y0 - ty or d.y1 > y1 + ty:
                clipped.append((fig.get_suptitle(), ax.get_title(), d.bounds, v.bounds))
        return savefig(fig, *a, **k)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", checked)
    bn.report(copy)
    assert len(saved) >= 6 and not clipped, clipped


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_report_opens_in_headless_chromium_without_console_errors(quick_run):
    _, out, _ = quick_run
    res = subprocess.run(["chromium", "--headless", "--disable-gpu", "--no-sandbox",
                          "--enable-logging=stderr", "--v=0", "--dump-dom",
                          (out / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    assert "Summary of findings" in res.stdout
    assert "CONSOLE" not in res.stderr and "Uncaught" not in res.stderr


# ---- reproducibility ------------------------------------------------------------------------

def _close(a, b, path="") -> list[str]:
    """Where two JSON trees differ (floats compared to 1e-9 relative)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in
                (_close(a[k], b[k], f"{path}/{k}") if k in a and k in b else [f"{path}/{k} missing"])]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (u, v) in enumerate(zip(a, b)) for d in _close(u, v, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        return [] if np.isclose(a, b, rtol=1e-9, atol=0, equal_nan=True) else [f"{path}: {a} != {b}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def test_the_same_seed_gives_the_same_summaries(quick_run, small, tmp_path):
    """The quick run fitted did on a worker process; here it is fitted in this process. The same
    draws, to the last digits that a worker's one BLAS thread (Dask's default) leaves alone."""
    _, out, _ = quick_run
    pipeline.run(small, tmp_path, quick=True, seed=11, models=("did",), sampler=TINY,
                 replication=FAST_REPLICATION, sensitivity_models=(), report=False)
    for rel in ("did/summary.json", "replication/summary.json"):
        a = json.loads((out / rel).read_text(encoding="utf-8"))
        b = json.loads((tmp_path / rel).read_text(encoding="utf-8"))
        assert not _close(_strip_timings(a), _strip_timings(b)), (rel, _close(_strip_timings(a), _strip_timings(b))[:5])


# ---- skips, failures, interrupts (no sampling) ----------------------------------------------------

def test_a_missing_role_skips_its_sections_with_the_reason(make_panel, tmp_path):
    panel = make_panel(n_units=24, n_periods=6, cohorts={2013: 8}, mediators=False, seed=4)
    res = pipeline.run(panel, tmp_path, models=("mediation", "threshold"), replication=FAST_REPLICATION)
    st = res.stages
    assert st["fit:mediation"]["status"] == "skipped" and "mediators" in st["fit:mediation"]["reason"]
    assert st["fit:threshold"]["status"] == "skipped" and "threshold" in st["fit:threshold"]["reason"]
    cmp = st["compare_thresholds:threshold"]  # the further fit needs the main one
    assert cmp["status"] == "skipped" and "the threshold fit did not complete" in cmp["reason"]
    assert st["sensitivity:mediation"]["status"] == "skipped"
    assert "mediators" in st["sensitivity:mediation"]["reason"]
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    mediation = md.split("## Mediation (mediation)")[1].split("\n## ")[0]
    assert "Not available:** skipped:" in mediation and "mediators" in mediation
    assert res.exit_code == 0  # a skipped section is not a failure


def test_a_model_that_errors_is_recorded_as_failed_and_the_run_goes_on(small, tmp_path, monkeypatch):
    def broken(name, panel, **kw):
        raise RuntimeError(f"{name} exploded")

    monkeypatch.setattr(pipeline, "fit_model", broken)
    res = pipeline.run(small, tmp_path, models=("did", "heterogeneity"), replication=FAST_REPLICATION)
    st = res.stages
    assert st["fit:did"]["status"] == "failed" and "did exploded" in st["fit:did"]["error"]
    assert st["fit:heterogeneity"]["status"] == "failed"
    assert st["report"]["status"] == "done" and res.exit_code == 3
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "failed: RuntimeError: did exploded" in md


def test_an_interrupted_run_keeps_earlier_results_and_says_where_it_stopped(small, tmp_path, monkeypatch):
    real = freq.save_table
    calls = []

    def interrupted(df, stem, **kw):
        calls.append(stem)
        if len(calls) == 2:  # mid-way through the replication's tables, mid-write
            Path(stem).parent.mkdir(parents=True, exist_ok=True)
            # this process's temporary (another run's, named with its pid, is not touched)
            from bayes_nqp.guard import temp_path
            temp_path(Path(stem).with_suffix(".csv")).write_text("half")
            raise KeyboardInterrupt
        return real(df, stem, **kw)

    monkeypatch.setattr(freq, "save_table", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(small, tmp_path, models=("did",), replication=FAST_REPLICATION)
    m = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert m["status"] == "interrupted" and m["stopped_at"] == "replication"
    assert [m["stages"][k]["status"] for k in ("data", "replication", "fit:did", "report")] == \
        ["done", "interrupted", "not started", "not started"]
    assert json.loads((tmp_path / "data" / "summary.json").read_text(encoding="utf-8"))["n_units"] == 36
    assert not (tmp_path / "replication" / "summary.json").exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_panel_without_treatment_is_bad_input(tmp_path):
    raw = pd.DataFrame({"u": np.repeat(np.arange(5), 4), "t": np.tile(np.arange(4), 5),
                        "y": np.arange(20.0)})
    panel = bn.panel_from_frame(raw, {"unit": "u", "time": "t", "outcome": "y"})
    with pytest.raises(DataError, match="treatment"):
        pipeline.run(panel, tmp_path)


# ---- the CLI ----------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_run_on_a_missing_file_exits_2(tmp_path):
    res = runner.invoke(app, ["run", "--data", str(tmp_path / "none.csv"), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_cli_run_interrupted_exits_130_and_names_the_stage(tmp_path, monkeypatch):
    def interrupted(panel, out, **kw):
        (Path(out)).mkdir(parents=True, exist_ok=True)
        (Path(out) / "manifest.json").write_text(json.dumps({"stopped_at": "fit:did"}))
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run", interrupted)
    res = runner.invoke(app, ["run", "--out", str(tmp_path)])
    assert res.exit_code == 130
    assert "fit:did" in res.output


def test_cli_report_rebuilds_without_refitting(quick_run, monkeypatch):
    _, out, _ = quick_run
    monkeypatch.setattr(pipeline, "fit_model", lambda *a, **k: pytest.fail("report must not fit"))
    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    assert "report.html" in res.output


def test_cli_report_on_an_empty_folder_exits_2(tmp_path):
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "no saved results" in " ".join(res.output.split())


def test_the_multiverse_stage_is_optional_and_writes_its_summary(small, quick_run, tmp_path):
    res = pipeline.run(small, tmp_path, models=(), replication=FAST_REPLICATION, report=False,
                       multiverse={"estimators": "twfe", "controls": "none,all", "samples": "all",
                                   "workers": 1})
    st = res.stages["multiverse"]
    assert st["status"] == "done" and st["n_specs"] == 2 and st["failed_specs"] == 0
    s = json.loads((tmp_path / "multiverse/summary.json").read_text())
    assert [x["controls"] for x in s["specs"]] == ["none", "all"]
    assert "multiverse" not in quick_run[0].stages  # off by default
    # the report shows it as a section of its own (and only where one was run)
    bn.report(tmp_path)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Multiverse of specifications" in _headings(html)
    assert "Multiverse of specifications" not in _headings((quick_run[1] / "report.html").read_text(encoding="utf-8"))
    assert "2 specifications" in html


# ---- a model's further fits: the threshold comparison as a stage of its own (no sampling) ---------

def _saved_fit(panel, seed: int):
    """A threshold Fit without sampling: a supported slope difference, summary.json only."""
    from bayes_nqp.bayes.fit import Fit
    from bayes_nqp.bayes.spec import SamplerSettings, load_prior_set, load_spec
    from bayes_nqp.contract import ParamEntry
    from bayes_nqp.results import write_json

    class SummaryOnly(Fit):
        def save(self, out):
            write_json(Path(out) / "summary.json", self.summary_json())
            return Path(out)

    draws = {"slope_diff[2-1]": np.linspace(0.05, 0.15, 200).reshape(2, 100)}
    return SummaryOnly(model="threshold", idata=None, spec=load_spec("threshold"),
                       priors=load_prior_set("default"), sampler=SamplerSettings(seed=seed),
                       data={k: panel.data_block().get(k) for k in ("sha256", "map_sha256", "simulated")},
                       draws=draws, params={k: ParamEntry.from_draws(v).to_json() for k, v in draws.items()},
                       diag={"passed": True, "failures": [], "warnings": []}, comparison_={})


@pytest.fixture
def fake_threshold(monkeypatch, small):
    """fit_model gives a saved-only threshold fit; the comparison stage's function is a stand-in
    that records its calls and prefers ``preferred[0]`` thresholds (or raises what it is given)."""
    from bayes_nqp.bayes.threshold import ThresholdComparison

    calls, preferred = [], [0]

    def stage(fit, panel):
        calls.append(fit)
        if isinstance(preferred[0], Exception):
            raise preferred[0]
        rows = ({"model": "0", "rank": 0, "elpd": -10.0, "elpd_diff": 0.0, "dse": 0.0, "n_thresholds": 0},
                {"model": "1", "rank": 1, "elpd": -10.5, "elpd_diff": -0.5, "dse": 1.0, "n_thresholds": 1})
        return ThresholdComparison(preferred=preferred[0], rule="the fewest within 2 dse", rows=rows, fitted=1)

    real = registry.stage_function
    monkeypatch.setattr(registry, "stage_function",
                        lambda t: stage if t.endswith("threshold:comparison_stage") else real(t))
    monkeypatch.setattr(pipeline, "fit_model", lambda name, panel, seed=None, **kw: _saved_fit(panel, seed))
    return calls, preferred


def test_the_threshold_comparison_is_a_stage_of_its_own_whose_file_drives_the_verdict(small, tmp_path,
                                                                                      fake_threshold):
    from bayes_nqp.bayes.threshold import ThresholdComparison
    from bayes_nqp.contract import fit_identity
    from bayes_nqp.results import read_json

    calls, _ = fake_threshold
    events = []
    res = pipeline.run(small, tmp_path, quick=True, seed=11, models=("threshold",), sensitivity_models=(),
                       replication=FAST_REPLICATION, progress=events.append, workers=1)
    assert list(res.stages) == ["data", "replication", "fit:threshold", "compare_thresholds:threshold",
                                "diagnostics", "comparison", "report"]
    st = res.stages["compare_thresholds:threshold"]
    dest = tmp_path / "threshold" / "compare_thresholds.json"
    assert st["status"] == "done" and st["dest"] == str(dest) and len(calls) == 1
    assert [e.kind for e in events if e.stage == "compare_thresholds:threshold"] == ["start", "end"]
    rec, summary = read_json(dest), read_json(tmp_path / "threshold" / "summary.json")
    assert rec["fit"] == fit_identity(summary) and ThresholdComparison.from_json(rec).preferred == 0
    assert "n_thresholds" not in summary["extras"]  # the fit's own summary holds no comparison
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    claim = md.split("<details><summary>threshold:")[1].split("</details>")[0]
    assert "fragile" in claim and "LOO does not prefer" in claim
    assert "threshold: its own LOO comparison (0, 1 and 2 thresholds)" in md


def test_a_threshold_spec_without_comparison_skips_the_stage_and_drops_an_earlier_file(
        small, tmp_path, fake_threshold):
    from bayes_nqp.errors import SectionSkipped

    _, preferred = fake_threshold
    preferred[0] = SectionSkipped("the threshold spec says compare = false")
    stale = tmp_path / "threshold" / "compare_thresholds.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}", encoding="utf-8")
    res = pipeline.run(small, tmp_path, quick=True, seed=11, models=("threshold",), sensitivity_models=(),
                       replication=FAST_REPLICATION, report=False, workers=1)
    st = res.stages["compare_thresholds:threshold"]
    assert st["status"] == "skipped" and "compare = false" in st["reason"]
    assert not stale.exists()


def test_a_parallel_runs_model_task_runs_the_threshold_comparison_after_the_fit(small, tmp_path,
                                                                               fake_threshold):
    calls, _ = fake_threshold
    res = pipeline.model_task(small, name="threshold", out=str(tmp_path), sensitivity=False, replicated=False,
                              topic="none", quick=True, seed=11, sampler={}, prior_sets=())
    assert list(res["stages"]) == ["fit:threshold", "compare_thresholds:threshold"]
    assert res["stages"]["compare_thresholds:threshold"]["status"] == "done" and len(calls) == 1
    assert (tmp_path / "threshold" / "compare_thresholds.json").exists()
