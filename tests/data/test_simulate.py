"""The seeded demo panel: determinism, shape, design constraints, the truth, the committed files."""

import json

import numpy as np
import pandas as pd
import pytest

import bayes_nqp
from bayes_nqp.data import DATA_DIR, read_column_map
from bayes_nqp.data.entropy import apply_entropy, entropy_index
from bayes_nqp.data.simulate import (DEFAULT_SEED, NEGATIVE, PANEL_COLUMNS, POSITIVE, simulate_demo,
                                     simulate_worlds, truth_of, write_demo)


@pytest.fixture(scope="module")
def demo():
    return simulate_demo()


def test_deterministic_for_a_seed(demo):
    again, _, truth = simulate_demo(DEFAULT_SEED)
    pd.testing.assert_frame_equal(demo[0], again)
    assert truth == demo[2]
    other, _, _ = simulate_demo(DEFAULT_SEED + 1)
    assert not np.allclose(other["nqp"], demo[0]["nqp"])


def test_shape_and_columns(demo):
    df = demo[0]
    assert df.shape == (287 * 12, len(PANEL_COLUMNS)) == (3444, len(PANEL_COLUMNS))
    assert list(df.columns) == list(PANEL_COLUMNS)
    assert sorted(df["year"].unique()) == list(range(2011, 2023))
    assert df.groupby("city").size().eq(12).all()
    assert len([c for c in df.columns if c.startswith("ind_")]) == 10
    assert not df.drop(columns="pilot_year").isna().any().any()


def test_pilot_batches_and_never_treated(demo):
    df = demo[0]
    cities = df.drop_duplicates("city")
    batches = cities["pilot_year"].value_counts()
    assert set(batches.index) == {2012, 2013, 2014}
    for year in (2012, 2013, 2014):
        assert 75 <= batches[year] <= 105
    never = cities[cities["pilot_year"].isna()]
    assert len(never) >= 25
    for col in ("region", "size"):
        counts = never[col].value_counts()
        assert set(counts.index) == set(df[col].unique())
        assert (counts >= 3).all()
    # treated is the absorbing indicator of pilot_year
    expected = (df["year"] >= df["pilot_year"].astype(float)).fillna(False).astype(int)
    assert (df["treated"] == expected).all()


def test_selection_tilts_towards_richer_cities(demo):
    base = demo[0][demo[0]["year"] == 2011]
    assert base.loc[base["pilot_year"].notna(), "gdp_pc"].mean() > base.loc[base["pilot_year"].isna(), "gdp_pc"].mean()


def test_nqp_is_the_entropy_index_of_the_indicators(demo):
    df = demo[0]
    index, weights = entropy_index(df, positive=POSITIVE, negative=NEGATIVE)
    np.testing.assert_allclose(index, df["nqp"], atol=1e-12)
    assert weights.sum() == pytest.approx(1.0)
    assert df["nqp"].between(0, 1).all()


def test_truth_keys_and_pattern(demo):
    truth = demo[2]
    for key in ("att", "att_by_cohort", "att_by_event_time", "att_by_region", "att_by_size",
                "mediation", "threshold", "notes", "seed", "simulated", "structural", "definitions"):
        assert key in truth
    assert truth["simulated"] is True and truth["seed"] == DEFAULT_SEED
    assert set(truth["att_by_cohort"]) == {"2012", "2013", "2014"}
    assert set(truth["att_by_event_time"]) == {str(e) for e in range(11)}
    assert truth["att"] > 0
    r = truth["att_by_region"]
    assert r["central"] < r["east"] < r["west"]
    s = truth["att_by_size"]
    assert s["large"] < 0 < s["medium"] and s["large"] < s["small"]
    th = truth["threshold"]
    assert th["variable"] == "upgrading" and th["slope_above"] > th["slope_below"]
    med = truth["mediation"]
    for k in ("human_capital", "sci_tech"):
        assert med[k]["a"] > 0 and med[k]["b"] > 0
        assert med[k]["indirect"] == pytest.approx(med[k]["a"] * med[k]["b"])
    assert med["total"] == pytest.approx(med["direct"] + med["human_capital"]["indirect"]
                                         + med["sci_tech"]["indirect"], rel=1e-9)
    assert med["total"] == pytest.approx(truth["att"])
    assert 0.2 <= med["indirect_share"] <= 0.4


def test_truth_att_is_the_counterfactual_difference():
    w = simulate_worlds(DEFAULT_SEED)
    df = w.panel
    # recompute: index of the simulated world minus the index of the no-pilot world, same weights
    cell = apply_entropy(df, w.ew) - apply_entropy(w.untreated, w.ew)
    treated = df["treated"] == 1
    assert np.abs(cell[~treated]).max() < 1e-12
    _, _, truth = simulate_demo(DEFAULT_SEED)
    assert truth["att"] == pytest.approx(cell[treated].mean(), rel=1e-12)
    east = treated & (df["region"] == "east")
    assert truth["att_by_region"]["east"] == pytest.approx(cell[east].mean(), rel=1e-12)
    # and equals ∂nqp/∂Y* × (δ + Σ a·b) on the latent scale
    p = w.params
    latent = w.delta + sum(p.a[k] * p.b[k] for k in p.a)
    assert np.allclose(cell[treated], w.dnqp_dystar * latent[treated], atol=1e-12)
    # the mediators of the no-pilot world differ by exactly a_k on treated cells
    for k, a in p.a.items():
        assert np.allclose(df[k] - w.untreated[k], a * df["treated"], atol=1e-12)


def test_committed_files_match_a_fresh_simulation(demo):
    df, cmap, truth = demo
    committed = pd.read_csv(DATA_DIR / "demo_panel.csv")
    assert list(committed.columns) == list(df.columns)
    for c in df.columns:
        if df[c].dtype.kind in "iuf" or c == "pilot_year":
            np.testing.assert_allclose(committed[c].to_numpy(float), df[c].astype(float).to_numpy(),
                                       rtol=1e-9, atol=1e-9, err_msg=c)
        else:
            assert (committed[c].astype(str) == df[c].astype(str)).all(), c
    saved = json.loads((DATA_DIR / "demo_truth.json").read_text(encoding="utf-8"))
    assert saved["att"] == pytest.approx(truth["att"], rel=1e-9)
    for key in ("mean_treated", "sd_treated", "effect_sd"):
        assert saved["unit_effects"][key] == pytest.approx(truth["unit_effects"][key], rel=1e-9)
    assert saved["serial_correlation"] == pytest.approx(truth["serial_correlation"], rel=1e-9)
    assert read_column_map(DATA_DIR / "demo_map.toml").to_dict() == \
        bayes_nqp.ColumnMap.from_dict(cmap).to_dict()


def test_committed_panel_loads_cleanly():
    panel = bayes_nqp.load_panel(DATA_DIR / "demo_panel.csv", DATA_DIR / "demo_map.toml")
    assert panel.report.ok and panel.balanced and panel.simulated
    assert panel.n_units == 287 and panel.n_periods == 12
    assert panel.cohorts == [2012, 2013, 2014]
    assert set(panel.groups) == {"region", "size"}


def test_write_demo_writes_three_loadable_files(tmp_path):
    paths = write_demo(tmp_path, seed=7)
    assert [p.name for p in paths] == ["demo_panel.csv", "demo_map.toml", "demo_truth.json"]
    cmap = read_column_map(paths[1])
    assert cmap.simulated and cmap.outcome == "nqp" and cmap.cohort == "pilot_year"
    assert list(cmap.controls) == ["gdp_pc", "fin", "fdi", "gov", "infra"]
    assert "not the study" in cmap.description
    panel = bayes_nqp.load_panel(paths[0], paths[1])
    assert panel.n_obs == 3444
    assert json.loads(paths[2].read_text(encoding="utf-8"))["seed"] == 7



def test_a_large_panel_is_written_by_arrow_and_reads_back_as_the_same_frame(tmp_path, monkeypatch):
    from bayes_nqp.data import simulate as S

    df, _, _ = simulate_demo(3, n_units=200, periods=4)
    monkeypatch.setattr(S, "CSV_ARROW_ABOVE", 10)  # this panel takes the million-row path
    back = pd.read_csv(S._write_csv(tmp_path / "p.csv", df))
    assert list(back.columns) == list(df.columns) and len(back) == len(df)
    for c in df.columns:
        if pd.api.types.is_numeric_dtype(df[c]):
            np.testing.assert_allclose(back[c].astype(float), df[c].astype(float), rtol=1e-15)  # NaN = NaN
        else:
            assert back[c].tolist() == df[c].tolist()
    assert df["pilot_year"].isna().any()  # never-treated units: an empty cell, as pandas writes


# ---- panels of any size (issue 10) and unit-varying effects (issue 13 item 6) -------------------

def test_a_panel_of_any_size_keeps_the_demo_structure_on_a_labelled_synthetic_frame():
    from dataclasses import replace

    from bayes_nqp.data.simulate import DemoParams

    df, cmap, truth = simulate_demo(5, n_units=900, periods=7)
    assert df.shape == (900 * 7, len(PANEL_COLUMNS)) and list(df.columns) == list(PANEL_COLUMNS)
    assert sorted(df["year"].unique()) == list(range(2011, 2018))
    assert df["city"].nunique() == 900 and df["city"].str.startswith("syn").all()
    assert truth["frame"] == "synthetic" and "SYNTHETIC" in cmap["description"]
    cohorts = df.drop_duplicates("city")["pilot_year"].value_counts()
    for year, n in {2012: 85, 2013: 95, 2014: 80}.items():
        assert cohorts[year] == round(n / 287 * 900)     # the demo's shares of units
    never = df.drop_duplicates("city").query("pilot_year.isna()", engine="python")
    assert set(never["region"]) == set(df["region"]) and set(never["size"]) == set(df["size"])
    # unit-varying effects: a unit factor on the effect, documented in the truth's parameters
    _, _, truth_var = simulate_demo(5, n_units=900, periods=7, params=replace(DemoParams(), effect_sd=0.5))
    assert truth_var["structural"]["effect_sd"] == 0.5 and truth["structural"]["effect_sd"] == 0.4
    assert truth_var["unit_effects"]["effect_sd"] == 0.5
    assert truth_var["att"] != pytest.approx(truth["att"], rel=1e-6)


def test_the_default_demo_is_on_the_real_frame_and_says_so(demo):
    df, cmap, truth = demo
    assert "frame" not in truth and "SYNTHETIC" not in cmap["description"]
    assert truth["structural"]["rho_y"] == 0.5 and truth["structural"]["effect_sd"] == 0.4


def test_the_demo_has_city_varying_effects_around_the_designed_group_pattern():
    """City factors f_i: sd effect_sd among the pilot cities, mean exactly 1 in every region and
    size level; they move only the treated cells (every other draw is the same as at effect_sd
    = 0), and the truth's unit-effect mean is the mean over pilot cities of each city's effect."""
    from dataclasses import replace

    from bayes_nqp.data.simulate import DemoParams

    w = simulate_worlds(DEFAULT_SEED)
    flat = simulate_worlds(DEFAULT_SEED, replace(DemoParams(), effect_sd=0.0))
    cities = w.panel.drop_duplicates("city")
    pilot = cities["pilot_year"].notna().to_numpy()
    f = w.unit_factor
    assert np.all(f[~pilot] == 1.0) and f[pilot].std() == pytest.approx(0.4, rel=1e-12)
    for col in ("region", "size"):
        means = pd.Series(f[pilot]).groupby(cities[col].to_numpy()[pilot]).mean()
        np.testing.assert_allclose(means, 1.0, atol=1e-12)
    # the effect is δ·f: exactly the flat world's in every cell, times the city's factor
    n_t = w.panel["year"].nunique()
    np.testing.assert_allclose(w.delta, flat.delta * np.repeat(f, n_t), atol=1e-12)
    # the other draws are untouched: the no-pilot world's mediators and controls are the same
    np.testing.assert_allclose(w.untreated["human_capital"], flat.untreated["human_capital"], atol=1e-12)
    np.testing.assert_allclose(w.panel["gdp_pc"], flat.panel["gdp_pc"], atol=1e-12)
    truth = truth_of(w)
    ue = truth["unit_effects"]
    tr = w.panel["treated"] == 1
    per_city = w.effect[tr].groupby(w.panel.loc[tr, "city"]).mean()
    assert ue["n_treated_units"] == len(per_city) == int(pilot.sum())
    assert ue["mean_treated"] == pytest.approx(per_city.mean(), rel=1e-12)
    assert ue["sd_treated"] == pytest.approx(per_city.std(), rel=1e-12)
    # the same cells with every factor at 1: what the flat world's effect would be on w's index
    common = truth_of(flat)["unit_effects"]
    assert ue["mean_treated_common_factor"] == pytest.approx(common["mean_treated"], rel=0.02)
    assert common["mean_treated_common_factor"] == pytest.approx(common["mean_treated"], rel=1e-12)
    # and the designed pattern survives the city factors
    r, s = truth["att_by_region"], truth["att_by_size"]
    assert r["central"] < r["east"] < r["west"] and s["large"] < 0 < s["medium"] < s["small"]


def test_the_demo_truth_documents_the_serial_correlation_of_the_outcome_error():
    truth = simulate_demo(DEFAULT_SEED)[2]
    sc = truth["serial_correlation"]
    assert sc["rho_latent"] == 0.5 and 0 < sc["ar1_share"] < 1
    assert sc["lag1_autocorrelation"] == pytest.approx(0.5 * sc["ar1_share"])
    assert 0.35 < sc["lag1_autocorrelation"] < 0.5


def test_too_few_periods_or_units_are_refused():
    from bayes_nqp.errors import DataError

    with pytest.raises(DataError, match="periods"):
        simulate_demo(1, n_units=300, periods=1)
    with pytest.raises(DataError, match="units"):
        simulate_demo(1, n_units=5, periods=4)


def test_cli_simulate_writes_a_custom_panel_only_with_out(tmp_path):
    from typer.testing import CliRunner

    from bayes_nqp.cli import app

    r = CliRunner().invoke(app, ["simulate", "--units", "300", "--periods", "4"])
    assert r.exit_code == 2 and "--out" in r.output
    r = CliRunner().invoke(app, ["simulate", "--units", "300", "--periods", "4", "--effect-sd", "0.2",
                                 "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(tmp_path / "demo_panel.csv")
    assert len(df) == 1200 and "SYNTHETIC" in r.output
    assert json.loads((tmp_path / "demo_truth.json").read_text())["structural"]["effect_sd"] == 0.2
