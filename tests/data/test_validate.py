"""Validation lists every problem with its column, unit/row and value, never a traceback."""

import numpy as np
import pandas as pd
import pytest

from bayes_nqp import DataError, load_panel, panel_from_frame
from bayes_nqp.data import ColumnMap, validate_frame

MAP = {"unit": "id", "time": "t", "outcome": "y", "cohort": "g", "controls": ["x"]}


def frame(n_units=6, periods=(1, 2, 3, 4)):
    rows = []
    for i in range(n_units):
        g = {0: 2, 1: 3}.get(i % 3, np.nan)
        for t in periods:
            rows.append({"id": f"u{i}", "t": t, "y": float(i + t), "g": g, "x": float(i * t % 5),
                         "region": "east" if i < 3 else "west", "q": float(i * 10 + t)})
    return pd.DataFrame(rows)


def checks(df, cmap=MAP):
    return validate_frame(df, ColumnMap.from_dict(cmap))


def test_clean_panel_has_no_problems():
    rep = checks(frame())
    assert rep.ok and rep.problems == [] and rep.balanced


def test_missing_column_names_column_and_role():
    rep = checks(frame().drop(columns="x"))
    [p] = rep.errors
    assert p.check == "missing_column" and p.column == "x"
    assert "column 'x' (role controls[x]) is not in the data" in p.message


def test_duplicate_unit_time_rows_are_listed_with_unit_and_time():
    df = frame()
    df = pd.concat([df, df.iloc[[5]]], ignore_index=True)
    [p] = checks(df).errors
    assert p.check == "duplicate_row" and p.unit == "u1" and p.row == len(df) - 1
    assert "unit 'u1', time 2 appears more than once" in p.message


def test_non_numeric_value_reports_column_unit_row_and_value():
    df = frame().astype({"x": object})
    df.loc[3, "x"] = "n/a"
    [p] = checks(df).errors
    assert p.check == "non_numeric" and p.column == "x" and p.row == 3 and p.value == "n/a"
    assert "value 'n/a' is not numeric" in p.message


def test_missing_and_infinite_outcome_values_are_each_reported():
    df = frame()
    df.loc[0, "y"] = np.nan
    df.loc[1, "y"] = np.inf
    errs = checks(df).errors
    assert [(p.row, p.check) for p in errs] == [(0, "non_numeric"), (1, "non_numeric")]
    assert "is missing" in errs[0].message and "is not finite" in errs[1].message


def test_treatment_that_switches_off_is_an_error():
    df = frame()
    df["d"] = ((df["t"] >= 2) & (df["id"] == "u0")).astype(int)
    df.loc[(df["id"] == "u0") & (df["t"] == 4), "d"] = 0
    cmap = {**{k: v for k, v in MAP.items() if k != "cohort"}, "treated": "d"}
    [p] = checks(df, cmap).errors
    assert p.check == "treatment_switches_off" and p.unit == "u0"
    assert "treatment switches off at time 4" in p.message


def test_treated_indicator_must_be_binary():
    df = frame()
    df["d"] = 0
    df.loc[2, "d"] = 2
    df.loc[(df["id"] == "u1") & (df["t"] >= 3), "d"] = 1  # one treated unit, so that only the 2 is wrong
    cmap = {**{k: v for k, v in MAP.items() if k != "cohort"}, "treated": "d"}
    [p] = checks(df, cmap).errors
    assert p.check == "treated_not_binary" and p.row == 2


def test_cohort_outside_observed_time_range_is_an_error():
    df = frame()
    df.loc[df["id"] == "u0", "g"] = 2030
    [p] = checks(df).errors
    assert p.check == "cohort_out_of_range" and p.unit == "u0"
    assert "first treated period 2030 is outside the observed range 1–4" in p.message


def test_cohort_that_varies_within_a_unit_is_an_error():
    df = frame()
    df.loc[0, "g"] = 3
    [p] = checks(df).errors
    assert p.check == "cohort_varies" and p.unit == "u0"


def test_no_untreated_comparison_units_is_an_error():
    df = frame()
    df["g"] = 3
    [p] = checks(df).errors
    assert p.check == "no_comparison_units"
    assert "never-treated comparison units" in p.message


def test_fewer_than_two_periods_is_an_error():
    df = frame(periods=(1,))
    df["g"] = np.nan
    df.loc[df["id"] == "u0", "g"] = 1
    errs = checks(df).errors
    assert "too_few_periods" in {p.check for p in errs}
    assert any("has 1 distinct period(s); a panel needs at least 2" in p.message for p in errs)


def test_group_level_with_single_unit_is_an_error():
    df = frame()
    df.loc[df["id"] == "u5", "region"] = "central"
    [p] = checks(df, {**MAP, "groups": {"region": "region"}}).errors
    assert p.check == "single_unit_group" and p.value == "central"
    assert "level 'central' has only 1 unit" in p.message


def test_threshold_variable_with_too_few_distinct_values_is_an_error():
    df = frame()
    df["q"] = df["t"].astype(float)
    [p] = checks(df, {**MAP, "threshold": "q"}).errors
    assert p.check == "threshold_too_few_values" and p.value == 4


def test_unbalanced_panel_is_accepted_with_a_warning():
    df = frame().drop(index=[0])
    rep = checks(df)
    assert rep.ok and rep.balanced is False
    [w] = rep.warnings
    assert w.check == "unbalanced" and "1 of 6 units miss some" in w.message


def test_every_problem_is_listed_not_just_the_first():
    df = frame().astype({"x": object})
    df.loc[[1, 2, 3], "x"] = "bad"
    df.loc[4, "y"] = np.nan
    rep = checks(df)
    assert len(rep.errors) == 4
    assert "ERROR" in rep.format()


def test_strict_loading_raises_data_error_carrying_the_report():
    df = frame().drop(columns="x")
    with pytest.raises(DataError) as info:
        panel_from_frame(df, MAP)
    assert info.value.report.errors[0].check == "missing_column"
    assert "1 error(s)" in str(info.value)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        load_panel(tmp_path / "nope.csv", MAP)
