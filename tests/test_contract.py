"""The typed results contract: a FitSummary survives JSON, an older summary.json with extras at
the top level reads back with them under extras, and tidy()/comparison_table() are the tables."""

from __future__ import annotations

import numpy as np
import pytest

from bayes_nqp.contract import (CI, HDI, INTERVAL_PROB, TIDY_COLUMNS, ComparisonEntry, Counterpart,
                                FitSummary, ParamEntry, comparison_table, tidy)


def _summary() -> FitSummary:
    tau = ParamEntry(0.5, 0.1, (0.3, 0.7), 0.99)
    return FitSummary(
        model="did", params={"tau": tau, "sigma_like": ParamEntry(1.0, 0.05, (0.9, 1.1), 1.0)},
        diagnostics={"passed": True, "per_param": {"tau": {"rhat": 1.001, "ess_bulk": 812.0}}},
        comparison={"tau": ComparisonEntry(Counterpart(0.45, (0.2, 0.7), "TWFE"), tau)},
        data={"simulated": True}, extras={"curve": [1, 2, 3]}, notice="SIMULATED")


def test_the_interval_keys_follow_the_interval_probability():
    assert INTERVAL_PROB == 0.95 and HDI == "hdi95" and CI == "ci95"


def test_a_fit_summary_survives_json():
    s = _summary()
    back = FitSummary.from_json(s.to_json())
    assert back == s
    assert s.to_json()["params"]["tau"] == {"mean": 0.5, "sd": 0.1, HDI: [0.3, 0.7], "p_positive": 0.99}
    assert s.to_json()["comparison"]["tau"] == {"frequentist": {"estimate": 0.45, CI: [0.2, 0.7], "source": "TWFE"},
                                                "bayesian": {"mean": 0.5, "sd": 0.1, HDI: [0.3, 0.7]}}


def test_an_older_summary_with_top_level_extras_reads_them_under_extras():
    old = _summary().to_json()
    old.pop("extras")
    old["pretrend"] = {"delta": 0.1}
    assert FitSummary.from_json(old).extras == {"pretrend": {"delta": 0.1}}


def test_param_entry_from_draws_is_mean_sd_hdi_and_p_positive():
    x = np.random.default_rng(0).normal(1.0, 2.0, 40_000)
    e = ParamEntry.from_draws(x)
    assert e.mean == pytest.approx(1.0, abs=0.05) and e.sd == pytest.approx(2.0, abs=0.05)
    assert e.hdi[0] == pytest.approx(1.0 - 1.96 * 2, abs=0.1) and e.hdi[1] == pytest.approx(1.0 + 1.96 * 2, abs=0.1)
    assert e.p_positive == pytest.approx((x > 0).mean())


def test_tidy_is_one_row_per_estimand_with_its_diagnostics():
    t = tidy(_summary())
    assert list(t.columns) == TIDY_COLUMNS
    row = t.set_index("param").loc["tau"]
    assert (row["mean"], row[f"{HDI}_lo"], row["rhat"], row["ess_bulk"]) == (0.5, 0.3, 1.001, 812.0)
    assert np.isnan(t.set_index("param").loc["sigma_like", "rhat"])


def test_comparison_table_puts_the_counterpart_beside_the_posterior():
    t = comparison_table(_summary().to_json())  # a summary.json dict works as well
    assert t.to_dict("records") == [{"model": "did", "param": "tau", "bayes_mean": 0.5, f"{HDI}_lo": 0.3,
                                     f"{HDI}_hi": 0.7, "p_positive": 0.99, "frequentist": 0.45,
                                     f"{CI}_lo": 0.2, f"{CI}_hi": 0.7, "bayes_sd": 0.1, "freq_se": None,
                                     "sd_ratio": None, "source": "TWFE", "estimand": None}]
