"""Paper-style (esttab / etable) tables from saved summaries: LaTeX, Markdown, HTML."""

import json

import pytest

from bayes_nqp.report.paper_tables import decimals, replication_table, tables, write_tables

REP = {
    "data": {"n_obs": 550, "n_units": 50, "simulated": False},
    "did": {"estimate": 0.06875, "se": 0.05606, "ci95": [-0.0424, 0.1799], "pvalue": 0.226,
            "n_obs": 550, "n_units": 50},
    "did_controls": {"estimate": 0.0912345678901, "se": 0.0319, "ci95": [0.028, 0.154],
                     "pvalue": 0.006, "n_obs": 550, "n_units": 50},
}
FIT = {
    "model": "did", "data": {"n_obs": 550, "n_units": 50, "simulated": False},
    "priors": {"name": "weak"}, "spec": {"options": {"year_effects": "fixed"}},
    "sampler": {"chains": 4, "draws": 1000},
    "params": {"tau": {"mean": 0.0721, "sd": 0.0531, "hdi95": [-0.031, 0.177], "p_positive": 0.91},
               "breakdown_M": {"mean": 0.4, "sd": 0.0, "hdi95": [0.4, 0.4], "p_positive": 1.0}},
    "diagnostics": {"rhat_max": 1.0031, "ess_bulk_min": 2890.4, "divergences": 0, "passed": True},
}


@pytest.fixture
def results(tmp_path):
    (tmp_path / "replication").mkdir()
    (tmp_path / "replication" / "summary.json").write_text(json.dumps(REP))
    (tmp_path / "did").mkdir()
    (tmp_path / "did" / "summary.json").write_text(json.dumps(FIT))
    return tmp_path


def test_latex_twfe_column_holds_the_estimate_and_its_se_in_parentheses(results):
    write_tables(results)
    tex = (results / "tables" / "replication.tex").read_text()
    row = next(line for line in tex.splitlines() if line.startswith("Treatment"))
    se_row = tex.splitlines()[tex.splitlines().index(row) + 3]
    assert "0.069" in row.split("&")[1] and "(0.056)" in se_row.split("&")[1]
    assert "0.091***" in row.split("&")[2] and "(0.032)" in se_row.split("&")[2]
    assert "0.0912345678901" not in tex            # rounded, no 17-digit floats
    assert r"\begin{tabularx}" in tex and "N & 550 & 550" in tex and "Unit FE & Yes & Yes" in tex
    assert "Clusters (units) & 50 & 50" in tex


def test_every_table_is_written_as_latex_markdown_and_html(results):
    written = write_tables(results)
    assert set(written) == {f"{t}.{f}" for t in ("replication", "bayesian") for f in ("tex", "md", "html")}
    md = (results / "tables" / "bayesian.md").read_text()
    assert "0.072" in md and "(0.053)" in md and "[-0.031, 0.177]" in md
    assert "R-hat (max)" in md and "1.003" in md and "ESS bulk (min)" in md and "2,890" in md
    assert "breakdown_M" not in md                 # not a posterior: kept out
    assert "<table" in (results / "tables" / "replication.html").read_text()


def test_stars_follow_two_sided_p_values():
    md = replication_table(REP).markdown()
    assert r"0.091\*\*\*" in md and r"0.069\*" not in md


def test_latex_escapes_user_names(results):
    fit = dict(FIT, params={"a[human_capital]": FIT["params"]["tau"]})
    (results / "did" / "summary.json").write_text(json.dumps(fit))
    tex = tables(results)["bayesian"].tex()
    assert r"a[human\_capital]" in tex and "a[human_capital]" not in tex


@pytest.mark.parametrize("se, d", [(0.056, 3), (0.0046, 4), (2.5, 3), (None, 3), (1e-9, 6)])
def test_decimals_follow_the_uncertainty(se, d):
    assert decimals(se) == d
